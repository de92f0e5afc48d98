"""The sparse family: zeros that are not stored cost nothing.

:func:`prune` zeroes the weights (or whole structures) of smallest magnitude
and stores what is left in the format its structure allows:

- ``"unstructured"``: any entries, CSR (scipy.sparse layout);
- ``"channel"``: whole output channels (rows of W), CSR with empty rows;
- ``"kernel"``: whole kH x kW kernels W[o, c], BSR with 1 x kH*kW blocks;
- ``"block"``: (bh, bw) blocks of W, BSR;
- ``"n:m"``: in every group of m consecutive entries of a row, the n largest
  survive (2:4 is the pattern sparse tensor cores run); stored compactly as
  the kept values and their positions in the group.

Each format has a numba kernel (``_sparse``), parallel over column tiles and
output rows; none hands the product to scipy.
"""

import numba
import numpy as np
import scipy.sparse

from ._kernels import sparse as _sparse
from ._kernels import tile as _tile
from ._validation import choice, count_or_fraction, positive_int
from .operator import WeightOperator, as_weight
from .cost import Cost
from . import registry

__all__ = ["STRUCTURES", "SparseWeight", "prune"]

STRUCTURES = ("unstructured", "channel", "kernel", "block", "n:m")
_FORMATS = ("csr", "bsr", "nm")
# Columns per task: a (C_in*kH*kW, tile) slice of the columns stays in L2.
_TILE = 128
# The kernels pack each column tile when every row of the columns is used by
# at least this many stored values on average (measured on a 256 x 2304
# weight against 3136 columns: packing made the CSR kernel 1.4-1.7x faster at
# 50-90% sparsity and no faster at 95%; at 99%, 2.6 uses per row, it is skipped).
_PACK_MIN_USES = 4


