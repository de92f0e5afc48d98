"""The low-rank family: fewer numbers by fewer dimensions.

- :func:`low_rank`: W ~ U V, a C_out x r times an r x C_in*kH*kW matrix, the
  truncated SVD (best in Frobenius norm: Eckart-Young). As convolutions: a
  kH x kW convolution to r channels, then a 1x1 one.
- :func:`spatial_low_rank`: the separable scheme of Jaderberg, Vedaldi and
  Zisserman, "Speeding up Convolutional Neural Networks with Low Rank
  Expansions" (2014): a kH x 1 convolution to r channels, then a 1 x kW one.
- :func:`reduce_channels`: drop whole output and input channels, keeping the
  ones of largest norm; the layer physically shrinks.
"""

import numpy as np
import scipy.linalg

from ._validation import Geometry, count_or_fraction, integer
from .operator import WeightOperator, as_weight
from .dense import DenseWeight
from .cost import dense_cost
from . import registry

__all__ = [
    "ChannelReducedWeight",
    "LowRankWeight",
    "SpatialLowRankWeight",
    "low_rank",
    "reduce_channels",
    "spatial_low_rank",
]


def _svd(matrix):
    """Singular triplets of a matrix, computed in float64 (scipy.linalg, LAPACK gesdd)."""
    return scipy.linalg.svd(np.asarray(matrix, dtype=np.float64), full_matrices=False)


def _rank_for(s, rank, energy, limit, name="rank"):
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank and energy")
    if rank is not None:
        return integer(rank, name, 1, limit)
    if isinstance(energy, (bool, np.bool_)) or not isinstance(energy, (float, int, np.floating, np.integer)):
        raise TypeError(f"energy must be a float fraction in (0, 1], got {energy!r}")
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be a fraction in (0, 1], got {energy!r}")
    power = s**2
    total = power.sum()
    if total == 0:
        return 1
    kept = np.cumsum(power) / total
    return int(min(np.searchsorted(kept, energy * (1 - 1e-12)) + 1, limit))


class LowRankWeight(WeightOperator):
    """W ~ U @ V with U (C_out, r) and V (r, C_in*kH*kW).

    Parameters
    ----------
    u : array, shape (C_out, r)
    v : array, shape (r, C_in*kH*kW)
    kernel_shape : tuple (C_out, C_in, kH, kW)

    Notes
    -----
    ``conv2d`` runs it as the two convolutions of :meth:`as_convs`: a
    kH x kW convolution with r output channels (V), then a 1x1 convolution
    (U). Cost per column: r*C_in*kH*kW + C_out*r multiply-adds, against
    C_out*C_in*kH*kW for the dense layer.
    """

    torch_module = "LowRankConv2d"

    def __init__(self, u, v, kernel_shape):
        u = np.ascontiguousarray(u)
        v = np.ascontiguousarray(v, dtype=u.dtype)
        c_out, c_in, kh, kw = kernel_shape
        if (u.ndim != 2 or v.ndim != 2 or u.shape[0] != c_out or v.shape[1] != c_in * kh * kw
                or u.shape[1] != v.shape[0]):
            raise ValueError(
                f"u {u.shape} and v {v.shape} do not factor a weight of kernel_shape {tuple(kernel_shape)}"
            )
        self.u, self.v = u, v
        super().__init__(kernel_shape, u.dtype)

    @property
    def rank(self):
        return self.u.shape[1]

    def as_convs(self):
        """The two 4-D weights: (r, C_in, kH, kW) then (C_out, r, 1, 1)."""
        c_out, c_in, kh, kw = self.kernel_shape
        return self.v.reshape(self.rank, c_in, kh, kw), self.u.reshape(c_out, self.rank, 1, 1)

    def _matmat(self, cols):
        return self.u @ (self.v @ cols)

    def _rmatmat(self, y):
        return self.v.T @ (self.u.T @ y)

    def to_dense(self):
        return self.u @ self.v

    @property
    def num_params(self):
        return int(self.u.size + self.v.size)

    @property
    def nbytes(self):
        return int(self.u.nbytes + self.v.nbytes)

    def cost(self, n_cols):
        c_out, k = self.shape
        first = dense_cost(self.rank, k, k, n_cols, self.dtype.itemsize)
        second = dense_cost(c_out, self.rank, self.rank, n_cols, self.dtype.itemsize)
        return first + second

    def _conv2d(self, x, geom, bias, workspace):
        first, second = self._cached(("convs", x.dtype.str),
                                     lambda: tuple(DenseWeight(w.astype(x.dtype)) for w in self.as_convs()))
        y = first._conv2d(x, geom, None, workspace)
        pointwise = Geometry(geom.h_out, geom.w_out, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1)
        return second._conv2d(y, pointwise, bias, workspace)

    def _state(self):
        return {"u": self.u, "v": self.v}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["u"], state["v"], kernel_shape)


