"""The public surface: a sorted, pinned __all__, and an import that pulls in neither torch nor matplotlib."""

import subprocess
import sys

import sparseconv

PUBLIC = [
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


def test_all_is_pinned_and_sorted():
    assert sparseconv.__all__ == PUBLIC
    assert PUBLIC == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(sparseconv, name), name


def test_import_is_light():
    code = "import sys, sparseconv; print(','.join(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
