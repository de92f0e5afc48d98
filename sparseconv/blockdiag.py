"""Block-diagonal weights: structured zeros that are exactly a group convolution.

With the input and output channels split into ``groups`` consecutive blocks,
a group convolution connects block g of the inputs only to block g of the
outputs: its (C_out, C_in*kH*kW) matrix is block-diagonal (the im2col rows
of one input channel are consecutive, so each block is a contiguous
(C_out/groups) x (C_in/groups*kH*kW) submatrix). groups = C_in = C_out is the
depthwise convolution. It is cheap, and what it loses is that channels in
different groups never meet: the interleaved designs (IGC) put that back.
"""


import numpy as np

from ._validation import positive_int
from .operator import WeightOperator, as_weight
from .dense import grouped_conv2d
from .cost import dense_cost
from . import registry

__all__ = ["BlockDiagonalWeight", "block_diagonal"]


def _check_groups(groups, c_in, c_out):
    groups = positive_int(groups, "groups")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide C_in={c_in} and C_out={c_out}")
    return int(groups)


class BlockDiagonalWeight(WeightOperator):
    """A group convolution's weight as the block-diagonal matrix it is.

    Parameters
    ----------
    weight : array, shape (C_out, C_in/groups, kH, kW)
        torch's grouped layout: output channel o sees input channels
        g*C_in/groups ... (g+1)*C_in/groups - 1 with g = o // (C_out/groups).
    groups : int

    Notes
    -----
    ``conv2d`` runs the grouped kernels (one GEMM per diagonal block, or
    direct loops when the blocks are tiny, as for depthwise); nothing ever
    touches the zero blocks. Cost per column: C_out * C_in/groups * kH*kW
    multiply-adds, 1/groups of the dense layer's.
    """

    torch_module = "BlockDiagonalConv2d"

    def __init__(self, weight, groups):
        weight = as_weight(weight)
        c_out, cin_g, kh, kw = weight.shape
        self.groups = _check_groups(groups, cin_g * groups, c_out)
        self.weight = weight
        super().__init__((c_out, cin_g * self.groups, kh, kw), weight.dtype)

    @classmethod
    def from_group_weight(cls, weight, groups):
        """From a weight already in torch's grouped layout (C_out, C_in/groups, kH, kW)."""
        return cls(weight, groups)

    @property
    def blocks(self):
        """The diagonal blocks, (groups, C_out/groups, C_in/groups*kH*kW)."""
        return self.weight.reshape(self.groups, self.shape[0] // self.groups, -1)

    def _matmat(self, cols):
        g = self.groups
        n = cols.shape[1]
        stacked = np.asarray(cols).reshape(g, -1, n)  # (groups, C_in/groups*kH*kW, n)
        return np.matmul(self.blocks, stacked).reshape(self.shape[0], n)

    def _rmatmat(self, y):
        g = self.groups
        n = y.shape[1]
        stacked = np.asarray(y).reshape(g, -1, n)  # (groups, C_out/groups, n)
        return np.matmul(self.blocks.transpose(0, 2, 1), stacked).reshape(self.shape[1], n)

    def to_dense(self):
        g = self.groups
        rows, k = self.shape[0] // g, self.shape[1] // g
        dense = np.zeros(self.shape, self.dtype)
        for b, block in enumerate(self.blocks):
            dense[b * rows:(b + 1) * rows, b * k:(b + 1) * k] = block
        return dense

    @property
    def num_params(self):
        return int(self.weight.size)

    @property
    def nbytes(self):
        return int(self.weight.nbytes)

    def cost(self, n_cols):
        c_out, k = self.shape
        return dense_cost(c_out, k // self.groups, k, n_cols, self.dtype.itemsize)

    def _conv2d(self, x, geom, bias, workspace):
        return grouped_conv2d(self, self.groups, x, geom, bias, workspace)

    def _state(self):
        return {"weight": self.weight, "groups": np.array(self.groups)}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["weight"], int(state["groups"]))


def block_diagonal(weight, groups):
    """Keep the diagonal blocks of a dense conv weight: the group convolution nearest to it.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    groups : int
        Must divide C_in and C_out; groups = C_in = C_out gives depthwise.

    Returns
    -------
    BlockDiagonalWeight
        Its matrix is W with every entry off the diagonal blocks set to zero,
        which is also the best block-diagonal approximation in Frobenius norm.
    """
    weight = as_weight(weight)
    c_out, c_in, kh, kw = weight.shape
    groups = _check_groups(groups, c_in, c_out)
    cout_g, cin_g = c_out // groups, c_in // groups
    grouped = np.concatenate(
        [weight[g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] for g in range(groups)]
    )  # (C_out, C_in/groups, kH, kW)
    return BlockDiagonalWeight(grouped, groups)


def _sweep(kernel_shape, quick):
    c_out, c_in = kernel_shape[:2]
    return [(f"groups {g}", dict(groups=g)) for g in ((2, 8) if quick else (2, 4, 8, 16, 32))
            if c_in % g == 0 and c_out % g == 0]


def _requires(kernel_shape):
    c_out, c_in = kernel_shape[:2]
    if not any(c_in % g == 0 and c_out % g == 0 for g in (2, 4, 8, 16, 32)):
        return f"C_in = {c_in} and C_out = {c_out} have no common number of groups among 2, 4, ..., 32"
    return None


registry.register(registry.Family("block_diagonal", block_diagonal, (BlockDiagonalWeight,), _sweep,
                                  "a group convolution: the diagonal blocks of W", _requires))
