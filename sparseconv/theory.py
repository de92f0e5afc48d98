"""Parameter counts of the interleaved group convolution designs, and the choices they imply.

Notation: C (or G) channels in and out, S spatial taps (9 for 3x3).

- Regular convolution: C^2 S parameters.
- IGCV1 (L, M), G = L M: a primary group conv of L partitions of M channels
  (kH x kW: L M^2 S) and a secondary 1x1 group conv of M partitions of L
  channels (M L^2): G (M S + L) in all.
- IGCV2 with branch sizes K_2 ... K_L: a channel-wise conv (C S) and 1x1
  group convs of C/K_l branches of K_l channels (C K_l each).
- IGCV3 block: 1x1 group conv, G1 groups, C_in -> E = t C_in
  (E C_in / G1); depthwise kH x kW on E (E S); 1x1 group conv, G2 groups,
  E -> C_out (C_out E / G2).

**Width inequality** (IGCV1, ICCV 2017). An IGCV1 of width G = L M with the
parameters of a regular convolution of C channels has G (M S + L) = C^2 S.
So G > C exactly when G^2 > G (M S + L) / S, i.e. G S > M S + L, i.e.
S M (L - 1) > L: true for every L >= 2 once S M >= 2. (L = 1 is a regular
convolution of M channels plus a per-channel scale, narrower than C.) At an
equal budget the interleaved design is wider; ``igcv1_equal_width``
computes how much.

**Balance condition** (IGCV2, CVPR 2018). With ∏_{l>=2} K_l = C fixed (strict
complementarity), the 1x1 parameters C Σ K_l are smallest, by the AM-GM
inequality, when all K_l are equal, K = C^{1/(L-1)}: every 1x1 factor then
has the same C K parameters. Their total C (L-1) C^{1/(L-1)} is minimal in
L where d/dx [x C^{1/x}] = C^{1/x} (1 - ln C / x) = 0, i.e. L - 1 = ln C.
"""

import math


from ._validation import positive_int

__all__ = [
    "igcv1_equal_width",
    "igcv1_max_width",
    "igcv1_params",
    "igcv2_balanced",
    "igcv2_optimal_factors",
    "igcv2_params",
    "igcv3_params",
    "regular_params",
]


_positive = positive_int


def regular_params(C, S):
    """C^2 S: a regular convolution of C channels in and out with S taps."""
    return _positive(C, "C") ** 2 * _positive(S, "S")


def igcv1_params(L, M, S):
    """L M^2 S + M L^2 = G (M S + L): IGCV1 with L primary partitions of M channels."""
    L, M, S = _positive(L, "L"), _positive(M, "M"), _positive(S, "S")
    return L * M * M * S + M * L * L


def igcv1_equal_width(C, S, M):
    """The largest L (and width G = L M) whose IGCV1 has at most a regular C-channel conv's parameters.

    Returns
    -------
    (L, G, params) : tuple of int
        ``params = igcv1_params(L, M, S) <= regular_params(C, S)``; L is 0
        (and G 0) when even L = 1 exceeds the budget.
    """
    budget = regular_params(C, S)
    M, S = _positive(M, "M"), _positive(S, "S")
    # M L^2 + M^2 S L - budget <= 0
    L = int((-M * M * S + math.sqrt((M * M * S) ** 2 + 4 * M * budget)) / (2 * M))
    while L > 0 and igcv1_params(L, M, S) > budget:
        L -= 1
    while igcv1_params(L + 1, M, S) <= budget:
        L += 1
    return L, L * M, igcv1_params(L, M, S) if L else 0


def igcv1_max_width(params, S):
    """The widest IGCV1 (over all integer L, M >= 1) within a parameter budget.

    Returns
    -------
    (G, L, M) : tuple of int
        Ties in G go to the smaller parameter count, then to the larger L.
    """
    params, S = _positive(params, "params"), _positive(S, "S")
    best = (0, 0, 0, 0)
    M = 1
    while M * M * S + M <= params:  # L = 1 must fit
        L = int((-M * M * S + math.sqrt((M * M * S) ** 2 + 4 * M * params)) / (2 * M))
        while L > 0 and igcv1_params(L, M, S) > params:
            L -= 1
        if L:
            key = (L * M, -igcv1_params(L, M, S), L, M)
            best = max(best, key)
        M += 1
    if best[0] == 0:
        raise ValueError(f"params={params} is below the smallest IGCV1 (L = M = 1: {S + 1})")
    return best[0], best[2], best[3]


def igcv2_params(C, S, branch_sizes):
    """C S + C Σ K_l: a channel-wise conv and 1x1 group convs of branch sizes K_l (each dividing C)."""
    C, S = _positive(C, "C"), _positive(S, "S")
    sizes = [_positive(k, "branch size") for k in branch_sizes]
    for k in sizes:
        if C % k:
            raise ValueError(f"branch size {k} must divide C={C}")
    return C * S + C * sum(sizes)


def igcv2_balanced(C, S, n_factors):
    """The balanced IGCV2 with ``n_factors`` factors (one channel-wise, n_factors - 1 of 1x1).

    Returns
    -------
    (K, params) : (float, float)
        K = C^{1/(n_factors - 1)}, the common branch size, and the parameter
        count C S + (n_factors - 1) C K it gives (real-valued: K need not be an int).
    """
    C, S, n = _positive(C, "C"), _positive(S, "S"), _positive(n_factors, "n_factors")
    if n < 2:
        raise ValueError(f"n_factors must be >= 2 (a channel-wise conv and at least one 1x1), got {n_factors}")
    K = C ** (1.0 / (n - 1))
    return K, C * S + (n - 1) * C * K


def _factorizations(n, smallest=2):
    """All multisets of integers >= 2 whose product is n, as non-decreasing tuples."""
    if n == 1:
        yield ()
        return
    for k in range(smallest, n + 1):
        if n % k == 0:
            for rest in _factorizations(n // k, k):
                yield (k,) + rest


def igcv2_optimal_factors(C, S):
    """The strictly complementary integer IGCV2 (∏ K_l = C) with the fewest parameters.

    Returns
    -------
    (branch_sizes, params) : (tuple of int, int)
        Ties go to fewer factors. For C = 1 the design is the channel-wise
        conv alone.
    """
    C, S = _positive(C, "C"), _positive(S, "S")
    best = None
    for sizes in _factorizations(C):
        key = (igcv2_params(C, S, sizes), len(sizes))
        if best is None or key < best[0]:
            best = (key, sizes)
    return best[1], best[0][0]


def igcv3_params(C_in, C_out, expansion, groups, S):
    """E C_in / G1 + E S + C_out E / G2 with E = expansion * C_in: the IGCV3 block's convolutions."""
    C_in, C_out, t, S = (_positive(v, n) for v, n in ((C_in, "C_in"), (C_out, "C_out"),
                                                       (expansion, "expansion"), (S, "S")))
    G1, G2 = (_positive(g, "groups") for g in groups)
    E = t * C_in
    if C_in % G1 or E % G1 or E % G2 or C_out % G2:
        raise ValueError(f"groups=({G1}, {G2}) must divide C_in={C_in}, E={E} and C_out={C_out} as used")
    return E * C_in // G1 + E * S + C_out * E // G2
