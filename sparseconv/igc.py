"""Interleaved group convolutions as products of structured-sparse matrices.

- IGCV1 (Zhang, Qi, Xiao, Wang, "Interleaved Group Convolutions for Deep
  Neural Networks", ICCV 2017): W = P^T W_d P W_p.
- IGCV2 (Xie, Wang, Zhang, Qi, "IGCV2: Interleaved Structured Sparse
  Convolutional Neural Networks", CVPR 2018): W = P_L W_L ... P_1 W_1.
- IGCV3 (Sun, Li, Liu, Wang, "IGCV3: Interleaved Low-Rank Group
  Convolutions for Efficient Deep Neural Networks", BMVC 2018): a 1x1 group
  conv expanding, a shuffle, a depthwise conv, a 1x1 group conv reducing.

Each is a :class:`sparseconv.ProductWeight` with named factors, built with
``.random(..., seed)`` (He initialisation) or ``.from_factors(...)``.
"""

import numpy as np

from ._validation import pair, positive_int
from .blockdiag import BlockDiagonalWeight
from .operator import as_weight
from .product import Permutation, ProductWeight, channel_shuffle_permutation
from . import registry

__all__ = ["IGCV1", "IGCV2", "IGCV3", "igcv1", "igcv2", "igcv3"]

# Output positions per task of the IGCV1 secondary kernel.
_SECONDARY_TILE = 1024
# The fused stride-1 kernel (primary and secondary per band of output rows, the primary's output kept in
# cache): about this many padded-width positions per band, at least this many bands per thread, and used
# for outputs at least _FUSED_MIN_WIDTH wide or of at least _FUSED_MIN_ROWS output rows in all (on fewer,
# smaller images its bands are too few and too short: measured 1.5-2x slower than the two-pass path at
# 14x14, N=1; as fast or faster at N=8).
_FUSED_COLUMNS = 256
_FUSED_TASKS_PER_THREAD = 4
_FUSED_MIN_WIDTH = 28
_FUSED_MIN_ROWS = 64
# Primary groups of at most this many channels run by register tiles instead of a GEMM call per group and
# tap (measured faster up to M = 16, as fast at M = 32, on bench igc's layers).
_NARROW_MAX_M = 16
# Primary groups of at least this many channels in two partitions take two passes instead of the fused
# kernel: the primary, most of the work at L = 2, by conv2d's grouped pixel tiles, then the secondary
# (measured 1.25x faster at 256ch 14x14, N = 8, M = 128; at L = 4 and 8, M = 64 and 32, the fused kernel's
# per-group GEMMs stay 1.1-1.2x faster).
_TWO_PASS_MIN_M = 128


def _he(rng, shape, fan_in, dtype):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


_check = positive_int


def _weight_factors(op):
    """An IGC design's stored factors: its group convolutions (the permutations follow from the design)."""
    return [f for f in op.factors if not isinstance(f, Permutation)]


