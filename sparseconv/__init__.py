"""sparseconv: a convolution is a matrix times a vector; make the matrix cheaper.

``conv2d(x, W) = W @ im2col(x)``. Every compression in the library is a
:class:`WeightOperator` that stands in for W, with one cost model
(:class:`Cost`) to compare them.
"""

from .columns import col2im, conv_output_shape, im2col
from .conv import DEFAULT_WORKSPACE, conv2d, conv2d_method
from .cost import Cost, conv_cost
from .dense import DenseWeight, as_operator
from .operator import NonlinearWeight, WeightOperator, load, relative_error
from .product import Permutation, ProductWeight, channel_shuffle_permutation, complementary, paths
# The families register themselves on import, in the order they are listed (compare's tables, figures).
from .binary import BinaryInputWeight, BinaryWeight, binarize
from .quantize import IntegerInputWeight, QuantizedWeight, quantize
from .codebook import CodebookWeight, kmeans_quantize
from .lowrank import (ChannelReducedWeight, LowRankWeight, SpatialLowRankWeight, low_rank, reduce_channels,
                      spatial_low_rank)
from .sparse import SparseWeight, prune
from .blockdiag import BlockDiagonalWeight, block_diagonal
from .igc import IGCV1, IGCV2, IGCV3, igcv1, igcv2, igcv3
from . import plot, reference, registry, system, theory

__version__ = "0.1.0"

__all__ = [
    "BinaryInputWeight",
    "BinaryWeight",
    "BlockDiagonalWeight",
    "ChannelReducedWeight",
    "CodebookWeight",
    "Cost",
    "DEFAULT_WORKSPACE",
    "DenseWeight",
    "IGCV1",
    "IGCV2",
    "IGCV3",
    "IntegerInputWeight",
    "LowRankWeight",
    "NonlinearWeight",
    "Permutation",
    "ProductWeight",
    "QuantizedWeight",
    "SparseWeight",
    "SpatialLowRankWeight",
    "WeightOperator",
    "as_operator",
    "binarize",
    "block_diagonal",
    "channel_shuffle_permutation",
    "col2im",
    "complementary",
    "conv2d",
    "conv2d_method",
    "conv_cost",
    "conv_output_shape",
    "igcv1",
    "igcv2",
    "igcv3",
    "im2col",
    "kmeans_quantize",
    "load",
    "low_rank",
    "paths",
    "plot",
    "prune",
    "quantize",
    "reduce_channels",
    "reference",
    "registry",
    "relative_error",
    "spatial_low_rank",
    "system",
    "theory",
]
