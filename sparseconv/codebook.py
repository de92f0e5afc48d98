"""k-means codebooks (weight sharing): W[o, k] = codebook[idx[o, k]].

Han, Mao, Dally, "Deep Compression", ICLR 2016: cluster the weights (2.91,
3.06 and 3.21 all become one centroid near 3), store the k centroids and a
ceil(log2 k)-bit index per weight. The product can exploit the sharing:
per output, add up the inputs that share a centroid first (one addition
per weight) and multiply only k times.

Clustering is scipy's k-means (:func:`scipy.cluster.vq.kmeans2`), seeded;
``init="kmeans++"`` is its k-means++ seeding, ``init="linear"`` Deep
Compression's linear initialisation (centroids evenly spaced between the
smallest and the largest weight), which keeps the rare large weights.
"""

import warnings

import numpy as np
from scipy.cluster.vq import kmeans2

from ._kernels import lowp as _lowp
from . import _pack
from ._validation import choice, integer
from .dense import DecodedFirst
from .operator import WeightOperator, as_weight, _row_blocks
from .cost import Cost
from . import registry

__all__ = ["CodebookWeight", "kmeans_quantize"]

INITS = ("kmeans++", "linear")
# Columns per task of the codebook kernel.
_TILE = 64


def _index_bits(k):
    return max(1, int(np.ceil(np.log2(k)))) if k > 1 else 1


