"""Binary, integer and codebook weights against exact integer references, NumPy and torch."""

import warnings

import numba
import numpy as np
import pytest

import sparseconv as sc
from sparseconv._kernels import bits as _bits, lowp as _lowp
from sparseconv import _pack
from sparseconv.quantize import accumulator_dtype

from conftest import assert_close, torch_conv2d


def _sign(a):
    """The library's sign: -1 below zero, +1 otherwise (sign(0) = +1)."""
    return np.where(a < 0, -1, 1).astype(np.int64)


# -- popcount ------------------------------------------------------------------------------------------


def test_popcount_intrinsic_and_fallback(rng):
    values = np.concatenate([rng.integers(0, 2 ** 63, 200, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
                             np.array([0, 1, 2 ** 63, 2 ** 64 - 1], np.uint64)])

    @numba.njit
    def counts(v):
        out = np.empty((2, v.size), np.uint64)
        for i in range(v.size):
            out[0, i] = _bits.popcount64(v[i])
            out[1, i] = _bits.popcount64_swar(v[i])
        return out

    expected = [bin(int(v)).count("1") for v in values]
    got = counts(values)
    assert got[0].tolist() == expected and got[1].tolist() == expected


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="inspects machine code")
def test_popcount_uses_the_hardware_instruction():
    import llvmlite.binding as llvm

    if "+popcnt" not in llvm.get_host_cpu_features().flatten():
        pytest.skip("this CPU has no popcnt instruction")

    @numba.njit(cache=False)
    def count(v):
        return _bits.popcount64(v)

    count(np.uint64(3))
    asm = next(iter(count.inspect_asm().values()))
    assert "popcnt" in asm


# -- binary --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c_out, k, n", [(10, 45, 300), (4, 64, 8), (7, 130, 513), (256, 2304, 40)])
def test_xnor_gemm_is_integer_exact(rng, c_out, k, n):
    w = rng.standard_normal((c_out, k)).astype(np.float32)
    cols = rng.standard_normal((k, n)).astype(np.float32)
    w[0, :5] = 0  # sign(0) = +1, for weights and columns alike
    cols[:3, 0] = 0
    op = sc.BinaryInputWeight(sc.BinaryWeight(sc.binary.pack_signs(w), np.ones(c_out, np.float32), (c_out, k, 1, 1)),
                              activation_scale=False)
    assert np.array_equal(op @ cols, _sign(w) @ _sign(cols))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_float_activations(rng, dtype):
    w = rng.standard_normal((9, 6, 3, 3)).astype(dtype)
    w[2] = 0  # an all-zero row: alpha = 0 without a division warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        op = sc.binarize(w)
    assert op.alpha[2] == 0
    assert np.array_equal(op.signs, _sign(w.reshape(9, -1)))
    assert_close(op.to_dense(), np.abs(w).reshape(9, -1).mean(1)[:, None] * _sign(w.reshape(9, -1)), dtype)
    cols = rng.standard_normal((54, 300)).astype(dtype)
    assert_close(op @ cols, op.to_dense() @ cols, dtype)
    x = rng.standard_normal((2, 6, 10, 9)).astype(dtype)
    for kwargs in (dict(padding=1), dict(stride=2, padding=1), dict(padding=2, dilation=2)):
        assert_close(sc.conv2d(x, op, **kwargs), torch_conv2d(x, op.to_weight(), **kwargs), dtype)


@pytest.mark.parametrize("method", ["packed-taps", "im2col"])
@pytest.mark.parametrize("c_in, kernel, stride, padding, dilation", [
    (5, (3, 3), 1, 1, 1), (64, (3, 3), 2, 1, 1), (130, (3, 2), (2, 1), (1, 0), 1), (70, (3, 3), 1, 2, 2),
    (1, (5, 5), 1, 2, 1), (16, (1, 1), 1, 0, 1)])