def low_rank(weight, rank=None, energy=None):
    """Truncated-SVD factorization W ~ U V of a conv weight.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    rank : int in [1, min(C_out, C_in*kH*kW)], optional
    energy : float in (0, 1], optional
        Instead of ``rank``: the smallest r whose singular values keep this
        fraction of sum(sigma^2). Give exactly one of the two.

    Returns
    -------
    LowRankWeight
        U = U_r diag(sigma_r), V = V_r^T, in the weight's dtype.

    Notes
    -----
    By Eckart-Young, no rank-r matrix is closer to W in Frobenius norm, and
    ``||W - U V||_F^2 = sum_{i > r} sigma_i^2``.
    """
    weight = as_weight(weight)
    c_out = weight.shape[0]
    matrix = weight.reshape(c_out, -1)  # (C_out, C_in*kH*kW)
    u, s, vt = _svd(matrix)
    r = _rank_for(s, rank, energy, min(matrix.shape))
    return LowRankWeight((u[:, :r] * s[:r]).astype(weight.dtype), vt[:r].astype(weight.dtype), weight.shape)


class SpatialLowRankWeight(WeightOperator):
    """A kH x 1 convolution to r channels followed by a 1 x kW convolution.

    Parameters
    ----------
    vertical : array, shape (r, C_in, kH, 1)
    horizontal : array, shape (C_out, r, 1, kW)

    Notes
    -----
    The kernel it equals is
    ``W[o, c, i, j] = sum_k horizontal[o, k, 0, j] * vertical[k, c, i, 0]``.
    ``conv2d`` runs the two thin convolutions: the kH x 1 one on every
    column of the input (N*H_out*W positions, r*C_in*kH multiply-adds each),
    the 1 x kW one on every output position (C_out*r*kW each), against
    C_out*C_in*kH*kW for the dense layer (:meth:`conv_cost`). On im2col
    columns (``op @ cols``) the vertical filters act on each of the kW
    column taps separately, then the horizontal ones combine them:
    r*C_in*kH*kW + C_out*r*kW multiply-adds per column (:meth:`cost`).
    """

    torch_module = "SpatialLowRankConv2d"

    def __init__(self, vertical, horizontal):
        vertical = np.ascontiguousarray(vertical)
        horizontal = np.ascontiguousarray(horizontal, dtype=vertical.dtype)
        if vertical.ndim != 4 or horizontal.ndim != 4 or vertical.shape[3] != 1 or horizontal.shape[2] != 1 \
                or horizontal.shape[1] != vertical.shape[0]:
            raise ValueError(f"vertical {vertical.shape} must be (r, C_in, kH, 1) and horizontal "
                             f"{horizontal.shape} (C_out, r, 1, kW)")
        self.vertical, self.horizontal = vertical, horizontal
        r, c_in, kh, _ = vertical.shape
        super().__init__((horizontal.shape[0], c_in, kh, horizontal.shape[3]), vertical.dtype)

    @property
    def rank(self):
        return self.vertical.shape[0]

    def to_weight(self):
        return np.einsum("okj,kci->ocij", self.horizontal[:, :, 0, :], self.vertical[..., 0])

    def to_dense(self):
        return self.to_weight().reshape(self.shape)

    def _factors(self, dtype):
        """V (r, C_in*kH) and H (C_out, r*kW) as matrices."""
        r, c_in, kh, _ = self.vertical.shape
        v = self.vertical.reshape(r, c_in * kh).astype(dtype, copy=False)
        h = self.horizontal.reshape(self.shape[0], r * self.kernel_shape[3]).astype(dtype, copy=False)
        return v, h

    def _matmat(self, cols):
        cols = np.asarray(cols)
        n = cols.shape[1]
        kw = self.kernel_shape[3]
        v, h = self._factors(np.result_type(cols.dtype, self.dtype))
        t = v @ cols.reshape(v.shape[1], kw * n)  # rows (c, i), columns (j, n) -> (r, kW*n)
        return h @ t.reshape(h.shape[1], n)  # rows (k, j) -> (C_out, n)

    def _rmatmat(self, y):
        y = np.asarray(y)
        n = y.shape[1]
        kw = self.kernel_shape[3]
        v, h = self._factors(np.result_type(y.dtype, self.dtype))
        t = (h.T @ y).reshape(v.shape[0], kw * n)  # (r*kW, n) -> (r, kW*n)
        return (v.T @ t).reshape(self.shape[1], n)  # (C_in*kH, kW*n) -> (C_in*kH*kW, n)

    @property
    def num_params(self):
        return int(self.vertical.size + self.horizontal.size)

    @property
    def nbytes(self):
        return int(self.vertical.nbytes + self.horizontal.nbytes)

    def cost(self, n_cols):
        c_out, c_in, kh, kw = self.kernel_shape
        isz = self.dtype.itemsize
        first = dense_cost(self.rank, c_in * kh, c_in * kh, kw * n_cols, isz)
        second = dense_cost(c_out, self.rank * kw, self.rank * kw, n_cols, isz)
        return first + second

    def _conv_cost(self, n_img, geom):
        c_out, c_in, kh, kw = self.kernel_shape
        isz = self.dtype.itemsize
        first = dense_cost(self.rank, c_in * kh, c_in * kh, n_img * geom.h_out * geom.w, isz)
        second = dense_cost(c_out, self.rank * kw, self.rank * kw, n_img * geom.h_out * geom.w_out, isz)
        return first + second

    def _conv2d(self, x, geom, bias, workspace):
        first, second = self._cached(("convs", x.dtype.str), lambda: (DenseWeight(self.vertical.astype(x.dtype)),
                                                                      DenseWeight(self.horizontal.astype(x.dtype))))
        g1 = Geometry(geom.h, geom.w, geom.kh, 1, geom.sh, 1, geom.top, geom.bottom, 0, 0, geom.dh, 1)
        y = first._conv2d(x, g1, None, workspace)  # (N, r, H_out, W)
        g2 = Geometry(geom.h_out, geom.w, 1, geom.kw, 1, geom.sw, 0, 0, geom.left, geom.right, 1, geom.dw)
        return second._conv2d(y, g2, bias, workspace)

    def _state(self):
        return {"vertical": self.vertical, "horizontal": self.horizontal}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["vertical"], state["horizontal"])


