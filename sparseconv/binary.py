"""Binary weights: W ~ diag(alpha) B with B in {-1, +1}, signs packed 64 to a word.

Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet Classification
Using Binary Convolutional Neural Networks", ECCV 2016. For a fixed sign
pattern B = sign(W) the scale minimising ||W - alpha B||_F is
alpha = <W, B> / <B, B> = mean(abs(w)): per output channel with
``scale="channel"``, one for the whole tensor with ``scale="tensor"``.

Two kernels, by what the input columns are:

- float activations, :class:`BinaryWeight` (a linear operator):
  y = alpha (sum_k s_k x_k) with s_k = +-1, which needs no
  multiplications: y = alpha (colsum - 2 * sum of the x_k whose sign is
  -1), one addition per negative weight.
- binary activations, :class:`BinaryInputWeight` (``binarize(w,
  activations=1)``): the columns are binarised too, x ~ K sign(x)
  with K[j] = mean_k |x[k, j]| (XNOR-Net's per-position scale; switch it
  off with ``activation_scale=False``), packed, and the product of signs is
  n - 2 popcount(w XOR x) per pair of packed rows: the XNOR-popcount GEMM.
  That map is *not* linear in the columns, so it is a
  :class:`sparseconv.NonlinearWeight`: its ``weight`` is the linear
  BinaryWeight alpha B that multiplies sign(x) (times K).

sign(0) is +1 here, for weights and activations alike (so zero padding
binarises to +1, as a sign function without a zero does).
"""

import numpy as np

from ._kernels import bits as _bits
from ._validation import choice
from .dense import DecodedFirst
from .operator import NonlinearWeight, WeightOperator, as_weight, _column_chunk, _row_blocks
from .cost import Cost
from . import registry

__all__ = ["BinaryInputWeight", "BinaryWeight", "binarize"]

SCALES = ("channel", "tensor", None)
# activations: their bit width as in quantize (None: float, 1: binary); "float" and "binary" name the same two
ACTIVATIONS = (None, 1, "float", "binary")
# Columns per task of the add/subtract kernel.
_TILE = 64