def test_binary_activations_conv2d_against_torch(rng, method, c_in, kernel, stride, padding, dilation):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = rng.standard_normal((9, c_in, *kernel)).astype(np.float32)
    x = rng.standard_normal((2, c_in, 9, 8)).astype(np.float32)
    x[0, :3, :2, :2] = 0  # sign(0) = +1
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    xp = F.pad(torch.from_numpy(x).double(), (pw, pw, ph, ph))  # zeros, which binarise to +1
    signs = torch.where(xp < 0, -1.0, 1.0).double()
    geometry = dict(stride=stride, dilation=dilation)
    box = torch.full((1, c_in, *kernel), 1.0 / (c_in * kernel[0] * kernel[1]), dtype=torch.float64)
    K = F.conv2d(xp.abs(), box, **geometry)  # mean abs(x) over each receptive field
    for scale in (True, False):
        op = sc.binarize(w, activations="binary", activation_scale=scale)
        op.method = method
        expected = F.conv2d(signs, torch.from_numpy(op.to_weight().astype(np.float64)), **geometry)
        if scale:
            expected = expected * K
        assert_close(sc.conv2d(x, op, stride=stride, padding=padding, dilation=dilation), expected.numpy(),
                     np.float32)
    # alpha = 1, no scale: the outputs are the integer dot products of signs, exactly
    exact = sc.binarize(w, scale=None, activations="binary", activation_scale=False)
    exact.method = method
    y = sc.conv2d(x.astype(np.float64), exact, stride=stride, padding=padding, dilation=dilation)
    assert np.array_equal(y, F.conv2d(signs, torch.from_numpy(np.sign(w) + (w == 0)).double(), **geometry).numpy())


