"""Alternating least squares for products of block-diagonal factors (NumPy only).

A product W = A_k ... A_s ... A_1 with one spatial factor A_s (kH x kW taps,
S of them) and 1x1 factors around it is linear in each factor when the
others are fixed. This module fits the free factors of such a chain to a
dense weight, one factor at a time, each step an exact (or warm-started
conjugate-gradient) least-squares minimisation over that factor's blocks,
so the error never increases.

A factor is a float64 array of shape (out, in, taps) with taps = S for the
spatial one and 1 otherwise, plus its number of diagonal blocks (``None``
for a fixed factor such as a permutation). Tap t of the weight is
W[:, :, t] = Post A_s[:, :, t] Pre, with Pre and Post the products of the
1x1 factors before and after the spatial one.
"""

import warnings

import numpy as np
import scipy.linalg

# Coupled problems with at most this many unknowns are solved directly (their Gram matrix), larger ones by CG.
_DIRECT_MAX_PARAMS = 2048
# Conjugate-gradient caps for the coupled problems (neither neighbour is the identity).
_CG_MAX_ITER = 300
_CG_RTOL = 1e-12
# ALS creeps along the flat valleys of products (rescaling one factor against another costs nothing):
# after each sweep, a step of this size times the sweep's change is tried, grown while it helps.
_EXTRAPOLATE = 1.0
_STEP_GROWTH = 1.5


def _chain(mats, size):
    """The product of 1x1 factors given in application order; the identity of ``size`` when empty."""
    out = None
    for m in mats:
        out = m[:, :, 0] if out is None else m[:, :, 0] @ out
    return np.eye(size) if out is None else out


def product(factors, spatial):
    """The (C_out, C_in, S) weight of the chain."""
    pre = _chain(factors[:spatial], factors[spatial].shape[1])
    post = _chain(factors[spatial + 1:], factors[spatial].shape[0])
    mid = np.einsum("mnt,nc->mct", factors[spatial], pre, optimize=True)  # (m, C_in, S)
    return np.einsum("om,mct->oct", post, mid, optimize=True)


def _block_slices(shape, groups):
    p, q = shape
    bp, bq = p // groups, q // groups
    return [(slice(g * bp, (g + 1) * bp), slice(g * bq, (g + 1) * bq)) for g in range(groups)]


def _solve(T, L, R, groups, F0):
    """argmin ||T - L F R||_F over block-diagonal F (``groups`` blocks), warm-started at F0.

    ``L`` or ``R`` is None for the identity. With one of them the identity the
    blocks decouple into ordinary least-squares problems; otherwise the normal
    equations mask(L^T L F R R^T) = mask(L^T T R^T) are solved by conjugate
    gradients from F0, which can only lower the objective.
    """
    blocks = _block_slices(F0.shape, groups)
    F = np.zeros_like(F0)
    if L is None and R is None:
        for rows, cols in blocks:
            F[rows, cols] = T[rows, cols]
        return F
    if L is None:  # rows of block g of T come from block g of F only: T[rows] ~ F_g R[cols]
        for rows, cols in blocks:
            F[rows, cols] = np.linalg.lstsq(R[cols].T, T[rows].T, rcond=None)[0].T
        return F
    if R is None:  # T[:, cols] ~ L[:, rows] F_g
        for rows, cols in blocks:
            F[rows, cols] = np.linalg.lstsq(L[:, rows], T[:, cols], rcond=None)[0]
        return F
    mask = np.zeros(F0.shape, bool)
    for rows, cols in blocks:
        mask[rows, cols] = True
    A, B = L.T @ L, R @ R.T
    rows_i, cols_j = np.nonzero(mask)
    if rows_i.size <= _DIRECT_MAX_PARAMS:  # the normal equations on the support: (A[i, k] B[l, j]) f = rhs
        gram = A[np.ix_(rows_i, rows_i)] * B[np.ix_(cols_j, cols_j)].T
        rhs = (L.T @ T @ R.T)[rows_i, cols_j]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
                f = scipy.linalg.solve(gram, rhs, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning):  # singular: the minimum-norm minimiser
            f = np.linalg.lstsq(gram, rhs, rcond=None)[0]
        F[rows_i, cols_j] = f
        return F

    def hessian(X):
        return np.where(mask, A @ X @ B, 0.0)

    F = np.where(mask, F0, 0.0)
    rhs = np.where(mask, L.T @ T @ R.T, 0.0)
    r = rhs - hessian(F)
    d = r.copy()
    rr = float(np.vdot(r, r))
    stop = _CG_RTOL ** 2 * float(np.vdot(rhs, rhs))
    for _ in range(_CG_MAX_ITER):
        if rr <= stop:
            break
        Hd = hessian(d)
        curvature = float(np.vdot(d, Hd))
        if curvature <= 0:
            break
        alpha = rr / curvature
        F = F + alpha * d
        r = r - alpha * Hd
        rr_new = float(np.vdot(r, r))
        d = r + (rr_new / rr) * d
        rr = rr_new
    return F