def _n_words(k):
    return -(-k // 64)


def _mean_abs_fields(x, geom):
    """XNOR-Net's K per output pixel: mean(abs(column)) over each receptive field (padding as zeros).

    (N, H_out, W_out), from abs(x) summed over channels once per pixel, then
    over the kH*kW taps.
    """
    a = np.abs(x).sum(axis=1, dtype=x.dtype)  # (N, H, W)
    a = np.pad(a, ((0, 0), (geom.top, geom.bottom), (geom.left, geom.right)))  # (N, H + pads, W + pads)
    out = np.zeros((x.shape[0], geom.h_out, geom.w_out), x.dtype)
    for i in range(geom.kh):
        for j in range(geom.kw):
            r, c = i * geom.dh, j * geom.dw
            out += a[:, r:r + geom.sh * (geom.h_out - 1) + 1:geom.sh, c:c + geom.sw * (geom.w_out - 1) + 1:geom.sw]
    return out / (x.shape[1] * geom.kh * geom.kw)


def pack_signs(a):
    """The signs of the rows of a (R, n) packed: (R, ceil(n/64)) uint64, bit set where the entry is < 0."""
    a = np.ascontiguousarray(a)
    out = np.empty((a.shape[0], _n_words(a.shape[1])), np.uint64)
    _bits.pack_rows(a, out)
    return out


def unpack_signs(bits, n):
    """(R, n) int8 of +-1 from packed rows: -1 where the bit is set."""
    little = np.ascontiguousarray(bits).astype("<u8").view(np.uint8)
    flags = np.unpackbits(little.reshape(bits.shape[0], -1), axis=1, bitorder="little")[:, :n]
    return (1 - 2 * flags.astype(np.int8)).astype(np.int8)


class BinaryWeight(DecodedFirst, WeightOperator):
    """W ~ diag(alpha) B, the signs B stored one bit each; multiplies float columns.

    Parameters
    ----------
    bits : uint64 array, shape (C_out, ceil(C_in*kH*kW / 64))
        Bit b of word w of row o is 1 where B[o, 64 w + b] = -1.
    alpha : float array, shape (C_out,)
    kernel_shape : (C_out, C_in, kH, kW)

    Notes
    -----
    ``nbytes`` is the packed signs plus alpha: about 1/32 of float32.
    ``method``: "decoded" (default) runs alpha B decoded once to floats with
    the dense kernels (:class:`sparseconv.dense.DecodedFirst`); "add-only"
    runs the multiplication-free kernel: (K - 1) additions per column for
    the column sums, then per output as many additions as the row has
    negative signs, one subtraction and one multiplication (its ``cost``).
    """

    torch_module = "BinaryConv2d"
    activations = None  # float activations: the bit width of what it multiplies, as in QuantizedWeight
    methods = ("decoded", "add-only")

    def __init__(self, bits, alpha, kernel_shape):
        c_out, c_in, kh, kw = (int(v) for v in kernel_shape)
        k = c_in * kh * kw
        bits = np.asarray(bits)
        if bits.dtype != np.uint64 or bits.shape != (c_out, _n_words(k)):
            raise ValueError(f"bits must be uint64 of shape (C_out, ceil(K/64)) = ({c_out}, {_n_words(k)}), "
                             f"got {bits.dtype} {bits.shape}")
        alpha = np.asarray(alpha)
        if alpha.shape != (c_out,) or alpha.dtype.kind != "f":
            raise ValueError(f"alpha must be a float array of shape (C_out,) = ({c_out},), got {alpha.shape}")
        self.bits = np.ascontiguousarray(bits)
        self.alpha = np.ascontiguousarray(alpha)
        super().__init__(kernel_shape, alpha.dtype)

    def _padded_bits(self):
        """The signs padded with zero rows to whole tiles of the XNOR kernel (a decoded copy)."""
        def make():
            rows = -(-self.shape[0] // _bits.ROWS) * _bits.ROWS
            padded = np.zeros((rows, self.bits.shape[1]), np.uint64)
            padded[:self.shape[0]] = self.bits
            return padded

        return self._cached("padded", make)

    @property
    def signs(self):
        """B as a (C_out, C_in*kH*kW) int8 array of +-1."""
        return unpack_signs(self.bits, self.shape[1])

    def to_dense(self):
        return (self.alpha[:, None] * self.signs).astype(self.dtype)

    def _kernel_matmat(self, cols):
        cols = np.ascontiguousarray(cols, dtype=np.result_type(cols.dtype, self.dtype))
        c_out, k = self.shape
        n = cols.shape[1]
        colsum = cols.sum(axis=0)
        out = np.empty((c_out, n), cols.dtype)
        _bits.signed_sum(self.bits, cols, colsum, self.alpha.astype(cols.dtype), out, _TILE,
                         _row_blocks(c_out, n, _TILE))
        return out

    def _rmatmat(self, y):
        return self.to_dense().T @ y

    @property
    def num_params(self):
        return int(self.shape[0] * self.shape[1] + self.alpha.size)

    @property
    def nbytes(self):
        return int(self.bits.nbytes + self.alpha.nbytes)

    def _kernel_cost(self, n_cols):
        c_out, k = self.shape
        n = int(n_cols)
        isz = self.dtype.itemsize
        negatives = int(sum(int(v).bit_count() for v in self.bits.ravel()))
        return Cost(mults=c_out * n, adds=(k - 1) * n + (negatives + c_out) * n,
                    bytes_moved=self.nbytes + k * n * isz + c_out * n * isz)

    def _state(self):
        return {"bits": self.bits, "alpha": self.alpha}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        op = cls(state["bits"], state["alpha"], kernel_shape)
        if "activations" in state and str(state["activations"]) == "binary":  # format 1 kept both in one class
            return BinaryInputWeight(op, bool(state["activation_scale"]))
        return op


class BinaryInputWeight(NonlinearWeight):
    """XNOR-Net's binary layer: binary weights on binarised inputs, y = (alpha B) @ sign(cols) * K.

    Parameters
    ----------
    weight : BinaryWeight
        alpha B, the linear part.
    activation_scale : bool
        Multiply each column by XNOR-Net's K[j] = mean(abs(cols[:, j])).

    Notes
    -----
    The kernel packs the signs of the columns and computes each dot product
    of signs as K - 2 popcount(w XOR x) on 64-bit words. ``cost``: C_out*K
    ``bitops`` per column, plus the scaling (2 multiplications and 1
    addition per output) and K additions per column for K[j].

    ``conv2d`` runs one of :attr:`methods` (``method`` chooses):

    - ``"packed-taps"`` (the default): the signs of x are packed once per
      pixel, 64 channels to a word, and im2col gathers those words, tap by
      tap: 8 bytes per tap and 64 channels instead of 256 bytes of floats.
      A dot product of signs does not depend on the order of its terms, so
      the weight's signs are packed in the same (kH, kW, C_in) order, each
      tap's channels padded to whole words with +1 in both operands (they
      agree, so they add nothing to the popcount): C_out*kH*kW*ceil(C_in/64)
      words of XNOR per column, which ``conv_cost`` counts.
    - ``"im2col"``: im2col of the floats, whose columns are then packed, as
      ``op @ cols`` does.
    """

    torch_module = "BinaryConv2d"
    activations = 1  # binary activations: one bit each
    methods = ("packed-taps", "im2col")

    def __init__(self, weight, activation_scale=True):
        if not isinstance(weight, BinaryWeight):
            raise TypeError(f"weight must be a BinaryWeight, got {type(weight).__name__}")
        super().__init__(weight)
        self.activation_scale = bool(activation_scale)

    @property
    def alpha(self):
        return self.weight.alpha

    @property
    def signs(self):
        """B, the weight's signs (C_out, C_in*kH*kW) int8."""
        return self.weight.signs

    def binarize_columns(self, cols):
        """What the binary kernel multiplies: (sign(cols) with sign(0) = +1, K per column)."""
        cols = np.asarray(cols)
        signs = np.where(cols < 0, -1, 1).astype(np.int8)
        scale = np.abs(cols).mean(axis=0) if self.activation_scale else np.ones(cols.shape[1], cols.dtype)
        return signs, scale

    def activations_of(self, cols):
        signs, scale = self.binarize_columns(cols)
        return signs * scale[None, :]

    def pack_columns(self, cols):
        """The signs of ``cols`` (K, n) packed as the XNOR kernel reads them: (ceil(n/8), ceil(K/64), 8) uint64.

        A binary network that keeps its activations packed between layers
        passes this to :meth:`xnor_dots` and skips the packing.
        """
        cols = np.asarray(cols)
        if cols.ndim != 2 or cols.shape[0] != self.shape[1]:
            raise ValueError(f"cols must be 2-D with {self.shape[1]} rows (C_in*kH*kW), got shape {cols.shape}")
        ftype = cols.dtype if cols.dtype in (np.float32, np.float64) else np.float64  # the kernel's float types
        cols = np.ascontiguousarray(cols, dtype=ftype)
        # (blocks of LANES columns, words of 64 rows, LANES)
        xbits = np.empty((-(-cols.shape[1] // _bits.LANES), self.weight.bits.shape[1], _bits.LANES), np.uint64)
        _bits.pack_columns(cols, xbits)
        return xbits

    def xnor_dots(self, packed, n):
        """B @ sign(cols) for the first ``n`` packed columns, exactly, as int32 (C_out, n): the kernel alone.

        Each entry is K - 2 popcount(w XOR x) summed over the packed words.
        """
        layout = (self.weight.bits.shape[1], _bits.LANES)
        if packed.dtype != np.uint64 or packed.ndim != 3 or packed.shape[1:] != layout \
                or not 0 <= n <= packed.shape[0] * _bits.LANES:
            raise ValueError("packed must come from pack_columns, and n must not exceed its columns")
        return self._xnor(packed, n, np.ones(self.shape[0], np.int32), np.int32)

    def _xnor(self, packed, n, factor, dtype, colscale=None):
        out = np.empty((1, self.shape[0], int(n)), dtype)  # (1, C_out, n): one "image" of n columns
        colscale = np.empty(0, dtype) if colscale is None else colscale
        _bits.xnor_gemm(self.weight._padded_bits(), packed, self.shape[1], factor, colscale, 0, out)
        return out[0]

    def _matmat(self, cols):
        cols = np.ascontiguousarray(cols, dtype=np.result_type(cols.dtype, self.dtype))
        # alpha * (B @ sign(cols)) * K, both scales applied in the kernel's store
        colscale = np.abs(cols).mean(axis=0) if self.activation_scale else None
        return self._xnor(self.pack_columns(cols), cols.shape[1], self.alpha.astype(cols.dtype), cols.dtype, colscale)

    def cost(self, n_cols):
        c_out, k = self.shape
        n = int(n_cols)
        isz = self.dtype.itemsize
        return Cost(mults=2 * c_out * n, adds=c_out * n + k * n, bitops=c_out * k * n,
                    bytes_moved=self.nbytes + k * n * isz + c_out * n * isz)

    def _conv_cost(self, n_img, geom):
        if self.method != "packed-taps":
            return super()._conv_cost(n_img, geom)
        c_out, c_in, kh, kw = self.kernel_shape
        n = n_img * geom.h_out * geom.w_out
        words = kh * kw * _n_words(c_in)  # per column, channels padded to whole words per tap
        pixels = n_img * geom.h * geom.w
        isz = self.dtype.itemsize
        # K[j]: abs(x) summed over channels once per pixel, then over the kH*kW taps per column
        scale_adds = pixels * c_in + n * kh * kw if self.activation_scale else 0
        return Cost(mults=2 * c_out * n, adds=c_out * n + scale_adds, bitops=c_out * 64 * words * n,
                    bytes_moved=self.nbytes + pixels * c_in * isz * (2 if self.activation_scale else 1)
                    + pixels * _n_words(c_in) * 8 + 2 * n * words * 8 + c_out * n * isz)

    def _tap_bits(self):
        """The weight's signs packed tap by tap: (C_out rounded up to ROWS, kH*kW*ceil(C_in/64)) uint64.

        Row o is sign(W[o]) in (kH, kW, C_in) order, each tap's channels
        padded with +1 (bit 0) to whole words, as :func:`_bits.tap_columns`
        lays out x; padding rows are zero.
        """
        def make():
            c_out, c_in, kh, kw = self.kernel_shape
            signs = self.signs.reshape(c_out, c_in, kh, kw).transpose(0, 2, 3, 1)  # (C_out, kH, kW, C_in)
            padded = np.ones((-(-c_out // _bits.ROWS) * _bits.ROWS, kh, kw, 64 * _n_words(c_in)), np.int8)
            padded[:c_out, :, :, :c_in] = signs
            return pack_signs(padded.reshape(padded.shape[0], -1))

        return self.weight._cached("taps", make)

    def _conv2d(self, x, geom, bias, workspace):
        if self.method != "packed-taps":
            return super()._conv2d(x, geom, bias, workspace)
        n_img, c_in, h, w = x.shape
        c_out = self.shape[0]
        p_img = geom.h_out * geom.w_out
        total = n_img * p_img
        xw = np.empty((n_img, _n_words(c_in), h * w), np.uint64)  # (N, Cw, H*W) packed signs
        _bits.pack_channels(x.reshape(n_img, c_in, h * w), xw)
        wbits = self._tap_bits()
        lanes = _bits.LANES
        chunk = _column_chunk(total, wbits.shape[1] * 8 + c_out * x.dtype.itemsize, workspace, unit=lanes)
        out = np.empty((n_img, c_out, p_img), x.dtype)  # (N, C_out, H_out*W_out), written by the kernel
        alpha = self.alpha.astype(x.dtype)
        # K per column (N*H_out*W_out,), applied in the kernel's store
        colscale = _mean_abs_fields(x, geom).reshape(-1) if self.activation_scale else np.empty(0, x.dtype)
        xbits = np.empty((chunk // lanes, wbits.shape[1], lanes), np.uint64)  # (blocks, words, LANES)
        for q0 in range(0, total, max(chunk, 1)):
            q1 = min(q0 + chunk, total)
            _bits.tap_columns(xw, w, q0, q1, xbits, geom.kh, geom.kw, geom.sh, geom.sw, geom.top, geom.left,
                              geom.dh, geom.dw, geom.h_out, geom.w_out)
            _bits.xnor_gemm(wbits, xbits, self.shape[1], alpha, colscale[q0:q1], q0, out)
        if bias is not None:
            out += bias[None, :, None]
        return out.reshape(n_img, c_out, geom.h_out, geom.w_out)

    def _state(self):
        return dict(self.weight._state(), activation_scale=np.array(self.activation_scale))

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(BinaryWeight(state["bits"], state["alpha"], kernel_shape), bool(state["activation_scale"]))


def binarize(weight, scale="channel", activations=None, activation_scale=True):
    """Binarise a conv weight: W ~ diag(alpha) sign(W).

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    scale : "channel", "tensor" or None
        alpha = mean(abs(w)) per output channel, over the whole tensor, or 1.
        Either mean is the least-squares optimal scale for the signs; an
        all-zero row gets alpha = 0.
    activations : None or 1 (also "float" or "binary")
        The activations' bit width, as in :func:`sparseconv.quantize`: None
        (float) multiplies float columns by the signs; 1 (binary) binarises
        them too and runs the XNOR-popcount kernel (see the module docstring).
    activation_scale : bool
        With binary activations, scale each column by K[j] = mean(abs(x[:, j])).

    Returns
    -------
    BinaryWeight (float activations), or BinaryInputWeight (binary activations: not linear in the input)
    """
    weight = as_weight(weight)
    choice(scale, "scale", SCALES)
    choice(activations, "activations", ACTIVATIONS)
    if not np.all(np.isfinite(weight)):
        raise ValueError("weight must be finite (no NaN or inf) to binarize")
    c_out = weight.shape[0]
    matrix = weight.reshape(c_out, -1)  # (C_out, C_in*kH*kW)
    if scale == "channel":
        alpha = np.abs(matrix).mean(axis=1)
    elif scale == "tensor":
        alpha = np.full(c_out, np.abs(matrix).mean())
    else:
        alpha = np.ones(c_out)
    op = BinaryWeight(pack_signs(matrix), alpha.astype(weight.dtype), weight.shape)
    return op if activations in (None, "float") else BinaryInputWeight(op, activation_scale)


def _sweep(kernel_shape, quick):
    return [("float activations", dict(activations=None)), ("binary activations", dict(activations=1))]


registry.register(registry.Family("binary", binarize, (BinaryWeight, BinaryInputWeight), _sweep,
                                  "signs packed 64 to a word, alpha per channel (XNOR-Net)"))
