"""Uniform integer quantization: W ~ diag(s) (Q - z), Q integer codes of ``bits`` bits.

- ``scheme="symmetric"``: q = round(w / s) in [-(2^(b-1) - 1), 2^(b-1) - 1],
  s = max(abs(w)) / (2^(b-1) - 1), z = 0.
- ``scheme="affine"``: q = round(w / s) + z in [0, 2^b - 1], with the range
  [min(w, 0), max(w, 0)] (zero is exactly representable) mapped onto it:
  s = (max - min) / (2^b - 1), z = round(-min / s).

Either way every entry is off by at most s/2 (half a step): the range is
covered, so no code is ever clipped by more than the rounding.

Two kernels:

- float activations, :class:`QuantizedWeight` (a linear operator): the
  weight is dequantized a block of rows at a time, in the columns' float
  type, and multiplied by them (memory saved, float arithmetic).
- integer activations, :class:`IntegerInputWeight` (``quantize(w, bits,
  activations=a)``): the columns are quantized too, symmetric with one
  scale for the tensor, x ~ s_x q_x; the scale is the one fixed by
  :meth:`IntegerInputWeight.calibrate` from a sample of inputs (static
  quantization) or, if never calibrated, max(abs(x)) of each conv2d call
  (dynamic; ``op @ cols`` takes max(abs(cols))). The product is then integer
  multiply-accumulate, y = s s_x (Q - z) q_x: not linear in x, so a
  :class:`sparseconv.NonlinearWeight` whose ``weight`` is the QuantizedWeight.
"""


import numpy as np

from ._kernels import lowp as _lowp
from . import _pack
from ._validation import as_array, choice, integer
from .dense import DecodedFirst
from .operator import NonlinearWeight, WeightOperator, as_weight
from .cost import Cost
from . import registry

__all__ = ["IntegerInputWeight", "QuantizedWeight", "quantize"]

SCHEMES = ("symmetric", "affine")
# Rows of the weight dequantized at a time by the float-activation path.
_ROW_BLOCK = 64


def _check_bits(bits, name):
    return integer(bits, name, 2, 16)


def _check_scheme(scheme):
    return choice(scheme, "scheme", SCHEMES)


def _signed_max(bits):
    return 2 ** (bits - 1) - 1


def _narrowest_int(bound):
    """The narrowest signed integer dtype holding every value of magnitude <= bound."""
    for dtype in (np.int8, np.int16, np.int32):
        if bound <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def accumulator_dtype(k, weight_bound, act_bound):
    """int32 when no sum of k products can overflow it, else int64.

    Each product is at most weight_bound * act_bound in magnitude, so a dot
    product of k of them is at most k * weight_bound * act_bound. For 8-bit
    symmetric codes (127 * 127) int32 holds k up to 133 144; beyond that (or
    with wider codes) the kernel accumulates in int64, whose bound
    k * 65535 * 32767 < 2^63 holds for any k below 4 * 10^9.
    """
    return np.dtype(np.int32) if k * weight_bound * act_bound <= np.iinfo(np.int32).max else np.dtype(np.int64)