def spatial_low_rank(weight, rank):
    """Separable (kH x 1 then 1 x kW) approximation of a conv weight, by SVD.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    rank : int in [1, min(C_in*kH, C_out*kW)]
        Channels between the two convolutions.

    Returns
    -------
    SpatialLowRankWeight

    Notes
    -----
    The kernel rearranged as the (C_in*kH) x (C_out*kW) matrix
    ``M[(c, i), (o, j)] = W[o, c, i, j]`` has rank <= r exactly when W is a
    sum of r separable products; its truncated SVD ``M ~ A B`` gives the
    vertical filters (columns of A) and the horizontal ones (rows of B), the
    best such approximation in Frobenius norm.
    """
    weight = as_weight(weight)
    c_out, c_in, kh, kw = weight.shape
    matrix = weight.transpose(1, 2, 0, 3).reshape(c_in * kh, c_out * kw)  # (C_in*kH, C_out*kW)
    a, s, bt = _svd(matrix)
    r = _rank_for(s, rank, None, min(matrix.shape))
    vertical = a[:, :r].T.reshape(r, c_in, kh, 1)
    horizontal = (s[:r, None] * bt[:r]).reshape(r, c_out, kw).transpose(1, 0, 2)[:, :, None, :]
    return SpatialLowRankWeight(vertical.astype(weight.dtype), horizontal.astype(weight.dtype))