def _fit_factor(W, factors, spatial, j, groups):
    """Re-fit factor j with the others fixed."""
    S = W.shape[2]
    f = factors[j]
    if j == spatial:  # tap by tap: W[:, :, t] ~ Post A_s[:, :, t] Pre
        post = _chain(factors[j + 1:], f.shape[0]) if j + 1 < len(factors) else None
        pre = _chain(factors[:j], f.shape[1]) if j else None
        return np.stack([_solve(W[:, :, t], post, pre, groups, f[:, :, t]) for t in range(S)], axis=2)
    if j > spatial:  # W as (C_out, C_in*S) ~ Post A_j Mid
        post = _chain(factors[j + 1:], f.shape[0]) if j + 1 < len(factors) else None
        mid = product(factors[:j], spatial)  # (in_j, C_in, S)
        T = W.reshape(W.shape[0], -1)  # (C_out, C_in*S)
        return _solve(T, post, mid.reshape(mid.shape[0], -1), groups, f[:, :, 0])[:, :, None]
    # before the spatial factor: stack the taps, W[:, :, t] ~ (Post A_s[:, :, t] Mid) A_j Pre
    post = _chain(factors[spatial + 1:], factors[spatial].shape[0])
    mid = _chain(factors[j + 1:spatial], factors[spatial].shape[1])
    left = np.concatenate([post @ factors[spatial][:, :, t] @ mid for t in range(S)])  # (S*C_out, out_j)
    pre = _chain(factors[:j], f.shape[1]) if j else None
    T = W.transpose(2, 0, 1).reshape(S * W.shape[0], W.shape[1])  # (S*C_out, C_in), rows (t, o)
    return _solve(T, left, pre, groups, f[:, :, 0])[:, :, None]


def als(W, factors, groups, spatial, order, max_iter, tol):
    """Fit the free factors of a chain to W by alternating least squares.

    Parameters
    ----------
    W : array, shape (C_out, C_in, S)
    factors : list of arrays (out, in, taps) in application order (initial values)
    groups : list of int or None (fixed factor), one per factor
    spatial : index of the spatial factor
    order : indices of the free factors in the order one sweep re-fits them
    max_iter, tol : sweep cap; stop when a sweep lowers the error by less than tol

    Returns
    -------
    factors, history
        The fitted factors and ||W - product||_F / ||W||_F after each sweep.
    """
    factors = [np.array(f, dtype=np.float64) for f in factors]
    norm = np.linalg.norm(W) or 1.0

    def error(fs):
        return float(np.linalg.norm(W - product(fs, spatial)) / norm)

    history = []
    step = _EXTRAPOLATE
    for sweep in range(max_iter):
        before = [f.copy() for f in factors]
        for j in order:
            factors[j] = _fit_factor(W, factors, spatial, j, groups[j])
        err = error(factors)
        if sweep:  # extrapolate along the sweep's direction; keep it only when it lowers the error
            trial = [f + step * (f - b) for f, b in zip(factors, before)]
            trial_err = error(trial)
            if trial_err < err:
                factors, err, step = trial, trial_err, step * _STEP_GROWTH
            else:
                step = max(_EXTRAPOLATE, step / _STEP_GROWTH)
        history.append(err)
        if len(history) > 1 and history[-2] - history[-1] < tol:
            break
    return factors, history