def test_packed_taps_in_chunks_with_bias(rng):
    w = rng.standard_normal((12, 70, 3, 3)).astype(np.float32)
    x = rng.standard_normal((3, 70, 7, 6)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    op = sc.binarize(w, activations="binary")
    whole = sc.conv2d(x, op, bias, padding=1)
    per_col = 9 * 2 * 8 + 12 * 4  # 9 taps x 2 words of packed signs, 12 float outputs
    chunked = sc.conv2d(x, op, bias, padding=1, workspace=8 * per_col * 3)  # 24 columns at a time, 126 in all
    assert np.array_equal(chunked, whole)
    op.method = "im2col"
    assert_close(whole, sc.conv2d(x, op, bias, padding=1))
    op.method = "packed-taps"
    with pytest.raises(ValueError, match="workspace=100 bytes cannot hold 8 columns of 192 bytes"):
        sc.conv2d(x, op, padding=1, workspace=100)


def test_packed_taps_cost_counts_the_padded_words():
    op = sc.binarize(np.ones((16, 70, 3, 3), np.float32), activations="binary", activation_scale=False)
    n = 2 * 8 * 8  # columns of a stride-1 'same' conv on 2 images of 8x8
    assert op.method == "packed-taps"
    assert sc.conv_cost(op, (2, 70, 8, 8), padding=1).bitops == 16 * 9 * 128 * n  # 70 channels: 2 words a tap
    op.method = "im2col"
    assert sc.conv_cost(op, (2, 70, 8, 8), padding=1).bitops == 16 * 630 * n == op.cost(n).bitops


def test_alpha_is_the_least_squares_scale(rng):
    w = rng.standard_normal((3, 4, 3, 3))
    op = sc.binarize(w)
    for o in range(3):
        row, signs = w[o].ravel(), op.signs[o]
        grid = np.linspace(0, 2, 4001)
        errors = [np.sum((row - a * signs) ** 2) for a in grid]
        assert abs(grid[int(np.argmin(errors))] - op.alpha[o]) <= 1e-3
    tensor = sc.binarize(w, scale="tensor")
    assert np.allclose(tensor.alpha, np.abs(w).mean())
    assert np.all(sc.binarize(w, scale=None).alpha == 1)


def test_binary_storage_and_cost():
    op = sc.binarize(np.ones((64, 64, 3, 3), np.float32))
    assert op.nbytes == 64 * 9 * 8 + 64 * 4  # 576 bits per row = 9 words, plus alpha
    assert op.nbytes < np.ones((64, 64, 3, 3), np.float32).nbytes / 30
    binary = sc.binarize(np.ones((64, 64, 3, 3), np.float32), activations="binary")
    assert binary.cost(10).bitops == 64 * 576 * 10
    assert op.cost(10).macs == 64 * 576 * 10  # by default it runs as its decoded weight
    # the add-only kernel on float activations: no negative weights here, so per output only the
    # subtraction and the scaling
    op.method = "add-only"
    assert op.cost(10).mults == 64 * 10 and op.cost(10).adds == 575 * 10 + 64 * 10


# -- integer quantization -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12, 16])
@pytest.mark.parametrize("scheme", ["symmetric", "affine"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantize_within_half_a_step(rng, bits, scheme, per_channel):
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    w[1] = np.abs(w[1])  # a row without negatives: affine must still represent 0
    op = sc.quantize(w, bits, scheme, per_channel)
    err = np.abs(op.to_dense().astype(np.float64) - w.reshape(6, -1))
    assert np.all(err <= op.scale[:, None] / 2 + 1e-6 * np.abs(w.reshape(6, -1)) + 1e-12)
    codes = op.codes
    lo, hi = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if scheme == "symmetric" else (0, 2 ** bits - 1)
    assert codes.min() >= lo and codes.max() <= hi
    per = 8 // bits if bits <= 4 else 1
    width = 1 if bits <= 8 else 2
    assert op.packed.nbytes == 6 * -(-36 // per) * width


def test_quantize_zero_rows_no_warning():
    w = np.zeros((2, 3, 3, 3))
    w[1, 0, 0, 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for scheme in ("symmetric", "affine"):
            op = sc.quantize(w, 8, scheme)
            assert op.scale[0] == 0 and np.all(op.to_dense()[0] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_dequantizing_kernel(rng, dtype):
    w = rng.standard_normal((70, 5, 3, 3)).astype(dtype)  # more rows than one dequantized block
    op = sc.quantize(w, 4, "affine")
    cols = rng.standard_normal((45, 100)).astype(dtype)
    assert_close(op @ cols, op.to_dense() @ cols, dtype)
    x = rng.standard_normal((2, 5, 8, 7)).astype(dtype)
    assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(x, op.to_weight(), padding=1), dtype)


@pytest.mark.parametrize("wtype, xtype, acc", [(np.int8, np.int8, np.int32), (np.int16, np.int8, np.int32),
                                                (np.int16, np.int16, np.int64), (np.int32, np.int16, np.int64)])
def test_int_gemm_exact(rng, wtype, xtype, acc):
    wmax, xmax = np.iinfo(wtype).max, np.iinfo(xtype).max
    wq = rng.integers(-wmax, wmax + 1, (8, 300)).astype(wtype)
    xq = rng.integers(-xmax, xmax + 1, (37, 300)).astype(xtype)
    wq[0] = wmax  # the extreme products
    xq[0] = xmax
    out = np.empty((7, 37), acc)  # 7 rows used of the 8 (padding rows are ignored)
    _lowp.int_gemm(wq, xq, out)
    expected = wq[:7].astype(np.int64) @ xq.astype(np.int64).T
    if acc is np.int32:
        assert np.abs(expected).max() <= np.iinfo(np.int32).max
    assert np.array_equal(out.astype(np.int64), expected)


def test_accumulator_bound():
    assert accumulator_dtype(133144, 127, 127) == np.int32
    assert accumulator_dtype(133145, 127, 127) == np.int64
    assert accumulator_dtype(2304, 65535, 32767) == np.int64


@pytest.mark.parametrize("bits, scheme", [(8, "symmetric"), (8, "affine"), (4, "symmetric"), (16, "affine")])
def test_integer_activations(rng, bits, scheme):
    w = rng.standard_normal((10, 6, 3, 3))
    x = rng.standard_normal((2, 6, 9, 8))
    op = sc.quantize(w, bits, scheme, activations=8)
    cols = sc.im2col(x, (3, 3), padding=1)  # (C_in*kH*kW, N*H*W)
    xq, s = op.quantize_columns(cols)
    exact = (op.to_dense() / op.scale[:, None]).round().astype(np.int64) @ xq.astype(np.int64)
    assert_close(op @ cols, exact * op.scale[:, None] * s, np.float64)
    # the oracle: torch on the quantized input (elementwise quantization commutes with im2col and zero padding)
    op.calibrate(x)
    xq_full = np.clip(np.rint(x / op.act_scale), -127, 127) * op.act_scale
    assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(xq_full, op.to_weight(), padding=1), np.float64)


# -- codebooks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [dict(), dict(bits=2), dict(n_clusters=5, per_channel=True, init="linear"),
                                    dict(n_clusters=1)])
def test_codebook(rng, kwargs):
    w = rng.standard_normal((10, 5, 3, 3)).astype(np.float32)
    op = sc.kmeans_quantize(w, **kwargs)
    assert op.idx.max() < op.n_clusters and np.array_equal(op.idx, op._idx())
    cols = rng.standard_normal((45, 300)).astype(np.float32)
    x = rng.standard_normal((2, 5, 8, 7)).astype(np.float32)
    for method in op.methods:  # decoded (default), accumulate
        op.method = method
        assert_close(op @ cols, op.to_dense() @ cols, np.float32)
        assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(x, op.to_weight(), padding=1), np.float32)
    assert op.cost(10).mults == 10 * op.n_clusters * 10


def test_codebook_error_falls_as_k_grows(rng):
    w = rng.standard_normal((16, 8, 3, 3))
    for init in ("linear", "kmeans++"):
        errors = [sc.relative_error(sc.kmeans_quantize(w, n_clusters=k, init=init, seed=3), w)
                  for k in (1, 2, 4, 8, 16, 32, 64)]
        assert all(b <= a for a, b in zip(errors, errors[1:])), errors


def test_codebook_storage():
    w = np.random.default_rng(0).standard_normal((8, 8, 3, 3)).astype(np.float32)
    op = sc.kmeans_quantize(w, bits=4, per_channel=False)
    assert op.nbytes == 8 * 36 + 16 * 4  # 72 four-bit indices per row, two to a byte, plus 16 centroids
    per_channel = sc.kmeans_quantize(w, bits=4)  # the default: a codebook per output channel
    assert per_channel.nbytes == 8 * 36 + 8 * 16 * 4


def test_packing_round_trip(rng):
    for bits in range(1, 17):
        codes = rng.integers(0, 2 ** bits, (3, 37))
        assert np.array_equal(_pack.unpack(_pack.pack(codes, bits), bits, 37), codes)


# -- save / load, bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda w: sc.binarize(w),
    lambda w: sc.binarize(w, scale="tensor", activations="binary", activation_scale=False),
    lambda w: sc.quantize(w, 3, "affine"),
    lambda w: sc.quantize(w, 8, activations=8).calibrate(w),
    lambda w: sc.kmeans_quantize(w, bits=3, per_channel=True),
])
def test_save_load_bit_exact(tmp_path, rng, make):
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    op = make(w)
    op.save(tmp_path / "op.npz")
    back = sc.load(tmp_path / "op.npz")
    assert type(back) is type(op)
    assert back.to_dense().tobytes() == op.to_dense().tobytes()
    cols = rng.standard_normal((36, 20)).astype(np.float32)
    assert (back @ cols).tobytes() == (op @ cols).tobytes()