class ChannelReducedWeight(WeightOperator):
    """A dense weight on a subset of the channels; the other outputs are zero.

    Parameters
    ----------
    small : array, shape (len(keep_out), len(keep_in), kH, kW)
    keep_out, keep_in : int arrays, sorted
        The kept output and input channels of the original layer.
    kernel_shape : tuple (C_out, C_in, kH, kW) of the original layer

    Notes
    -----
    ``small`` (:attr:`small_op`) is the physically smaller layer, for a
    network that drops the channels; as an operator this class stands for
    the original-size matrix with the dropped rows and columns zero, so it
    can be compared with the weight it came from. Its cost is the small
    layer's.
    """

    torch_module = "ChannelReducedConv2d"

    def __init__(self, small, keep_out, keep_in, kernel_shape):
        small = np.ascontiguousarray(small)
        self.keep_out = np.asarray(keep_out, dtype=np.int64)
        self.keep_in = np.asarray(keep_in, dtype=np.int64)
        c_out, c_in, kh, kw = kernel_shape
        if small.shape != (self.keep_out.size, self.keep_in.size, kh, kw):
            raise ValueError(f"small has shape {small.shape}, expected "
                             f"{(self.keep_out.size, self.keep_in.size, kh, kw)}")
        self.small_op = DenseWeight(small)
        super().__init__(kernel_shape, self.small_op.dtype)

    @property
    def small(self):
        return self.small_op.weight

    def _rows_in(self):
        """The kept rows of the im2col matrix: (c, i, j) for every kept input channel c."""
        kk = self.kernel_shape[2] * self.kernel_shape[3]
        return self._cached("rows_in", lambda: (self.keep_in[:, None] * kk + np.arange(kk)).ravel())

    def _children(self):
        return (self.small_op,)

    def _matmat(self, cols):
        out = np.zeros((self.shape[0], cols.shape[1]), np.result_type(self.dtype, cols.dtype))
        out[self.keep_out] = self.small_op.matrix @ cols[self._rows_in()]
        return out

    def _rmatmat(self, y):
        out = np.zeros((self.shape[1], y.shape[1]), np.result_type(self.dtype, y.dtype))
        out[self._rows_in()] = self.small_op.matrix.T @ y[self.keep_out]
        return out

    def to_dense(self):
        dense = np.zeros(self.shape, self.dtype)
        dense[np.ix_(self.keep_out, self._rows_in())] = self.small_op.matrix
        return dense

    @property
    def num_params(self):
        return self.small_op.num_params

    @property
    def nbytes(self):
        return self.small_op.nbytes + int(self.keep_out.nbytes + self.keep_in.nbytes)

    def cost(self, n_cols):
        kk = self.kernel_shape[2] * self.kernel_shape[3]
        k = self.keep_in.size * kk
        return dense_cost(self.keep_out.size, k, k, n_cols, self.dtype.itemsize)

    def _conv2d(self, x, geom, bias, workspace):
        small = self.small_op._conv2d(np.ascontiguousarray(x[:, self.keep_in]), geom, None, workspace)
        out = np.zeros((x.shape[0], self.shape[0], geom.h_out, geom.w_out), x.dtype)
        out[:, self.keep_out] = small
        if bias is not None:
            out += bias[None, :, None, None]
        return out

    def _state(self):
        return {"small": self.small, "keep_out": self.keep_out, "keep_in": self.keep_in}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["small"], state["keep_out"], state["keep_in"], kernel_shape)


