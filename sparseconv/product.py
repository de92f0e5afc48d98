"""Products of operators, and channel permutations: the algebra interleaved group convolutions live in.

A chain of convolutions without nonlinearities between them is one
convolution whose matrix is the product of theirs. With at most one spatial
(kH x kW) factor and 1x1 factors around it,

    W = A_k ... A_{s+1} · A_s · (A_{s-1} ⊗ I_S) ... (A_1 ⊗ I_S)

on the im2col columns (S = kH*kW taps): a 1x1 factor applied before the
spatial one acts on every tap of the receptive field alike. A
:class:`Permutation` reorders channels; ShuffleNet's channel shuffle, which
interleaves the groups of one group convolution into those of the next, is
:func:`channel_shuffle_permutation`.
"""


import numpy as np

from .cost import Cost
from .operator import WeightOperator, _REGISTRY
from ._validation import Geometry, positive_int

__all__ = ["Permutation", "ProductWeight", "channel_shuffle_permutation", "complementary", "paths"]


def _pointwise(y):
    """The geometry of a 1x1 convolution, stride 1, no padding, on y (N, C, H, W)."""
    return Geometry(y.shape[2], y.shape[3], 1, 1, 1, 1, 0, 0, 0, 0, 1, 1)


def _is_pointwise(geom):
    return (geom.sh, geom.sw, geom.top, geom.bottom, geom.left, geom.right) == (1, 1, 0, 0, 0, 0)


class Permutation(WeightOperator):
    """Output channel i is input channel ``perm[i]``: a 1x1 convolution by a permutation matrix.

    Parameters
    ----------
    perm : int array, a permutation of 0 ... C-1
    dtype : the dtype it reports (it stores no weights; products keep the
        dtype of their input)

    Notes
    -----
    It stores no parameters (``num_params`` is 0) and does no arithmetic;
    its cost is the copy it makes, ``bytes_moved`` = 2*C*n_cols*itemsize.
    """

    torch_module = "ChannelPermute"

    def __init__(self, perm, dtype=np.float32):
        perm = np.asarray(perm)
        if perm.ndim != 1 or perm.dtype.kind not in "iu" or not np.array_equal(np.sort(perm), np.arange(perm.size)):
            raise ValueError(f"perm must be a permutation of 0..{perm.size - 1} (a 1-D int array)")
        self.perm = perm.astype(np.int64)
        super().__init__((perm.size, perm.size, 1, 1), dtype)

    def inverse(self):
        """The permutation that undoes this one."""
        return Permutation(np.argsort(self.perm), self.dtype)

    def _matmat(self, cols):
        return np.asarray(cols)[self.perm]

    def _rmatmat(self, y):
        out = np.empty_like(np.asarray(y))
        out[self.perm] = y
        return out

    def to_dense(self):
        return np.eye(self.shape[0], dtype=self.dtype)[self.perm]

    @property
    def num_params(self):
        return 0

    @property
    def nbytes(self):
        return int(self.perm.nbytes)

    def cost(self, n_cols):
        return Cost(bytes_moved=2 * self.shape[0] * int(n_cols) * self.dtype.itemsize)

    def _conv2d(self, x, geom, bias, workspace):
        if not _is_pointwise(geom):
            return super()._conv2d(x, geom, bias, workspace)
        out = np.ascontiguousarray(x[:, self.perm])  # (N, C, H, W), channels reordered
        return out if bias is None else out + bias[None, :, None, None]

    def _state(self):
        return {"perm": self.perm, "dtype": np.array(self.dtype.str)}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["perm"], np.dtype(str(state["dtype"])))