W = np.ones((4, 2, 3, 3))


@pytest.mark.parametrize("call, match", [
    (lambda: sc.quantize(W, bits=1), "bits must be an int from 2 to 16"),
    (lambda: sc.quantize(W, bits=17), "bits must be an int from 2 to 16"),
    (lambda: sc.quantize(W, scheme="log"), "scheme must be one of"),
    (lambda: sc.quantize(W, activations=1), "activations must be an int from 2 to 16"),
    (lambda: sc.quantize(W).calibrate(W), "calibrate needs an operator with integer activations"),
    (lambda: sc.binarize(W, scale="row"), "scale must be one of"),
    (lambda: sc.binarize(W, activations="int"), r"activations must be one of \[None, 1, 'float', 'binary'\]"),
    (lambda: sc.kmeans_quantize(W, n_clusters=0), "n_clusters must be an int from 1"),
    (lambda: sc.kmeans_quantize(W, n_clusters=73), "n_clusters must be an int from 1"),
    (lambda: sc.kmeans_quantize(W, n_clusters=19, per_channel=True), "n_clusters must be an int from 1"),
    (lambda: sc.kmeans_quantize(W, bits=9), "bits must be an int from 1 to 8"),
    (lambda: sc.kmeans_quantize(W, n_clusters=4, bits=2), "not both"),
    (lambda: sc.kmeans_quantize(W, init="random"), "init must be one of"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("fn", [sc.binarize, sc.quantize, sc.kmeans_quantize])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(fn, bad):
    w = np.ones((2, 2, 3, 3))
    w[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        fn(w)


def test_dynamic_activation_scale_does_not_depend_on_the_workspace(rng):
    """Without calibration the scale comes from the whole input, not from each chunk of columns."""
    w = rng.standard_normal((8, 4, 3, 3))
    x = rng.standard_normal((2, 4, 12, 12))
    x[1, 0, 5, 5] = 9.0  # the peak, in the second image only
    op = sc.quantize(w, 8, activations=8)
    small = sc.conv2d(x, op, padding=1, workspace=20_000)  # many chunks
    assert np.array_equal(small, sc.conv2d(x, op, padding=1))
    s = 9.0 / 127
    xq = np.clip(np.rint(x / s), -127, 127) * s
    assert_close(small, torch_conv2d(xq, op.to_weight(), padding=1), np.float64)