class CodebookWeight(DecodedFirst, WeightOperator):
    """W[o, k] = codebook[o or 0, idx[o, k]]: k shared values and an index per weight.

    Parameters
    ----------
    idx : int array, shape (C_out, C_in*kH*kW), values < k
    codebook : float array, shape (k,) (shared) or (C_out, k) (per channel)
    kernel_shape : (C_out, C_in, kH, kW)

    Notes
    -----
    Stored: the codebook and the indices at ceil(log2 k) bits, packed below
    5 bits. ``method``: "decoded" (default) runs the weight decoded once to
    floats with the dense kernels (:class:`sparseconv.dense.DecodedFirst`);
    "accumulate" runs the accumulate-then-multiply kernel: per output,
    C_in*kH*kW additions into the k bins, k multiplications and k - 1
    additions to combine them (its ``cost``).
    """

    torch_module = "CodebookConv2d"
    methods = ("decoded", "accumulate")

    def __init__(self, idx, codebook, kernel_shape):
        c_out, c_in, kh, kw = (int(v) for v in kernel_shape)
        k_in = c_in * kh * kw
        codebook = np.asarray(codebook)
        if codebook.dtype.kind != "f" or codebook.ndim not in (1, 2) or \
                (codebook.ndim == 2 and codebook.shape[0] != c_out):
            raise ValueError(f"codebook must be a float array of shape (k,) or (C_out, k) = ({c_out}, k), "
                             f"got {codebook.dtype} {codebook.shape}")
        k = codebook.shape[-1]
        if not 1 <= k <= 256:
            raise ValueError(f"the codebook must hold 1 to 256 centroids, got {k}")
        idx = np.asarray(idx)
        if idx.shape != (c_out, k_in) or idx.dtype.kind not in "iu":
            raise ValueError(f"idx must be integers of shape (C_out, C_in*kH*kW) = ({c_out}, {k_in}), got "
                             f"{idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= k):
            raise ValueError(f"idx must lie in [0, {k - 1}] for a codebook of {k}")
        self.codebook = np.ascontiguousarray(codebook)
        self.index_bits = _index_bits(k)
        self.packed = _pack.pack(idx.astype(np.uint8), self.index_bits)
        super().__init__(kernel_shape, codebook.dtype)

    def _idx(self):
        """The indices unpacked to one uint8 each, for the kernel: a decoded copy (``cache_nbytes``)."""
        return self._cached("idx", lambda: np.ascontiguousarray(self.idx))

    @property
    def n_clusters(self):
        return self.codebook.shape[-1]

    @property
    def idx(self):
        """The index of each weight's centroid, (C_out, C_in*kH*kW) uint8 (unpacked from storage)."""
        return _pack.unpack(self.packed, self.index_bits, self.shape[1])

    def to_dense(self):
        if self.codebook.ndim == 1:
            return self.codebook[self._idx()]
        return np.take_along_axis(self.codebook, self._idx().astype(np.intp), axis=1)

    def _kernel_matmat(self, cols):
        cols = np.ascontiguousarray(cols, dtype=np.result_type(cols.dtype, self.dtype))
        out = np.empty((self.shape[0], cols.shape[1]), cols.dtype)
        table = np.ascontiguousarray(self.codebook.reshape(-1, self.n_clusters), dtype=cols.dtype)
        _lowp.codebook_gemm(self._idx(), table, cols, out, _TILE, _row_blocks(self.shape[0], cols.shape[1], _TILE))
        return out

    def _rmatmat(self, y):
        return self.to_dense().T @ y

    @property
    def num_params(self):
        return int(self.shape[0] * self.shape[1] + self.codebook.size)

    @property
    def nbytes(self):
        return int(self.packed.nbytes + self.codebook.nbytes)

    def _kernel_cost(self, n_cols):
        c_out, k_in = self.shape
        n = int(n_cols)
        k = self.n_clusters
        isz = self.dtype.itemsize
        return Cost(mults=c_out * k * n, adds=c_out * (k_in + k - 1) * n,
                    bytes_moved=self.nbytes + k_in * n * isz + c_out * n * isz)

    def _state(self):
        return {"packed": self.packed, "codebook": self.codebook}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        if "packed" in state:  # format 2: the indices as stored, at their bit width
            k = state["codebook"].shape[-1]
            idx = _pack.unpack(state["packed"], _index_bits(k), kernel_shape[1] * kernel_shape[2] * kernel_shape[3])
        else:  # format 1 (sparseconv 0.1.0) wrote them unpacked
            idx = state["idx"]
        return cls(idx, state["codebook"], kernel_shape)


def _kmeans(values, k, init, seed):
    """scipy k-means on 1-D values; returns (centroids (k,), labels)."""
    data = values.reshape(-1, 1).astype(np.float64)
    if init == "linear":
        start = np.linspace(data.min(), data.max(), k).reshape(-1, 1)
        kwargs = dict(minit="matrix")
    else:
        start, kwargs = k, dict(minit="++")
    with warnings.catch_warnings():
        # an empty cluster keeps its previous centroid; it only wastes an entry of the codebook
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        centroids, labels = kmeans2(data, start, iter=50, seed=np.random.default_rng(seed), **kwargs)
    return centroids.ravel(), labels


def kmeans_quantize(weight, n_clusters=None, bits=None, per_channel=True, init="kmeans++", seed=0):
    """Share weights: cluster them into k centroids with k-means.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    n_clusters : int, optional
        k, from 1 to the number of weights clustered together (at most 256).
    bits : int, optional
        Instead of n_clusters: k = 2**bits (1..8). Neither given: k = 16.
    per_channel : bool
        One codebook per output channel (the default, as :func:`quantize` has
        one scale per channel), or one for the whole tensor (False: Deep
        Compression's shared codebook, C_out times fewer centroids).
    init : "kmeans++" or "linear"
    seed : int

    Returns
    -------
    CodebookWeight
    """
    weight = as_weight(weight)
    if n_clusters is not None and bits is not None:
        raise ValueError("give n_clusters or bits, not both")
    if bits is not None:
        n_clusters = 2 ** integer(bits, "bits", 1, 8)
    elif n_clusters is None:
        n_clusters = 16
    choice(init, "init", INITS)
    c_out = weight.shape[0]
    w = weight.reshape(c_out, -1)  # (C_out, C_in*kH*kW)
    group = w.shape[1] if per_channel else w.size
    k = integer(n_clusters, "n_clusters", 1, min(group, 256), f" (at most 256, and the {group} weights clustered "
                f"together)")
    if per_channel:
        codebook = np.empty((c_out, k))
        idx = np.empty(w.shape, np.int64)
        for o in range(c_out):
            codebook[o], idx[o] = _kmeans(w[o], k, init, seed)
    else:
        codebook, labels = _kmeans(w, k, init, seed)
        idx = labels.reshape(w.shape)
    return CodebookWeight(idx, codebook.astype(weight.dtype), weight.shape)


def _sweep(kernel_shape, quick):
    c_out, c_in, kh, kw = kernel_shape
    clusters = (64, 8, 2) if quick else (256, 64, 16, 8, 4, 2)
    # one codebook for the layer, as in Deep Compression (per-channel codebooks store C_out times more centroids)
    return [(f"k={n}", dict(n_clusters=n, per_channel=False)) for n in clusters if n <= c_out * c_in * kh * kw]


registry.register(registry.Family("kmeans", kmeans_quantize, (CodebookWeight,), _sweep,
                                  "k shared values (k-means) and a log2(k)-bit index per weight"))