def channel_shuffle_permutation(channels, groups):
    """ShuffleNet's channel shuffle as a :class:`Permutation`.

    View the channels as (groups, channels/groups), transpose, flatten:
    output channel j*groups + i is input channel i*(channels/groups) + j, so
    the m-th channel of every group ends up side by side, and the next group
    convolution's groups each take one channel from every group of this one.
    """
    channels, groups = positive_int(channels, "channels"), positive_int(groups, "groups")
    if channels % groups:
        raise ValueError(f"groups={groups} must divide channels={channels}")
    return Permutation(np.arange(channels).reshape(groups, channels // groups).T.ravel())


class ProductWeight(WeightOperator):
    """W = A_k ... A_1: a chain of operators as one convolution weight.

    Parameters
    ----------
    factors : list of WeightOperator, [A_k, ..., A_1]
        Written left to right as in the formula: A_1 is applied first.
        Consecutive factors must chain (A_l's C_in = A_{l-1}'s C_out). At
        most one factor has a spatial kernel; the others are 1x1.

    Notes
    -----
    ``matmat``, ``rmatmat``, ``to_dense``, ``num_params``, ``nbytes`` and
    ``cost`` follow from the factors (1x1 factors before the spatial one act
    as A ⊗ I_S on the im2col columns). The cost is the sum of the factors'
    costs at n_cols positions each, which is exact for stride 1 and 'same'
    padding, where a 1x1 factor before the spatial one runs on as many input
    pixels as there are outputs; permutations add their copy traffic to
    ``bytes_moved``. ``conv2d`` runs the factors one after another with
    their own kernels.
    """

    torch_module = "ProductConv2d"

    def __init__(self, factors):
        factors = list(factors)
        if not factors or not all(isinstance(f, WeightOperator) for f in factors):
            raise TypeError("factors must be a non-empty list of WeightOperator")
        applied = factors[::-1]  # A_1 first
        for prev, nxt in zip(applied, applied[1:]):
            if nxt.kernel_shape[1] != prev.kernel_shape[0]:
                raise ValueError(f"factors do not chain: {type(prev).__name__} gives C_out={prev.kernel_shape[0]}, "
                                 f"the next {type(nxt).__name__} expects C_in={nxt.kernel_shape[1]}")
        spatial = [i for i, f in enumerate(applied) if f.kernel_shape[2:] != (1, 1)]
        if len(spatial) > 1:
            raise ValueError("at most one factor may have a spatial kernel; the others must be 1x1")
        self.factors = factors
        self._spatial = spatial[0] if spatial else None
        kh, kw = applied[spatial[0]].kernel_shape[2:] if spatial else (1, 1)
        weighted = [f for f in factors if not isinstance(f, Permutation)] or factors
        super().__init__((factors[0].kernel_shape[0], applied[0].kernel_shape[1], kh, kw),
                         np.result_type(*(f.dtype for f in weighted)))

    def _split(self):
        applied = self.factors[::-1]
        s = self._spatial if self._spatial is not None else -1
        return applied[:max(s, 0)], (applied[s] if s >= 0 else None), applied[s + 1:]

    def _matmat(self, cols):
        pre, spatial, post = self._split()
        taps = self.kernel_shape[2] * self.kernel_shape[3]
        n = cols.shape[1]
        y = np.asarray(cols)
        for f in pre:  # A ⊗ I_S: the same 1x1 map on every tap
            y = f.matmat(y.reshape(f.shape[1], taps * n)).reshape(f.shape[0] * taps, n)
        if spatial is not None:
            y = spatial.matmat(y)
        for f in post:
            y = f.matmat(y)
        return y

    def _rmatmat(self, y):
        pre, spatial, post = self._split()
        taps = self.kernel_shape[2] * self.kernel_shape[3]
        n = y.shape[1]
        z = np.asarray(y)
        for f in post[::-1]:
            z = f.rmatmat(z)
        if spatial is not None:
            z = spatial.rmatmat(z)
        for f in pre[::-1]:
            z = f.rmatmat(z.reshape(f.shape[0], taps * n)).reshape(f.shape[1] * taps, n)
        return z

    def to_dense(self):
        return np.asarray(self._matmat(np.eye(self.shape[1], dtype=self.dtype)), dtype=self.dtype)

    @property
    def num_params(self):
        return int(sum(f.num_params for f in self.factors))

    def _stored_factors(self):
        """The factors whose arrays ``save`` writes: all of them (an IGC design derives its permutations)."""
        return self.factors

    def _children(self):
        return tuple(self.factors)

    @property
    def nbytes(self):
        return int(sum(f.nbytes for f in self._stored_factors()))

    @property
    def cache_nbytes(self):
        stored = {id(f) for f in self._stored_factors()}
        derived = sum(f.nbytes for f in self.factors if id(f) not in stored)  # remade from the design on load
        return int(super().cache_nbytes + derived)

    def cost(self, n_cols):
        """Cost of ``self @ cols``: 1x1 factors before the spatial one act on every tap (kH*kW*n_cols columns)."""
        pre, spatial, post = self._split()
        taps = self.kernel_shape[2] * self.kernel_shape[3]
        total = Cost()
        for f in pre:
            total = total + f.cost(taps * n_cols)
        for f in ([spatial] if spatial is not None else []) + post:
            total = total + f.cost(n_cols)
        return total

    def _conv_cost(self, n_img, geom):
        pre, spatial, post = self._split()
        if spatial is None and not _is_pointwise(geom):
            return super()._conv_cost(n_img, geom)  # strided or padded 1x1 chain: run as one matrix
        total = Cost()
        for f in pre:  # at the input's resolution
            total = total + f.cost(n_img * geom.h * geom.w)
        if spatial is not None:
            total = total + spatial._conv_cost(n_img, geom)
        for f in post:
            total = total + f.cost(n_img * geom.h_out * geom.w_out)
        return total

    def _conv2d(self, x, geom, bias, workspace):
        pre, spatial, post = self._split()
        if spatial is None and not _is_pointwise(geom):
            return super()._conv2d(x, geom, bias, workspace)  # strided or padded 1x1 chain: as one matrix
        y = x
        for f in pre:  # 1x1 maps commute with zero padding: run them at the input's resolution
            y = f._conv2d(y, _pointwise(y), None, workspace)
        if spatial is not None:
            y = spatial._conv2d(y, geom, None, workspace)
        for f in post:
            y = f._conv2d(y, _pointwise(y), None, workspace)
        y = np.asarray(y, dtype=x.dtype)
        return y if bias is None else y + bias[None, :, None, None]

    def _state(self):
        state = {"n_factors": np.array(len(self.factors))}
        for i, f in enumerate(self.factors):
            state[f"f{i}_class"] = np.array(type(f).__name__)
            state[f"f{i}_kernel_shape"] = np.array(f.kernel_shape, np.int64)
            for key, value in f._state().items():
                state[f"f{i}.{key}"] = value
        return state

    @classmethod
    def _from_state(cls, state, kernel_shape):
        factors = []
        for i in range(int(state["n_factors"])):
            prefix = f"f{i}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            factor_cls = _REGISTRY[str(state[f"f{i}_class"])]
            factors.append(factor_cls._from_state(sub, tuple(int(v) for v in state[f"f{i}_kernel_shape"])))
        return cls(factors)


def _connections(op):
    """Integer (C_out, C_in) matrix: how many paths join input channel c to output channel o in ``op``.

    Structural for the structured operators (a dense weight connects every
    pair, a block-diagonal one the pairs in its blocks, a permutation its
    pairs); for others, a pair is connected where its kH x kW kernel has a
    nonzero.
    """
    from .blockdiag import BlockDiagonalWeight
    from .dense import DenseWeight

    c_out, c_in = op.kernel_shape[:2]
    if isinstance(op, ProductWeight):
        total = np.eye(c_in, dtype=np.int64)
        for f in op.factors[::-1]:
            total = _connections(f) @ total
        return total
    if isinstance(op, Permutation):
        return np.eye(c_in, dtype=np.int64)[op.perm]
    if isinstance(op, DenseWeight):
        return np.ones((c_out, c_in), np.int64)
    if isinstance(op, BlockDiagonalWeight):
        g = op.groups
        return np.kron(np.eye(g, dtype=np.int64), np.ones((c_out // g, c_in // g), np.int64))
    return (np.abs(op.to_weight()).sum(axis=(2, 3)) != 0).astype(np.int64)


def paths(op):
    """Count the paths from each input channel to each output channel through the factors' patterns.

    Returns
    -------
    array of int, shape (C_out, C_in)
        For a :class:`ProductWeight`, the product of its factors' 0/1
        connection matrices: entry (o, c) is the number of distinct chains of
        channels by which input c reaches output o.
    """
    if not isinstance(op, WeightOperator):
        raise TypeError(f"op must be a WeightOperator, got {type(op).__name__}")
    return _connections(op)


def complementary(op):
    """Which complementary condition the operator meets: "strict", "loose" or None.

    "strict": every input channel reaches every output channel by exactly
    one path (IGCV1 with the interleaving permutation). "loose": every pair
    is joined, some by several paths (as over IGCV3's super-channels).
    None: some pair is not joined at all (e.g. two group convolutions with
    the identity permutation between them).
    """
    counts = paths(op)
    if np.any(counts == 0):
        return None
    return "strict" if np.all(counts == 1) else "loose"