class IGCV1(ProductWeight):
    """IGCV1 (L, M) on G = L*M channels: W = P^T W_d P W_p.

    Parameters
    ----------
    primary : array, shape (G, M, kH, kW)
        W_p, the primary group conv in torch's grouped layout: L partitions
        of M channels, a kH x kW conv inside each.
    secondary : array, shape (G, L, 1, 1)
        W_d, the secondary 1x1 group conv: M partitions of L channels.
    L, M : int

    Notes
    -----
    P is :func:`sparseconv.channel_shuffle_permutation` (G, L): secondary
    partition m takes the m-th channel of every primary partition, so every
    input channel reaches every output channel by exactly one path (strictly
    complementary). Parameters: L M^2 S + M L^2 = G (M S + L). L = 1 is a
    regular convolution followed by a per-channel scale; M = 1 is a depthwise
    convolution followed by a dense 1x1 (the Xception / MobileNet block).
    """

    torch_module = "IGCV1Conv2d"
    _stored_factors = _weight_factors

    def __init__(self, primary, secondary, L, M):
        L, M = _check(L, "L"), _check(M, "M")
        primary = np.asarray(primary)
        secondary = np.asarray(secondary)
        G = L * M
        if primary.ndim != 4 or primary.shape[:2] != (G, M):
            raise ValueError(f"primary must have shape (L*M, M, kH, kW) = ({G}, {M}, kH, kW), got {primary.shape}")
        if secondary.shape != (G, L, 1, 1):
            raise ValueError(f"secondary must have shape (L*M, L, 1, 1) = ({G}, {L}, 1, 1), got {secondary.shape}")
        self.L, self.M = L, M
        self.primary = BlockDiagonalWeight(primary, L)
        self.secondary = BlockDiagonalWeight(secondary, M)
        self.permutation = channel_shuffle_permutation(G, L)
        super().__init__([self.permutation.inverse(), self.secondary, self.permutation, self.primary])

    @classmethod
    def from_factors(cls, primary, secondary, L, M):
        """From the two grouped weights (see the class parameters)."""
        return cls(primary, secondary, L, M)

    def _conv2d(self, x, geom, bias, workspace):
        """Primary group conv by the dense kernels, then the secondary with both permutations as strides."""
        from . import _blas
        from ._kernels import igc as _igc
        from ._threads import blas_single_threaded

        wide = geom.w_out >= _FUSED_MIN_WIDTH or x.shape[0] * geom.h_out >= _FUSED_MIN_ROWS
        deep = self.M >= _TWO_PASS_MIN_M and self.L == 2
        if (geom.sh, geom.sw) == (1, 1) and wide and not deep:
            out = self._fused(x, geom, bias, workspace)
            if out is not None:
                return out
        y = self.primary._conv2d(x, geom, None, workspace)  # (N, G, H_out, W_out)
        n_img, g = y.shape[:2]
        p_img = geom.h_out * geom.w_out
        out = np.empty_like(y)
        blocks = np.ascontiguousarray(self.secondary.weight.reshape(self.M, self.L, self.L), dtype=x.dtype)
        bias = np.zeros(g, x.dtype) if bias is None else bias
        with blas_single_threaded():
            _igc.igc_secondary(_blas.address(x.dtype), y.reshape(n_img, g, p_img), blocks, bias,
                                out.reshape(n_img, g, p_img), _SECONDARY_TILE)
        return out

    def _fused(self, x, geom, bias, workspace):
        """``_igc.igc_fused`` (stride 1) when its per-thread buffers fit the workspace; else None.

        Primary groups of at most _NARROW_MAX_M channels run by register tiles (``igc_fused_narrow``).
        """
        import numba

        from . import _blas
        from ._kernels import igc as _igc
        from ._kernels import tile as _tile
        from ._threads import blas_single_threaded
        from .conv import tap_major

        n_img, g = x.shape[:2]
        wp = geom.w + geom.left + geom.right
        n_threads = numba.get_num_threads()
        band = _fused_band(n_img, geom, n_threads)
        sizes = self._fused_sizes(x.shape, geom, x.dtype)
        if n_threads * sum(sizes) * x.dtype.itemsize > workspace:
            return None
        out = np.empty((n_img, g, geom.h_out * geom.w_out), x.dtype)  # (N, G, H_out*W_out)
        bias = np.zeros(g, x.dtype) if bias is None else bias
        ws = [np.empty((n_threads, size), x.dtype) for size in sizes]
        wd = self._cached(("secondary", x.dtype.str), lambda: np.ascontiguousarray(
            self.secondary.weight.reshape(self.M, self.L, self.L), dtype=x.dtype))  # (M, L, L)
        geometry = (band, geom.kh, geom.kw, geom.dh, geom.dw, geom.top, geom.left, wp, geom.h_out, geom.w_out)
        with blas_single_threaded():
            if self.M <= _NARROW_MAX_M:
                path = _tile.float_path()
                wg = self._cached(("narrow", x.dtype.str), lambda: self._padded_primary(x.dtype))
                _igc.igc_fused_narrow(_tile.MARKER[path](0), _tile.tile_cols(path, x.dtype), _blas.address(x.dtype),
                                      x, wg, wd, bias, out, *ws, *geometry)
            else:
                wt = self._cached(("fused", x.dtype.str), lambda: tap_major(
                    np.ascontiguousarray(self.primary.weight, dtype=x.dtype)))
                _igc.igc_fused(_blas.address(x.dtype), x, wt, wd, bias, out, *ws, *geometry)
        return out.reshape(n_img, g, geom.h_out, geom.w_out)

    def _padded_primary(self, dtype):
        """The primary weight as (L*Mp, M*kH*kW): each group's M rows, then zero rows up to Mp, a multiple of
        the register tile's rows."""
        from ._kernels.tile import TILE_ROWS

        g, m = self.primary.weight.shape[:2]
        mp = -(-self.M // TILE_ROWS) * TILE_ROWS
        rows = self.primary.weight.reshape(self.L, self.M, -1)  # (L, M, M*kH*kW)
        padded = np.zeros((self.L, mp, rows.shape[2]), dtype)
        padded[:, :self.M] = rows
        return padded.reshape(self.L * mp, -1)

    def _fused_sizes(self, x_shape, geom, dtype):
        """Per-thread buffer lengths of the fused kernel: padded input band, primary band, result band."""
        import numba

        from ._kernels import tile as _tile

        g = x_shape[1]
        wp = geom.w + geom.left + geom.right
        band = _fused_band(x_shape[0], geom, numba.get_num_threads())
        span = (geom.kh - 1) * geom.dh
        padded_in = g * (band + span) * wp + (geom.kw - 1) * geom.dw
        if self.M > _NARROW_MAX_M:
            return padded_in, g * band * wp, g * band * wp
        cols = _tile.tile_cols(_tile.float_path(), dtype)
        mp = -(-self.M // _tile.TILE_ROWS) * _tile.TILE_ROWS
        ncp = -(-band * wp // cols) * cols
        return padded_in + cols, self.L * mp * ncp, g * band * wp

    def _fused_workspace(self, x, stride=1, padding=0, dilation=1):
        """Bytes the fused kernel needs for input x (the workspace below which conv2d takes two passes)."""
        import numba

        from ._validation import geometry

        geom = geometry(x.shape, self.kernel_shape[2:], stride, padding, dilation)
        return numba.get_num_threads() * sum(self._fused_sizes(x.shape, geom, x.dtype)) * x.dtype.itemsize

    @classmethod
    def random(cls, L, M, *, kernel_size=3, seed=0, dtype=np.float32):
        """He-initialised factors: std sqrt(2 / fan_in), fan_in = M*kH*kW and L."""
        L, M = _check(L, "L"), _check(M, "M")
        kh, kw = pair(kernel_size, "kernel_size", 1)
        rng = np.random.default_rng(seed)
        G = L * M
        return cls(_he(rng, (G, M, kh, kw), M * kh * kw, dtype), _he(rng, (G, L, 1, 1), L, dtype), L, M)

    def _state(self):
        return {"primary": self.primary.weight, "secondary": self.secondary.weight, "LM": np.array([self.L, self.M])}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        L, M = (int(v) for v in state["LM"])
        return cls(state["primary"], state["secondary"], L, M)


def _fused_band(n_img, geom, n_threads):
    """Output rows per task of the fused IGCV1 kernel: about _FUSED_COLUMNS padded positions, enough tasks."""
    wp = geom.w + geom.left + geom.right
    band = max(1, min(geom.h_out, round(_FUSED_COLUMNS / wp)))
    while band > 1 and n_img * -(-geom.h_out // band) < _FUSED_TASKS_PER_THREAD * n_threads:
        band = (band + 1) // 2  # enough tasks to balance the threads
    return band


def _digit_permutation(sizes, axis):
    """Channels as mixed-radix numbers with digits of ``sizes``; move digit ``axis`` to the fastest place."""
    order = [a for a in range(len(sizes)) if a != axis] + [axis]
    return np.arange(int(np.prod(sizes))).reshape(sizes).transpose(order).ravel()


class IGCV2(ProductWeight):
    """IGCV2 on C channels: a channel-wise kH x kW conv, then 1x1 group convs of branch sizes K_2 ... K_L.

    Parameters
    ----------
    depthwise : array, shape (C, 1, kH, kW)
    pointwise : list of arrays, shapes (C, K_l, 1, 1)
        The 1x1 group convs in the order applied, each with C/K_l branches
        of K_l channels.

    Notes
    -----
    With ∏ K_l = C, the interleaving permutations write a channel index as
    a mixed-radix number with digits of bases K_2, ..., K_L and let factor l
    change digit l only (its branches are the channels that differ in that
    digit): every input reaches every output by exactly one path, strictly
    complementary. When the product is not C, successive channel shuffles
    (groups = the previous factor's branch count) interleave instead, and
    :func:`sparseconv.complementary` tells what that achieves.
    Parameters: C S + C Σ K_l.
    """

    torch_module = "IGCV2Conv2d"
    _stored_factors = _weight_factors

    def __init__(self, depthwise, pointwise):
        depthwise = np.asarray(depthwise)
        if depthwise.ndim != 4 or depthwise.shape[1] != 1:
            raise ValueError(f"depthwise must have shape (C, 1, kH, kW), got {depthwise.shape}")
        C = depthwise.shape[0]
        pointwise = [np.asarray(p) for p in pointwise]
        if not pointwise:
            raise ValueError("pointwise must hold at least one 1x1 group conv weight")
        sizes = []
        for p in pointwise:
            if p.ndim != 4 or p.shape[0] != C or p.shape[2:] != (1, 1) or C % p.shape[1]:
                raise ValueError(f"each pointwise weight must be (C, K, 1, 1) with K dividing C={C}, got {p.shape}")
            sizes.append(p.shape[1])
        self.branch_sizes = tuple(sizes)
        self.depthwise = BlockDiagonalWeight(depthwise, C)
        self.pointwise = [BlockDiagonalWeight(p, C // k) for p, k in zip(pointwise, sizes)]
        strict = int(np.prod(sizes)) == C
        applied = [self.depthwise]  # in the order applied
        current = np.arange(C)  # layout: position i holds canonical channel current[i]
        for step, factor in enumerate(self.pointwise):
            if strict:
                target = _digit_permutation(sizes, step)
            elif step:
                target = current[channel_shuffle_permutation(C, C // sizes[step - 1]).perm]
            else:
                target = current
            move = np.argsort(current)[target]  # from the current layout to the target one
            if not np.array_equal(move, np.arange(C)):
                applied.append(Permutation(move, depthwise.dtype))
            applied.append(factor)
            current = target
        back = np.argsort(current)
        if not np.array_equal(back, np.arange(C)):
            applied.append(Permutation(back, depthwise.dtype))
        super().__init__(applied[::-1])

    @classmethod
    def from_factors(cls, depthwise, pointwise):
        return cls(depthwise, pointwise)

    @classmethod
    def random(cls, channels, branch_sizes, *, kernel_size=3, seed=0, dtype=np.float32):
        """He-initialised factors (fan_in kH*kW for the channel-wise conv, K_l for each 1x1).

        The design arguments come first, as :class:`sparseconv.torch.IGCV2Conv2d` takes them; like every
        ``IGCV*.random``, ``kernel_size``, ``seed`` and ``dtype`` are keyword-only.
        """
        C = _check(channels, "channels")
        kh, kw = pair(kernel_size, "kernel_size", 1)
        rng = np.random.default_rng(seed)
        sizes = [_check(k, "branch size") for k in branch_sizes]
        for k in sizes:
            if C % k:
                raise ValueError(f"branch size {k} must divide channels={C}")
        return cls(_he(rng, (C, 1, kh, kw), kh * kw, dtype), [_he(rng, (C, k, 1, 1), k, dtype) for k in sizes])

    def _state(self):
        state = {"depthwise": self.depthwise.weight}
        for i, p in enumerate(self.pointwise):
            state[f"pointwise{i}"] = p.weight
        return state

    @classmethod
    def _from_state(cls, state, kernel_shape):
        n = sum(1 for k in state if k.startswith("pointwise"))
        return cls(state["depthwise"], [state[f"pointwise{i}"] for i in range(n)])


class IGCV3(ProductWeight):
    """The IGCV3 block as a linear operator: W = W_3 D P W_1.

    Parameters
    ----------
    expand : array, shape (E, C_in/G1, 1, 1)
        W_1: 1x1 group conv with G1 groups, C_in -> E = expansion * C_in.
    depthwise : array, shape (E, 1, kH, kW)
        D: the kH x kW channel-wise conv on E channels.
    reduce : array, shape (C_out, E/G2, 1, 1)
        W_3: 1x1 group conv with G2 groups, E -> C_out.
    groups : (G1, G2)

    Notes
    -----
    P is the channel shuffle with G1 groups, as in the authors' code. Without
    the activations of the network block this is a low-rank x
    structured-sparse factorization of one conv weight; complementary over
    super-channels (loose) when G1, G2 > 1 and every G2 group receives
    channels of all G1 groups. Parameters: E C_in/G1 + E S + C_out E/G2.
    """

    _stored_factors = _weight_factors

    def __init__(self, expand, depthwise, reduce, groups):
        G1, G2 = (_check(g, "groups") for g in groups)
        expand, depthwise, reduce = (np.asarray(a) for a in (expand, depthwise, reduce))
        E = expand.shape[0]
        if expand.ndim != 4 or expand.shape[2:] != (1, 1) or E % G1:
            raise ValueError(f"expand must be (E, C_in/G1, 1, 1) with G1={G1} dividing E, got {expand.shape}")
        if depthwise.ndim != 4 or depthwise.shape[:2] != (E, 1):
            raise ValueError(f"depthwise must be (E, 1, kH, kW) = ({E}, 1, kH, kW), got {depthwise.shape}")
        if reduce.ndim != 4 or reduce.shape[2:] != (1, 1) or reduce.shape[1] * G2 != E:
            raise ValueError(f"reduce must be (C_out, E/G2, 1, 1) with E={E}, G2={G2}, got {reduce.shape}")
        self.groups = (G1, G2)
        self.expand = BlockDiagonalWeight(expand, G1)
        self.shuffle = channel_shuffle_permutation(E, G1)
        self.depthwise = BlockDiagonalWeight(depthwise, E)
        self.reduce = BlockDiagonalWeight(reduce, G2)
        super().__init__([self.reduce, self.depthwise, self.shuffle, self.expand])

    @classmethod
    def from_factors(cls, expand, depthwise, reduce, groups):
        return cls(expand, depthwise, reduce, groups)

    @classmethod
    def random(cls, in_channels, out_channels, expansion=6, groups=(2, 2), *, kernel_size=3, seed=0,
               dtype=np.float32):
        """He-initialised factors for a block C_in -> E = expansion*C_in -> C_out."""
        c_in, c_out, t = _check(in_channels, "in_channels"), _check(out_channels, "out_channels"), \
            _check(expansion, "expansion")
        G1, G2 = (_check(g, "groups") for g in groups)
        kh, kw = pair(kernel_size, "kernel_size", 1)
        E = t * c_in
        if c_in % G1 or E % G2 or c_out % G2:
            raise ValueError(f"groups=({G1}, {G2}) must divide C_in={c_in}, E={E} and C_out={c_out} as used")
        rng = np.random.default_rng(seed)
        return cls(_he(rng, (E, c_in // G1, 1, 1), c_in // G1, dtype), _he(rng, (E, 1, kh, kw), kh * kw, dtype),
                   _he(rng, (c_out, E // G2, 1, 1), E // G2, dtype), (G1, G2))

    def _state(self):
        return {"expand": self.expand.weight, "depthwise": self.depthwise.weight, "reduce": self.reduce.weight,
                "groups": np.array(self.groups)}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["expand"], state["depthwise"], state["reduce"], tuple(int(g) for g in state["groups"]))


def igcv1(weight, L, M, max_iter=100, tol=1e-9):
    """Fit an IGCV1 (L, M) to a dense conv weight by alternating least squares.

    Parameters
    ----------
    weight : array, shape (G, G, kH, kW) with G = L*M, or a WeightOperator
    L, M : int
    max_iter : int
        Cap on the sweeps (one sweep solves for W_d, then for W_p).
    tol : float
        Stop when a sweep lowers the relative error by less than this.

    Returns
    -------
    IGCV1
        With ``history``: the relative error ||W - op||_F / ||W||_F after
        each sweep, non-increasing (each step is an exact least-squares
        minimisation over one factor with the other fixed).

    Notes
    -----
    With P the interleaving permutation, P W ~ W_d (P W_p): for W_p fixed,
    each L x L block of W_d is a least-squares fit of L rows of P W. For W_d
    fixed, with A = P^T W_d P, the columns of primary group l satisfy
    W[:, C_l] ~ A[:, R_l] W_p,l: each M x M*S block of W_p is a
    least-squares fit too. W_p starts as the diagonal blocks of W.
    """
    weight = as_weight(weight)
    L, M = _check(L, "L"), _check(M, "M")
    _check_fit_args(max_iter, tol)
    G = L * M
    c_out, c_in, kh, kw = weight.shape
    if (c_out, c_in) != (G, G):
        raise ValueError(f"weight must be square with C_out = C_in = L*M = {G}, got {weight.shape}")
    S = kh * kw
    W = weight.reshape(G, G * S).astype(np.float64)  # (G, G*S)
    norm = np.linalg.norm(W) or 1.0
    perm = channel_shuffle_permutation(G, L).perm
    PW = W[perm]
    wp = np.zeros((L, M, M * S))  # primary blocks
    for b in range(L):
        wp[b] = W[b * M:(b + 1) * M, b * M * S:(b + 1) * M * S]
    wd = np.zeros((M, L, L))
    inv = np.argsort(perm)
    history = []
    for _ in range(max_iter):
        full_p = np.zeros((G, G * S))
        for b in range(L):
            full_p[b * M:(b + 1) * M, b * M * S:(b + 1) * M * S] = wp[b]
        B = full_p[perm]  # P W_p
        for m in range(M):
            rows = slice(m * L, (m + 1) * L)
            wd[m] = np.linalg.lstsq(B[rows].T, PW[rows].T, rcond=None)[0].T
        full_d = np.zeros((G, G))
        for m in range(M):
            full_d[m * L:(m + 1) * L, m * L:(m + 1) * L] = wd[m]
        A = full_d[inv][:, inv]  # P^T W_d P
        for b in range(L):
            wp[b] = np.linalg.lstsq(A[:, b * M:(b + 1) * M], W[:, b * M * S:(b + 1) * M * S], rcond=None)[0]
        for b in range(L):
            full_p[b * M:(b + 1) * M, b * M * S:(b + 1) * M * S] = wp[b]
        history.append(float(np.linalg.norm(W - A @ full_p) / norm))
        if len(history) > 1 and history[-2] - history[-1] < tol:
            break
    primary = wp.reshape(G, M, kh, kw).astype(weight.dtype)
    secondary = np.concatenate([wd[m] for m in range(M)]).reshape(G, L, 1, 1).astype(weight.dtype)
    op = IGCV1(primary, secondary, L, M)
    op.history = history
    return op


def _chain_of(op):
    """An IGC operator as the ALS chain: dense (out, in, taps) factors in application order, their groups."""
    factors, groups = [], []
    for f in op.factors[::-1]:
        kh, kw = f.kernel_shape[2:]
        factors.append(f.to_dense().astype(np.float64).reshape(f.shape[0], f.kernel_shape[1], kh * kw))
        groups.append(None if isinstance(f, Permutation) else f.groups)
    # a 1x1 design has no spatial factor; with a single tap any factor can play that part in the fit
    return factors, groups, 0 if op._spatial is None else op._spatial


def _grouped(dense, groups, kernel_shape, dtype):
    """The block-diagonal (out, in, taps) array back in torch's grouped layout (out, in/groups, kH, kW)."""
    out, c_in = dense.shape[:2]
    bo, bi = out // groups, c_in // groups
    blocks = [dense[g * bo:(g + 1) * bo, g * bi:(g + 1) * bi] for g in range(groups)]
    return np.concatenate(blocks).reshape(out, bi, *kernel_shape).astype(dtype)


def _fit(op, weight, first, max_iter, tol):
    """Run ALS from ``op``'s factors; return the fitted BlockDiagonalWeight arrays (application order), history.

    ``first`` names the free factors (indices in application order) to re-fit
    first in every sweep; the others follow in application order.
    """
    from . import _als

    factors, groups, spatial = _chain_of(op)
    free = [j for j, g in enumerate(groups) if g is not None]
    order = list(first) + [j for j in free if j not in first]
    c_out, c_in, kh, kw = weight.shape
    W = weight.astype(np.float64).reshape(c_out, c_in, kh * kw)
    fitted, history = _als.als(W, factors, groups, spatial, order, max_iter, tol)
    arrays = [_grouped(fitted[j], groups[j], (kh, kw) if j == spatial else (1, 1), weight.dtype) for j in free]
    return arrays, history


def _check_fit_args(max_iter, tol):
    positive_int(max_iter, "max_iter")
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (float, int, np.floating, np.integer)):
        raise TypeError(f"tol must be a float >= 0, got {tol!r}")
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite float >= 0, got {tol!r}")


def igcv2(weight, branch_sizes, max_iter=100, tol=1e-9, seed=0):
    """Fit an IGCV2 with 1x1 branch sizes K_2 ... K_L to a square dense conv weight by alternating least squares.

    Parameters
    ----------
    weight : array, shape (C, C, kH, kW), or a WeightOperator
    branch_sizes : sequence of int, each dividing C
    max_iter : int
        Cap on the sweeps (one sweep re-fits every factor once).
    tol : float
        Stop when a sweep lowers the relative error by less than this.
    seed : int
        The starting point is :meth:`IGCV2.random` with this seed.

    Returns
    -------
    IGCV2
        With ``history``: ||W - op||_F / ||W||_F after each sweep, non-increasing.

    Notes
    -----
    Each factor enters W linearly. A 1x1 factor next to an end of the chain
    (nothing or only fixed permutations beyond it) splits into an ordinary
    least-squares problem per block; a factor between two others is fitted
    by conjugate gradients on its normal equations, warm-started at its
    current value, which never raises the error. The channel-wise factor is
    fitted tap by tap, and first in every sweep.
    """
    weight = as_weight(weight)
    _check_fit_args(max_iter, tol)
    c_out, c_in, kh, kw = weight.shape
    if c_out != c_in:
        raise ValueError(f"weight must be square (C_out = C_in) for IGCV2, got {weight.shape}")
    start = IGCV2.random(c_in, branch_sizes, kernel_size=(kh, kw), seed=seed, dtype=np.float64)
    arrays, history = _fit(start, weight, [0], max_iter, tol)
    op = IGCV2(arrays[0], arrays[1:])
    op.history = history
    return op


def igcv3(weight, expansion=6, groups=(2, 2), max_iter=100, tol=1e-9, seed=0):
    """Fit an IGCV3 block (linear: expand, shuffle, depthwise, reduce) to a dense conv weight by ALS.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    expansion : int
        E = expansion * C_in expanded channels.
    groups : (G1, G2)
        Groups of the expanding and the reducing 1x1 convs.
    max_iter, tol, seed
        As for :func:`igcv2`.

    Returns
    -------
    IGCV3
        With ``history``, non-increasing.

    Notes
    -----
    The reducing factor (last) and the expanding one (first, fitted with the
    taps stacked: W[:, :, t] = W_3 D_t P W_1) each split into a least-squares
    problem per group; the depthwise factor is fitted tap by tap. After each
    sweep a step along the sweep's change is tried and kept only when it
    lowers the error (ALS alone creeps where rescaling one factor against
    another costs nothing). The problem is not convex: on wide expansions
    the fit can settle in a local minimum even when W is an IGCV3 product
    (seen with C_in=4, expansion=6); another ``seed`` starts elsewhere.
    """
    weight = as_weight(weight)
    _check_fit_args(max_iter, tol)
    c_out, c_in, kh, kw = weight.shape
    start = IGCV3.random(c_in, c_out, expansion, groups, kernel_size=(kh, kw), seed=seed, dtype=np.float64)
    arrays, history = _fit(start, weight, [], max_iter, tol)
    op = IGCV3(arrays[0], arrays[1], arrays[2], start.groups)
    op.history = history
    return op


def _fit_iters(quick):
    return 10 if quick else 40


def _igcv1_sweep(kernel_shape, quick):
    c_out, c_in = kernel_shape[:2]
    if c_in != c_out:
        return []
    return [(f"L={L}, M={c_in // L}", dict(L=L, M=c_in // L, max_iter=_fit_iters(quick)))
            for L in ((2, 8) if quick else (2, 4, 8, 16)) if c_in % L == 0 and L < c_in]


def _igcv2_sweep(kernel_shape, quick):
    c_out, c_in = kernel_shape[:2]
    if c_in != c_out:
        return []
    designs = []
    for n in ((2,) if quick else (2, 3, 4)):
        root = round(c_in ** (1 / n))
        if root > 1 and root ** n == c_in:
            designs.append((root,) * n)
    return [("K=" + "x".join(map(str, s)), dict(branch_sizes=s, max_iter=_fit_iters(quick)))
            for s in designs or [(c_in,)]]


def _igcv3_sweep(kernel_shape, quick):
    c_out, c_in = kernel_shape[:2]
    return [(f"t={t}, groups {g}", dict(expansion=t, groups=g, max_iter=_fit_iters(quick)))
            for t, g in (((2, (2, 2)),) if quick else ((1, (2, 2)), (2, (2, 2)), (4, (2, 2)), (2, (4, 4))))
            if c_in % g[0] == 0 and (c_in * t) % g[1] == 0 and c_out % g[1] == 0]


def _square(kernel_shape):
    c_out, c_in = kernel_shape[:2]
    return None if c_in == c_out else f"needs C_in = C_out (the layer maps {c_in} to {c_out} channels)"


def _igcv3_requires(kernel_shape):
    c_out, c_in = kernel_shape[:2]
    if c_in % 2 or c_out % 2:
        return f"its designs need an even C_in and C_out (the layer maps {c_in} to {c_out} channels)"
    return None


registry.register(registry.Family("igcv1", igcv1, (IGCV1,), _igcv1_sweep,
                                  "IGCV1: primary group conv, interleave, secondary 1 x 1 group conv", _square))
registry.register(registry.Family("igcv2", igcv2, (IGCV2,), _igcv2_sweep,
                                  "IGCV2: a depthwise conv and interleaved group 1 x 1 convs", _square))
registry.register(registry.Family("igcv3", igcv3, (IGCV3,), _igcv3_sweep,
                                  "IGCV3: expand by group 1 x 1, depthwise, reduce by group 1 x 1", _igcv3_requires))