class SparseWeight(WeightOperator):
    """A conv weight matrix with most entries zero, stored without them.

    Build one with :func:`prune`, or :meth:`from_scipy` from a scipy.sparse
    CSR/BSR matrix of shape (C_out, C_in*kH*kW).

    Attributes
    ----------
    format : {"csr", "bsr", "nm"}
    structure : str
        What was pruned (one of :data:`STRUCTURES`), or "given".
    arrays : dict
        csr/bsr: ``indptr``, ``indices``, ``data`` (scipy's layout; BSR data
        is (nnz_blocks, bh, bw)); nm: ``values`` and ``pos`` (C_out, K/m*n)
        and ``nm`` = [n, m].

    Notes
    -----
    ``num_params`` counts stored values; ``nbytes`` adds the index arrays;
    the cost is one multiply-add per stored value per column.
    """

    torch_module = "SparseConv2d"

    def __init__(self, kernel_shape, format, arrays, structure="given"):
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {list(_FORMATS)}, got {format!r}")
        self.format = format
        self.structure = structure
        self.arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        value_key = "values" if format == "nm" else "data"
        super().__init__(kernel_shape, self.arrays[value_key].dtype)
        self._check()

    def _check(self):
        """Index arrays that the kernels can trust: in range and consistent, or a clear error."""
        a, (rows, cols) = self.arrays, self.shape
        if self.format == "nm":
            n, m = (int(v) for v in a["nm"])
            ok = (0 < n <= m and cols % m == 0 and a["values"].shape == (rows, cols // m * n)
                  and a["pos"].shape == a["values"].shape and (a["pos"].size == 0 or int(a["pos"].max()) < m))
        else:
            bh, bw = a["data"].shape[1:] if self.format == "bsr" else (1, 1)
            indptr, indices = a["indptr"], a["indices"]
            ok = (rows % bh == 0 and cols % bw == 0 and indptr.shape == (rows // bh + 1,) and indptr[0] == 0
                  and np.all(np.diff(indptr) >= 0) and indptr[-1] == indices.size == a["data"].shape[0]
                  and (indices.size == 0 or (indices.min() >= 0 and indices.max() < cols // bw)))
        if not ok:
            raise ValueError(f"the {self.format} arrays do not describe a valid {self.shape} matrix")

    @classmethod
    def from_scipy(cls, matrix, kernel_shape, structure="given"):
        """Wrap a scipy.sparse CSR or BSR matrix of shape (C_out, C_in*kH*kW)."""
        c_out, c_in, kh, kw = kernel_shape
        if matrix.shape != (c_out, c_in * kh * kw):
            raise ValueError(f"matrix has shape {matrix.shape}, kernel_shape needs {(c_out, c_in * kh * kw)}")
        fmt = matrix.format
        if fmt not in ("csr", "bsr"):
            matrix, fmt = matrix.tocsr(), "csr"
        matrix.sort_indices()
        arrays = {"indptr": matrix.indptr.astype(np.int32), "indices": matrix.indices.astype(np.int32),
                  "data": matrix.data}
        return cls(kernel_shape, fmt, arrays, structure)

    @property
    def nnz(self):
        """Stored values (for BSR, every entry of every stored block)."""
        key = "values" if self.format == "nm" else "data"
        return int(self.arrays[key].size)

    @property
    def density(self):
        return self.nnz / (self.shape[0] * self.shape[1]) if self.shape[0] * self.shape[1] else 0.0

    def to_scipy(self):
        """The matrix as scipy.sparse (CSR for the csr and nm formats, BSR for bsr)."""
        a = self.arrays
        if self.format == "csr":
            return scipy.sparse.csr_matrix((a["data"], a["indices"], a["indptr"]), shape=self.shape)
        if self.format == "bsr":
            return scipy.sparse.bsr_matrix((a["data"], a["indices"], a["indptr"]), shape=self.shape)
        n, m = (int(v) for v in a["nm"])
        rows = np.repeat(np.arange(self.shape[0]), a["values"].shape[1])
        cols = ((np.arange(a["values"].shape[1]) // n) * m + a["pos"]).ravel()
        return scipy.sparse.csr_matrix((a["values"].ravel(), (rows, cols)), shape=self.shape)

    def to_dense(self):
        return self.to_scipy().toarray().astype(self.dtype, copy=False)

    def _matmat(self, cols):
        cols = np.ascontiguousarray(cols, dtype=self.dtype)
        out = np.empty((self.shape[0], cols.shape[1]), self.dtype)
        if out.size == 0:
            return out
        n_tiles = -(-cols.shape[1] // _TILE)
        threads = numba.get_num_threads()
        row_blocks = 1 if n_tiles >= 2 * threads else -(-2 * threads // n_tiles)
        a = self.arrays
        pack = self.nnz >= _PACK_MIN_USES * self.shape[1]
        if self.format == "csr":
            path = _tile.float_path()
            _sparse.csr_matmat(a["indptr"], a["indices"], a["data"], cols, out, _TILE, row_blocks, pack,
                               _tile.MARKER[path](0), _tile.row_tile_cols(path, cols.dtype))
        elif self.format == "bsr":
            _sparse.bsr_matmat(a["indptr"], a["indices"], a["data"], cols, out, _TILE, row_blocks, pack)
        else:
            n, m = (int(v) for v in a["nm"])
            _sparse.nm_matmat(a["values"], a["pos"], n, m, cols, out, _TILE, row_blocks, pack)
        return out

    def _rmatmat(self, y):
        return np.asarray(self.to_scipy().T @ y)

    @property
    def num_params(self):
        return self.nnz

    @property
    def nbytes(self):
        return int(sum(v.nbytes for k, v in self.arrays.items() if k != "nm"))

    def cost(self, n_cols):
        macs = self.nnz * int(n_cols)
        isz = self.dtype.itemsize
        moved = self.nbytes + (self.shape[1] + self.shape[0]) * int(n_cols) * isz
        return Cost(mults=macs, adds=macs, bytes_moved=moved)

    def _state(self):
        return dict(self.arrays, format=np.array(self.format), structure=np.array(self.structure))

    @classmethod
    def _from_state(cls, state, kernel_shape):
        arrays = {k: v for k, v in state.items() if k not in ("format", "structure")}
        return cls(kernel_shape, str(state["format"]), arrays, str(state["structure"]))

    def __repr__(self):
        return (f"{super().__repr__()[:-1]}, format={self.format!r}, structure={self.structure!r}, "
                f"density={self.density:.3f})")


def _is_fraction(amount, n, m):
    """Whether ``amount`` is 1 - n/m (for valid n, m; a bad n or m is reported by its own check)."""
    try:
        return abs(float(amount) - (1 - int(n) / int(m))) < 1e-9
    except (TypeError, ValueError, ZeroDivisionError):
        return False


def _smallest(scores, amount, name="amount"):
    """Boolean mask of the ``amount`` entries of smallest score (stable order)."""
    k = count_or_fraction(amount, name, scores.size)
    mask = np.zeros(scores.size, bool)
    mask[np.argsort(scores.ravel(), kind="stable")[:k]] = True
    return mask.reshape(scores.shape)


def prune(weight, amount=None, structure="unstructured", block=(4, 4), n=2, m=4):
    """Zero the weights or structures of smallest magnitude; keep the rest sparse.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    amount : float in [0, 1] or int, optional
        What to prune, ``torch.nn.utils.prune``'s convention: a fraction of
        the units, or a count of them. Units are entries (unstructured),
        output channels (channel), kernels (kernel) or blocks (block).
        Not used by ``"n:m"``, whose sparsity is 1 - n/m.
    structure : {"unstructured", "channel", "kernel", "block", "n:m"}
    block : (bh, bw)
        Block shape for ``"block"``; must divide (C_out, C_in*kH*kW).
    n, m : int
        For ``"n:m"``: keep n of every m consecutive entries of a row; m must
        divide C_in*kH*kW.

    Returns
    -------
    SparseWeight

    Notes
    -----
    Magnitude is abs(w) for entries and the L1 norm for structures. Entries that
    are zero already are not stored either.
    """
    weight = as_weight(weight)
    choice(structure, "structure", STRUCTURES)
    if structure == "n:m":
        if amount is not None and not (isinstance(amount, (float, np.floating)) and _is_fraction(amount, n, m)):
            raise ValueError(f"structure='n:m' prunes 1 - n/m of the weights; amount must be None or that fraction "
                             f"(1 - {n}/{m}), got {amount!r}")
    elif amount is None:
        raise ValueError(f"structure={structure!r} needs amount (a fraction in [0, 1] or a count)")
    c_out, c_in, kh, kw = weight.shape
    kk = kh * kw
    matrix = weight.reshape(c_out, c_in * kk)  # (C_out, C_in*kH*kW)
    if structure == "unstructured":
        keep = ~_smallest(np.abs(matrix), amount) & (matrix != 0)
        return SparseWeight.from_scipy(scipy.sparse.csr_matrix(np.where(keep, matrix, 0)), weight.shape, structure)
    if structure == "channel":
        dropped = _smallest(np.abs(matrix).sum(axis=1), amount)
        return SparseWeight.from_scipy(scipy.sparse.csr_matrix(np.where(dropped[:, None], 0, matrix)),
                                       weight.shape, structure)
    if structure == "kernel":
        dropped = _smallest(np.abs(weight).sum(axis=(2, 3)), amount)  # (C_out, C_in)
        kept = np.where(np.repeat(dropped, kk, axis=1), 0, matrix)
        return SparseWeight.from_scipy(scipy.sparse.bsr_matrix(kept, blocksize=(1, kk)), weight.shape, structure)
    if structure == "block":
        if not (isinstance(block, (tuple, list)) and len(block) == 2
                and all(isinstance(b, (int, np.integer)) and b > 0 for b in block)):
            raise ValueError(f"block must be a pair of positive ints, got {block!r}")
        bh, bw = (int(b) for b in block)
        if c_out % bh or (c_in * kk) % bw:
            raise ValueError(f"block={block} must divide the matrix shape (C_out, C_in*kH*kW) = {matrix.shape}")
        norms = np.abs(matrix).reshape(c_out // bh, bh, -1, bw).sum(axis=(1, 3))  # (C_out/bh, K/bw)
        dropped = np.repeat(np.repeat(_smallest(norms, amount), bh, axis=0), bw, axis=1)
        kept = np.where(dropped, 0, matrix)
        return SparseWeight.from_scipy(scipy.sparse.bsr_matrix(kept, blocksize=(bh, bw)), weight.shape, structure)
    # n:m
    n, m = positive_int(n, "n"), positive_int(m, "m")
    if n > m or m > 256:
        raise ValueError(f"n:m needs 1 <= n <= m <= 256, got n={n}, m={m}")
    k = matrix.shape[1]
    if k % m:
        raise ValueError(f"n:m needs m={m} to divide the reduced dimension C_in*kH*kW = {k}")
    groups = matrix.reshape(c_out, k // m, m)
    pos = np.sort(np.argsort(-np.abs(groups), axis=2, kind="stable")[:, :, :n], axis=2)  # (C_out, K/m, n)
    values = np.take_along_axis(groups, pos, axis=2)
    arrays = {"values": values.reshape(c_out, -1), "pos": pos.reshape(c_out, -1).astype(np.uint8),
              "nm": np.array([n, m], np.int64)}
    return SparseWeight(weight.shape, "nm", arrays, structure)


def _sweep(kernel_shape, quick):
    c_out, c_in, kh, kw = kernel_shape
    points = [(f"unstructured {a:.0%}", dict(amount=a)) for a in ((0.5, 0.9) if quick else (0.5, 0.75, 0.9, 0.95))]
    if not quick:
        points += [("channel 50%", dict(amount=0.5, structure="channel")),
                   ("block 4x4 75%", dict(amount=0.75, structure="block", block=(4, 4)))]
    if (c_in * kh * kw) % 4 == 0:
        points.append(("2:4", dict(structure="n:m", n=2, m=4)))
    return points


registry.register(registry.Family("prune", prune, (SparseWeight,), _sweep,
                                  "pruned weights: CSR, BSR (kernels, blocks) or compact N:M", keeps_zeros=True))
