"""im2col and col2im: the matrix that turns a convolution into a product.

For x of shape (N, C_in, H, W) and a kH x kW kernel, ``im2col`` returns the
matrix ``cols`` of shape (C_in*kH*kW, N*H_out*W_out): column q = (n, h, w)
holds the receptive field of output pixel (h, w) of image n, its rows
ordered (c, i, j). Then ``weight.reshape(C_out, -1) @ cols`` is the
convolution, one output channel per row. ``col2im`` is the exact adjoint:
it adds every column back where its entries came from, so overlapping
patches sum.
"""

import numpy as np

from ._kernels import im2col as _im2col
from ._validation import as_array, float_dtype, geometry, pair

__all__ = ["col2im", "conv_output_shape", "im2col"]


def conv_output_shape(x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Spatial output size (H_out, W_out) of a convolution.

    Parameters
    ----------
    x_shape : tuple
        Shape of the input; its last two entries are (H, W).
    kernel_size, stride, padding, dilation
        As in :func:`sparseconv.conv2d`.

    Notes
    -----
    ``H_out = floor((H + pad_top + pad_bottom - dH*(kH - 1) - 1) / sH) + 1``,
    and likewise for W.
    """
    g = geometry(x_shape, kernel_size, stride, padding, dilation)
    return g.h_out, g.w_out


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """Unfold x into the column matrix of a convolution.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    kernel_size : int or (kH, kW)
    stride, padding, dilation : int or pair; padding may be 'same' or 'valid'
        As in :func:`sparseconv.conv2d`.

    Returns
    -------
    cols : array, shape (C_in*kH*kW, N*H_out*W_out)
        Rows ordered (c, i, j), columns ordered (n, h, w); dtype float32 or
        float64 (integer input becomes float64).

    Notes
    -----
    ``cols[(c*kH + i)*kW + j, (n*H_out + h)*W_out + w] = x_pad[n, c, h*sH + i*dH, w*sW + j*dW]``
    where ``x_pad`` is x with zeros around it. A readable NumPy version is
    :func:`sparseconv.reference.im2col`.
    """
    x = as_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C_in, H, W), got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=float_dtype(x.dtype, "x"))
    g = geometry(x.shape, kernel_size, stride, padding, dilation)
    n_img, c_in = x.shape[:2]
    total = n_img * g.h_out * g.w_out
    cols = np.empty((c_in * g.kh * g.kw, total), x.dtype)  # (C_in*kH*kW, N*H_out*W_out)
    if cols.size:
        _im2col.im2col_range(x, cols, 0, total, *g.kernel_args)
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Fold a column matrix back into an image, summing overlapping patches.

    The adjoint of :func:`im2col`: for every x and c,
    ``<im2col(x), c> == <x, col2im(c, x.shape, ...)>``.

    Parameters
    ----------
    cols : array, shape (C_in*kH*kW, N*H_out*W_out)
    x_shape : tuple (N, C_in, H, W)
    kernel_size, stride, padding, dilation
        As given to :func:`im2col`.

    Returns
    -------
    x : array, shape ``x_shape``, the dtype of ``cols`` (float32 or float64)
    """
    cols = as_array(cols, "cols")
    if not (isinstance(x_shape, (tuple, list)) and len(x_shape) == 4):
        raise ValueError(f"x_shape must be a 4-tuple (N, C_in, H, W), got {x_shape!r}")
    n_img, c_in, _, _ = pair(x_shape[:2], "x_shape[:2]", 0) + pair(x_shape[2:], "x_shape[2:]", 1)
    g = geometry(x_shape, kernel_size, stride, padding, dilation)
    expected = (c_in * g.kh * g.kw, n_img * g.h_out * g.w_out)
    if cols.shape != expected:
        raise ValueError(f"cols must have shape {expected} for x_shape {tuple(x_shape)}, got {cols.shape}")
    cols = np.ascontiguousarray(cols, dtype=float_dtype(cols.dtype, "cols"))
    x = np.zeros((n_img, c_in, g.h, g.w), cols.dtype)
    if cols.size:
        _im2col.col2im_all(cols, x, *g.kernel_args)
    return x