class QuantizedWeight(DecodedFirst, WeightOperator):
    """W ~ diag(scale) (Q - zero_point), the codes stored at their bit width.

    Parameters
    ----------
    codes : array, shape (C_out, C_in*kH*kW)
        Integer codes, in [-(2^(b-1) - 1), 2^(b-1) - 1] (symmetric) or
        [0, 2^b - 1] (affine).
    scale, zero_point : arrays, shape (C_out,)
        One per output channel (a per-tensor quantization repeats them).
    bits : int, 2..16
    scheme : "symmetric" or "affine"
    kernel_shape : (C_out, C_in, kH, kW)
    dtype : the float dtype of the dequantized weight

    Notes
    -----
    Stored: the codes offset to unsigned (+ 2^(b-1) for symmetric), packed
    8 // b to a byte when b <= 4, else one per uint8 (b <= 8) or uint16;
    plus scale and zero point. ``nbytes`` counts exactly that.
    ``method``: "decoded" (default) runs the weight dequantized once with the
    dense kernels (:class:`sparseconv.dense.DecodedFirst`); "blocks"
    dequantizes 256 rows at a time on every call and keeps no float copy
    (only the unpacked integer codes; slower; its ``cost`` counts the
    C_out*K dequantizing products).
    """

    torch_module = "QuantConv2d"
    methods = ("decoded", "blocks")

    activations = None  # float activations; IntegerInputWeight quantizes them

    def __init__(self, codes, scale, zero_point, bits, scheme, kernel_shape, dtype=np.float32):
        self.bits = _check_bits(bits, "bits")
        self.scheme = _check_scheme(scheme)
        c_out, c_in, kh, kw = (int(v) for v in kernel_shape)
        k = c_in * kh * kw
        codes = np.asarray(codes)
        if codes.shape != (c_out, k) or codes.dtype.kind not in "iu":
            raise ValueError(f"codes must be integers of shape (C_out, C_in*kH*kW) = ({c_out}, {k}), got "
                             f"{codes.dtype} {codes.shape}")
        lo, hi = (-_signed_max(self.bits), _signed_max(self.bits)) if scheme == "symmetric" else \
            (0, 2 ** self.bits - 1)
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise ValueError(f"{scheme} {self.bits}-bit codes must lie in [{lo}, {hi}]")
        scale = np.asarray(scale, dtype=np.float64)
        zero_point = np.asarray(zero_point, dtype=np.int64)
        if scale.shape != (c_out,) or zero_point.shape != (c_out,):
            raise ValueError(f"scale and zero_point must have shape (C_out,) = ({c_out},)")
        self._offset = -lo  # codes + offset >= 0 for storage
        self.packed = _pack.pack((codes.astype(np.int64) + self._offset).astype(np.uint16), self.bits)
        self.scale = scale.astype(dtype)
        self.zero_point = zero_point.astype(_narrowest_int(hi))
        self._bound = hi if scheme == "symmetric" else 2 ** self.bits - 1  # |Q - z| <= bound
        super().__init__(kernel_shape, dtype)

    def _centered(self):
        """Q - z in the narrowest int dtype, zero rows added to whole blocks of 4 (the integer kernel's).

        A decoded copy (``cache_nbytes``), made from the packed codes on first use.
        """
        def make():
            c_out, k = self.shape
            out = np.zeros((-(-c_out // 4) * 4, k), _narrowest_int(self._bound))
            out[:c_out] = self.codes - self.zero_point.astype(np.int64)[:, None]
            return out

        return self._cached("centered", make)

    @property
    def codes(self):
        """Q, the integer codes (C_out, C_in*kH*kW) as int64."""
        return _pack.unpack(self.packed, self.bits, self.shape[1]).astype(np.int64) - self._offset

    @property
    def step(self):
        """The quantization step per output channel (= scale)."""
        return self.scale

    def to_dense(self):
        return (self.scale[:, None].astype(np.float64) * self._centered()[:self.shape[0]]).astype(self.dtype)

    def calibrate(self, x):
        """Refused: a weight-only operator has float activations and no activation scale to fix."""
        raise ValueError("calibrate needs an operator with integer activations: quantize(w, bits, activations=a) "
                         "returns one (an IntegerInputWeight)")

    def _int8_weights(self, layout):
        """Q - z in whole groups of k as int32 words (``_lowp.LAYOUT``: four int8 or two int16), rows padded to
        the tile, and each row's sum: a decoded copy."""
        def make():
            centered = self._centered()
            rows, k = centered.shape
            per = _lowp.K_PER_WORD[layout]
            padded = np.zeros((-(-rows // _lowp.TILE_ROWS) * _lowp.TILE_ROWS, -(-k // per) * per),
                              np.int8 if per == 4 else np.int16)
            padded[:rows, :k] = centered
            return padded.view(np.int32), padded.astype(np.int32).sum(axis=1)

        return self._cached(layout, make)

    def _kernel_matmat(self, cols):
        cols = np.asarray(cols)
        ftype = np.result_type(cols.dtype, self.dtype)
        c_out = self.shape[0]
        out = np.empty((c_out, cols.shape[1]), ftype)
        scale = self.scale.astype(ftype)
        for r0 in range(0, c_out, _ROW_BLOCK):
            r1 = min(r0 + _ROW_BLOCK, c_out)
            block = self._centered()[r0:r1].astype(ftype) * scale[r0:r1, None]  # dequantized rows
            np.matmul(block, cols, out=out[r0:r1])
        return out

    def _rmatmat(self, y):
        return self.to_dense().T @ y

    @property
    def num_params(self):
        return int(self.shape[0] * self.shape[1] + 2 * self.shape[0])

    @property
    def nbytes(self):
        return int(self.packed.nbytes + self.scale.nbytes + self.zero_point.nbytes)

    def _kernel_cost(self, n_cols):
        c_out, k = self.shape
        n = int(n_cols)
        isz = self.dtype.itemsize
        return Cost(mults=c_out * k * n + c_out * k, adds=c_out * (k - 1) * n,
                    bytes_moved=self.nbytes + k * n * isz + c_out * n * isz)

    def _state(self):
        return {"packed": self.packed, "scale": self.scale, "zero_point": self.zero_point,
                "bits": np.array(self.bits), "scheme": np.array(self.scheme), "dtype": np.array(self.dtype.str)}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        bits, scheme = int(state["bits"]), str(state["scheme"])
        if "packed" in state:  # format 2: the codes as stored, offset to unsigned
            offset = _signed_max(bits) if scheme == "symmetric" else 0
            codes = _pack.unpack(state["packed"], bits, kernel_shape[1] * kernel_shape[2] * kernel_shape[3])
            codes = codes.astype(np.int64) - offset
        else:  # format 1 (sparseconv 0.1.0) wrote the codes unpacked
            codes = state["codes"]
        op = cls(codes, state["scale"], state["zero_point"], bits, scheme, kernel_shape, np.dtype(str(state["dtype"])))
        if int(state.get("activations", -1)) >= 0:  # format 1 kept integer activations in the same class
            return IntegerInputWeight(op, int(state["activations"]),
                                      float(state["act_scale"]) if "act_scale" in state else None)
        return op


class IntegerInputWeight(NonlinearWeight):
    """Integer weights on integer inputs: y = s s_x (Q - z) q_x, integer multiply-accumulate.

    Parameters
    ----------
    weight : QuantizedWeight
        diag(s) (Q - z), the linear part.
    activations : int, 2..16
        Bits of the inputs, quantized symmetric with one scale s_x for the tensor.
    act_scale : float, optional
        s_x, fixed (static quantization; :meth:`calibrate` sets it); None: max(abs(x)) / (2^(a-1) - 1) of each call.

    Notes
    -----
    Integer dot products accumulate in int32 when no sum can overflow it,
    else int64 (:func:`accumulator_dtype`); 8-bit codes run ``vpdpbusd`` on
    CPUs with AVX512-VNNI or AVX-VNNI, ``vpmaddubsw`` or ``vpmaddwd`` on AVX2
    (:attr:`kernel`). ``cost``: C_out*K integer multiply-adds per column,
    plus quantizing the K inputs and scaling the C_out outputs.
    """

    torch_module = "QuantConv2d"

    def __init__(self, weight, activations, act_scale=None):
        if not isinstance(weight, QuantizedWeight):
            raise TypeError(f"weight must be a QuantizedWeight, got {type(weight).__name__}")
        super().__init__(weight)
        self.activations = _check_bits(activations, "activations")
        self.act_scale = None if act_scale is None else float(act_scale)

    @property
    def bits(self):
        return self.weight.bits

    @property
    def scheme(self):
        return self.weight.scheme

    @property
    def scale(self):
        return self.weight.scale

    @property
    def zero_point(self):
        return self.weight.zero_point

    @property
    def codes(self):
        return self.weight.codes

    def calibrate(self, x):
        """Fix the activation scale from a sample of inputs: s_x = max(abs(x)) / (2^(a-1) - 1); returns self.

        ``x`` is any array of the values the layer will see (a batch of
        inputs, N x C_in x H x W): im2col only repeats them and adds zeros,
        so max(abs(x)) is max(abs(cols)). Without calibration each call uses the
        max of its own columns.
        """
        x = as_array(x, "x")
        if not np.all(np.isfinite(x)):
            raise ValueError("x must be finite (no NaN or inf) to calibrate")
        peak = float(np.abs(x).max()) if x.size else 0.0
        self.act_scale = (peak or 1.0) / _signed_max(self.activations)
        return self

    def _columns_scale(self, cols):
        if self.act_scale is not None:
            return self.act_scale
        peak = float(np.abs(cols).max()) if cols.size else 0.0
        return (peak or 1.0) / _signed_max(self.activations)

    def quantize_columns(self, cols, act_scale=None):
        """(q_x, s_x): the columns as the integer kernel sees them, q_x (K, n) in the narrowest int dtype.

        q_x = clip(rint(cols / s_x), -(2^(a-1) - 1), 2^(a-1) - 1), computed in float64, with s_x =
        ``act_scale``, else the calibrated scale, else max(abs(cols)) / (2^(a-1) - 1).
        """
        qmax = _signed_max(self.activations)
        s = self._columns_scale(cols) if act_scale is None else act_scale
        q = np.clip(np.rint(np.asarray(cols, dtype=np.float64) / s), -qmax, qmax)
        return q.astype(_narrowest_int(qmax)), s

    def activations_of(self, cols):
        q, s = self.quantize_columns(cols)
        return q * s

    @property
    def kernel(self):
        """Which integer kernel runs: a path of ``_kernels.lowp.INT8_PATHS`` ("vnni512", "avxvnni", "avx2",
        "avx2-int16": 8-bit codes on CPUs with those instructions; "avx2" needs weights or activations of
        at most 7 bits) or "portable"."""
        # int8 weights and activations of at most 8 bits, and no int32 overflow: a product is at most
        # 255 (offset activation) x 127, so k <= 66 311
        fits = (self.weight._bound <= 127 and self.activations <= 8
                and self.shape[1] * 255 * 127 <= np.iinfo(np.int32).max)
        return _lowp.int8_path(self.weight._bound, self.activations) if fits else "portable"

    def pack_columns(self, cols, act_scale=None):
        """The columns (K, n) quantized at s_x and laid out for :attr:`kernel`; returns (packed, s_x).

        An integer pipeline that keeps its activations quantized passes
        ``packed`` to :meth:`int_dots` and skips this step.
        """
        cols = np.ascontiguousarray(cols)
        if cols.ndim != 2 or cols.shape[0] != self.shape[1]:
            raise ValueError(f"cols must be 2-D with {self.shape[1]} rows (C_in*kH*kW), got shape {cols.shape}")
        s = self._columns_scale(cols) if act_scale is None else act_scale
        n = cols.shape[1]
        path = self.kernel
        if path == "portable":
            xq, s = self.quantize_columns(cols, s)
            return ("portable", np.ascontiguousarray(xq.T), n), s  # (n, K): k contiguous
        layout = _lowp.LAYOUT[path]
        width = self.weight._int8_weights(layout)[0].shape[1]
        panels = np.empty((-(-n // _lowp.PANEL_COLS[layout]), width, _lowp.PANEL_COLS[layout]), np.int32)
        _lowp.pack_words(cols, s, float(_signed_max(self.activations)), _lowp.K_PER_WORD[layout],
                         self._offset(layout), panels)
        return (path, panels, n), s

    def int_dots(self, packed):
        """(Q - z) @ q_x for packed columns, exactly, in the accumulator's int dtype (C_out, n): the kernel alone."""
        path, data, n = packed
        c_out, k = self.shape
        if path == "portable":
            acc = np.empty((c_out, n), accumulator_dtype(k, self.weight._bound, _signed_max(self.activations)))
            _lowp.int_gemm(self.weight._centered(), data, acc)
            return acc
        return self._tiled(packed, np.ones(c_out, np.int32), np.empty((c_out, n), np.int32))

    def _tiled(self, packed, factor, out):
        """out = factor[:, None] * ((Q - z) @ q_x) on a tiled int8 path."""
        path, data, _ = packed
        layout = _lowp.LAYOUT[path]
        w32, rowsum = self.weight._int8_weights(layout)
        _lowp.tiled_int8_gemm(_lowp.MARKER[path](0), _lowp.TILE_COLS[path], w32, rowsum, self._offset(layout),
                              factor, data, out)
        return out

    def _offset(self, layout):
        """What the packed activations are offset by: quads are unsigned bytes q + 2^(a-1); pairs signed int16."""
        return _signed_max(self.activations) + 1 if layout == "quads" else 0

    def _conv2d(self, x, geom, bias, workspace, matmat=None):
        """The generic chunked path; a dynamic activation scale is taken once, from all of x."""
        if self.act_scale is not None:
            return super()._conv2d(x, geom, bias, workspace)
        scale = self._columns_scale(x)  # max |x| = max |cols|: im2col repeats x and adds zeros
        return super()._conv2d(x, geom, bias, workspace, matmat=lambda cols: self._product(cols, scale))

    def _matmat(self, cols):
        return self._product(cols, None)

    def _product(self, cols, act_scale):
        """W @ q(cols), the columns quantized at ``act_scale`` (None: the usual rule)."""
        cols = np.asarray(cols)
        ftype = np.result_type(cols.dtype, self.dtype)
        packed, s = self.pack_columns(cols, act_scale)
        factor = self.weight.scale.astype(np.float64) * s
        if packed[0] != "portable":  # dequantized in the kernel's store
            return self._tiled(packed, factor, np.empty((self.shape[0], packed[2]), ftype))
        return (self.int_dots(packed) * factor[:, None]).astype(ftype)

    def cost(self, n_cols):
        c_out, k = self.shape
        n = int(n_cols)
        isz = self.dtype.itemsize
        a_bytes = -(-self.activations // 8)
        # integer MACs (c_out*k*n of each), quantizing the columns (k*n) and scaling the outputs (c_out*n)
        return Cost(mults=c_out * k * n + k * n + c_out * n, adds=c_out * (k - 1) * n,
                    bytes_moved=self.nbytes + k * n * (isz + a_bytes) + c_out * n * isz)

    def _state(self):
        state = dict(self.weight._state(), activations=np.array(self.activations))
        if self.act_scale is not None:
            state["act_scale"] = np.array(self.act_scale)
        return state

    @classmethod
    def _from_state(cls, state, kernel_shape):
        weight = QuantizedWeight._from_state({k: v for k, v in state.items() if k not in ("activations", "act_scale")},
                                             kernel_shape)
        return cls(weight, int(state["activations"]), float(state["act_scale"]) if "act_scale" in state else None)


def quantize(weight, bits=8, scheme="symmetric", per_channel=True, activations=None):
    """Quantize a conv weight to ``bits``-bit integers.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW), or a WeightOperator
    bits : int, 2..16
    scheme : "symmetric" or "affine"
    per_channel : bool
        One scale (and zero point) per output channel, or one for the tensor.
    activations : None or int, 2..16
        None: float activations (the weight dequantized once, see
        :class:`QuantizedWeight`'s ``method``). An int:
        the columns are quantized to that many bits and the kernel is
        integer multiply-accumulate (see :meth:`QuantizedWeight.calibrate`).

    Returns
    -------
    QuantizedWeight (float activations), or IntegerInputWeight (integer activations: not linear in the input)
        Every entry of ``to_dense()`` is within half a step (scale / 2) of W.
    """
    weight = as_weight(weight)
    bits = _check_bits(bits, "bits")
    _check_scheme(scheme)
    if activations is not None:
        _check_bits(activations, "activations")
    c_out = weight.shape[0]
    w = weight.reshape(c_out, -1).astype(np.float64)  # (C_out, C_in*kH*kW)
    if per_channel:
        lo, hi = w.min(axis=1, initial=0.0), w.max(axis=1, initial=0.0)
    else:
        lo, hi = np.full(c_out, min(w.min(initial=0.0), 0.0)), np.full(c_out, max(w.max(initial=0.0), 0.0))
    if scheme == "symmetric":
        qmax = _signed_max(bits)
        scale = np.maximum(np.abs(lo), np.abs(hi)) / qmax
        safe = np.where(scale > 0, scale, 1.0)  # an all-zero row: scale 0, codes 0, no division by zero
        codes = np.clip(np.rint(w / safe[:, None]), -qmax, qmax)
        zero_point = np.zeros(c_out, np.int64)
    else:
        qmax = 2 ** bits - 1
        scale = (hi - lo) / qmax
        safe = np.where(scale > 0, scale, 1.0)
        zero_point = np.clip(np.rint(-lo / safe), 0, qmax).astype(np.int64)
        codes = np.clip(np.rint(w / safe[:, None]) + zero_point[:, None], 0, qmax)
    op = QuantizedWeight(codes.astype(np.int64), scale, zero_point, bits, scheme, weight.shape, weight.dtype)
    return op if activations is None else IntegerInputWeight(op, activations)


def _sweep(kernel_shape, quick):
    return [(f"{b} bits", dict(bits=b)) for b in ((8, 4, 2) if quick else (8, 6, 4, 3, 2))]


registry.register(registry.Family("quantize", quantize, (QuantizedWeight, IntegerInputWeight), _sweep,
                                  "integer codes of 2-16 bits, scale and zero point per channel"))
