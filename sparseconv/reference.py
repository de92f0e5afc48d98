"""Readable reference implementations: the teaching text and the test oracle.

Nothing here is fast. Each function says in a few lines of NumPy what a fast
kernel of the library computes, so that the kernel can be checked against it.

Deep-learning "convolution" is cross-correlation: the kernel is *not*
flipped. ``conv2d`` below computes

    y[n, o, h, w] = bias[o] + sum_{c, i, j} weight[o, c, i, j] * x_pad[n, g*C_in/G + c, h*sH + i*dH, w*sW + j*dW]

where g is the group of output channel o and x_pad is x with zeros around it.
"""

import numpy as np

from ._validation import as_input, geometry

__all__ = ["col2im", "conv2d", "im2col"]


def _padded(x, g):
    return np.pad(x, ((0, 0), (0, 0), (g.top, g.bottom), (g.left, g.right)))


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """The column matrix of :func:`sparseconv.im2col`, by slicing the padded input once per tap."""
    x = as_input(x)
    g = geometry(x.shape, kernel_size, stride, padding, dilation)
    n_img, c_in = x.shape[:2]
    xp = _padded(x, g)
    taps = np.empty((c_in, g.kh, g.kw, n_img, g.h_out, g.w_out), x.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            rows = slice(i * g.dh, i * g.dh + g.sh * (g.h_out - 1) + 1, g.sh)
            cols = slice(j * g.dw, j * g.dw + g.sw * (g.w_out - 1) + 1, g.sw)
            taps[:, i, j] = xp[:, :, rows, cols].transpose(1, 0, 2, 3)  # (C_in, N, H_out, W_out)
    return taps.reshape(c_in * g.kh * g.kw, n_img * g.h_out * g.w_out)  # (C_in*kH*kW, N*H_out*W_out)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Adjoint of :func:`im2col`: add each tap's slice back into the padded image."""
    n_img, c_in, h, w = x_shape
    g = geometry(x_shape, kernel_size, stride, padding, dilation)
    taps = np.asarray(cols).reshape(c_in, g.kh, g.kw, n_img, g.h_out, g.w_out)
    xp = np.zeros((n_img, c_in, h + g.top + g.bottom, w + g.left + g.right), taps.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            rows = slice(i * g.dh, i * g.dh + g.sh * (g.h_out - 1) + 1, g.sh)
            cols_ = slice(j * g.dw, j * g.dw + g.sw * (g.w_out - 1) + 1, g.sw)
            xp[:, :, rows, cols_] += taps[:, i, j].transpose(1, 0, 2, 3)  # (N, C_in, H_out, W_out)
    return xp[:, :, g.top:g.top + h, g.left:g.left + w].copy()


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Grouped 2-D cross-correlation with explicit loops over outputs and taps.

    Same arguments and result as :func:`sparseconv.conv2d` for a 4-D weight.
    Loops over (output channel, kernel tap) and accumulates a shifted slice of
    the padded input, in float64 whatever the input dtype, then casts back.
    """
    x = as_input(x)
    weight = np.asarray(weight)
    g = geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    n_img, c_in = x.shape[:2]
    c_out, cin_g = weight.shape[:2]
    cout_g = c_out // groups
    xp = _padded(x, g).astype(np.float64)
    y = np.zeros((n_img, c_out, g.h_out, g.w_out))
    for o in range(c_out):
        first = (o // cout_g) * cin_g
        for c in range(cin_g):
            for i in range(g.kh):
                for j in range(g.kw):
                    patch = xp[:, first + c,
                               i * g.dh:i * g.dh + g.sh * (g.h_out - 1) + 1:g.sh,
                               j * g.dw:j * g.dw + g.sw * (g.w_out - 1) + 1:g.sw]
                    y[:, o] += float(weight[o, c, i, j]) * patch
        if bias is not None:
            y[:, o] += float(bias[o])
    return y.astype(x.dtype)