def _keep(norms, keep, name):
    """Indices (sorted) of the ``keep`` largest norms; ``keep`` an int count, a fraction, or None for all."""
    total = norms.size
    n = total if keep is None else count_or_fraction(keep, name, total)
    if n < 1:
        raise ValueError(f"{name}={keep!r} keeps no channel; keep at least one")
    order = np.argsort(-norms, kind="stable")
    return np.sort(order[:n])


def reduce_channels(weight, keep_out=None, keep_in=None, criterion="l1"):
    """Keep the output and input channels of largest norm; drop the rest.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    keep_out, keep_in : int count, float fraction in (0, 1], or None (all)
        How many output / input channels to keep.
    criterion : {"l1", "l2"}
        Norm of each output channel's kernels (W[o]) and of each input
        channel's (W[:, c]) that ranks them.

    Returns
    -------
    ChannelReducedWeight
        With ``small_op`` the smaller DenseWeight and ``keep_out``/``keep_in``
        the kept indices.
    """
    weight = as_weight(weight)
    if criterion not in ("l1", "l2"):
        raise ValueError(f"criterion must be 'l1' or 'l2', got {criterion!r}")
    order = 1 if criterion == "l1" else 2
    out_norms = np.linalg.norm(weight.reshape(weight.shape[0], -1), ord=order, axis=1)
    in_norms = np.linalg.norm(weight.transpose(1, 0, 2, 3).reshape(weight.shape[1], -1), ord=order, axis=1)
    ko = _keep(out_norms, keep_out, "keep_out")
    ki = _keep(in_norms, keep_in, "keep_in")
    return ChannelReducedWeight(weight[np.ix_(ko, ki)], ko, ki, weight.shape)


def _low_rank_sweep(kernel_shape, quick):
    c_out, c_in, kh, kw = kernel_shape
    full = min(c_out, c_in * kh * kw)
    ranks = sorted({max(1, full // d) for d in ((2, 8) if quick else (2, 4, 8, 16))}, reverse=True)
    return [(f"rank {r}", dict(rank=r)) for r in ranks]


def _spatial_sweep(kernel_shape, quick):
    c_out, c_in, kh, kw = kernel_shape
    if kh == 1 or kw == 1:
        return []
    full = min(c_in * kh, c_out * kw)
    return [(f"rank {r}", dict(rank=r))
            for r in sorted({max(1, full // d) for d in ((2, 8) if quick else (2, 4, 8))}, reverse=True)]


def _reduce_sweep(kernel_shape, quick):
    return [(f"keep {f:.0%}", dict(keep_out=f, keep_in=f)) for f in ((0.5,) if quick else (0.75, 0.5, 0.25))]


registry.register(registry.Family("low_rank", low_rank, (LowRankWeight,), _low_rank_sweep,
                                  "truncated SVD: a kH x kW conv to r channels, then 1 x 1"))
def _spatial_requires(kernel_shape):
    kh, kw = kernel_shape[2:]
    return None if kh > 1 and kw > 1 else f"needs a kernel at least 2 x 2 to separate (the layer's is {kh} x {kw})"


registry.register(registry.Family("spatial_low_rank", spatial_low_rank, (SpatialLowRankWeight,), _spatial_sweep,
                                  "kH x 1 filters to r channels, then 1 x kW (Jaderberg et al.)", _spatial_requires))
registry.register(registry.Family("reduce_channels", reduce_channels, (ChannelReducedWeight,), _reduce_sweep,
                                  "the smaller dense layer on the kept input and output channels"))
