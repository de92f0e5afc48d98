"""Functions on torch tensors: convolutions with sparseconv's conventions, IGC (composed or fused), any operator, STEs.

Device-agnostic: every tensor made here is made on the device (and in the
dtype) of the input. Like torch's and sparseconv's, "convolution" here is
cross-correlation.
"""

from .. import NonlinearWeight, WeightOperator
from . import modules
from ._ops import (BACKENDS, IGC_KINDS, binary_input_conv2d, channel_shuffle, conv2d, fake_quantize, igc_backend,
                   igc_conv2d, permuted_pointwise, quantize_input, sign_ste)

__all__ = ["BACKENDS", "IGC_KINDS", "binary_input_conv2d", "channel_shuffle", "conv2d", "fake_quantize", "igc_backend",
           "igc_conv2d", "operator_conv2d", "permuted_pointwise", "quantize_input", "sign_ste"]


def operator_conv2d(x, op, stride=1, padding=0, dilation=1):
    """Apply a sparseconv :class:`~sparseconv.WeightOperator` with torch operations.

    Equals ``sparseconv.conv2d(x, op, stride=..., padding=..., dilation=...)``
    on any device, differentiable in ``x``. The operator runs as the module
    its class names (``torch_module``, see :mod:`sparseconv.registry`), with
    the operator's values in x's dtype and on x's device, held fixed:

    - dense, sparse: one conv with the (dense) weight; a sparse weight is
      applied as a masked dense tensor (torch has no sparse convolution; the
      zeros are multiplied, not skipped);
    - block-diagonal: ``groups``; low rank: two convs; spatial low rank: a
      kH x 1 then a 1 x kW conv; channel reduction: the small conv scattered;
    - binary: alpha * sign(W); binary activations through :func:`sign_ste`
      (zero padding binarises to +1) and XNOR-Net's K as a conv of abs(x);
    - quantized: the dequantized weight; integer activations by
      :func:`fake_quantize` with the calibrated or per-call scale;
    - codebook: the weight gathered from the codebook;
    - permutation: an index; products (IGCV1/2/3 included): the factors
      chained, 1x1 factors before the spatial one at the input's resolution;
    - an operator whose class names no module: its dense weight.
    """
    if not isinstance(op, (WeightOperator, NonlinearWeight)):
        raise TypeError(f"op must be a sparseconv WeightOperator or NonlinearWeight, got {type(op).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C_in, H, W), got shape {tuple(x.shape)}")
    c_in = op.kernel_shape[1]
    if x.shape[1] != c_in:
        raise ValueError(f"x has C_in={x.shape[1]} channels, the operator expects C_in={c_in}")
    module = modules.module_for(op, stride, padding, dilation).to(device=x.device, dtype=x.dtype)
    return module.requires_grad_(False)(x)
