"""Storage is what is stored: nbytes is the saved file's payload, loads are bit-exact, caches are counted apart."""

import zipfile

import numpy as np
import pytest

import sparseconv as sc
from sparseconv.operator import _FORMAT

SHAPE = (16, 16, 3, 3)


def _every_point():
    """Every family at every budget compare sweeps on a 16 -> 16 3x3 layer, plus every bit width."""
    points = [(f.name, label, params) for f in sc.registry.families() for label, params in f.points(SHAPE)]
    points += [("quantize", f"{b} bits {s}", dict(bits=b, scheme=s)) for b in range(2, 17) for s in
               ("symmetric", "affine")]
    points += [("quantize", "8 bits, int8 activations", dict(bits=8, activations=8))]
    points += [("kmeans", f"{b}-bit index", dict(bits=b, per_channel=False)) for b in range(1, 9)]
    points += [("kmeans", "per channel", dict(n_clusters=8, per_channel=True))]
    return points


POINTS = _every_point()


def _payload(path):
    with np.load(path, allow_pickle=False) as f:
        return sum(f[k].nbytes for k in f.files)


@pytest.mark.parametrize("family,label,params", POINTS, ids=[f"{f}-{label}" for f, label, _ in POINTS])
def test_the_file_holds_nbytes_and_loads_bit_exact(family, label, params, tmp_path):
    rng = np.random.default_rng(7)
    w = rng.standard_normal(SHAPE).astype(np.float32)
    op = sc.registry.family(family).build(w, **params)
    x = rng.standard_normal((2, 16, 7, 7)).astype(np.float32)
    y = sc.conv2d(x, op, padding=1)  # fills the kernels' decoded copies
    path = tmp_path / "op.npz"
    op.save(path)
    payload = _payload(path)
    assert abs(payload - op.nbytes) <= 0.01 * op.nbytes + 1024, (payload, op.nbytes)
    back = sc.load(path)
    assert type(back) is type(op) and back.kernel_shape == op.kernel_shape and back.dtype == op.dtype
    assert back.nbytes == op.nbytes
    assert np.array_equal(back.to_dense(), op.to_dense())
    assert np.array_equal(sc.conv2d(x, back, padding=1), y)
    for key, value in op._state().items():
        assert np.array_equal(back._state()[key], value), key


def test_packed_codes_are_what_the_file_holds(tmp_path):
    w = np.random.default_rng(0).standard_normal((64, 64, 3, 3)).astype(np.float32)
    for op, bits in ((sc.quantize(w, 4), 4), (sc.kmeans_quantize(w, bits=2), 2), (sc.binarize(w), 1)):
        op.save(tmp_path / "op.npz")
        weights = w.size
        # the codes at their bit width, plus at most a per-channel vector or two and the metadata
        assert _payload(tmp_path / "op.npz") <= weights * bits / 8 + 2 * 64 * 8 + 512, type(op).__name__


def test_decoded_copies_are_counted_apart_and_can_be_dropped():
    rng = np.random.default_rng(1)
    w = rng.standard_normal(SHAPE).astype(np.float32)
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    for op in (sc.quantize(w, 4), sc.quantize(w, 8, activations=8), sc.kmeans_quantize(w, bits=3), sc.DenseWeight(w),
               sc.low_rank(w, 4), sc.IGCV1.random(4, 4)):
        stored = op.nbytes
        y = sc.conv2d(x, op, padding=1)
        assert op.cache_nbytes > 0, type(op).__name__
        assert op.nbytes == stored
        assert op.drop_cache() is op and op.cache_nbytes == (sum(f.nbytes for f in op.factors if isinstance(
            f, sc.Permutation)) if isinstance(op, sc.IGCV1) else 0)
        assert np.array_equal(sc.conv2d(x, op, padding=1), y)


@pytest.mark.parametrize("fit,args", [(sc.igcv1, dict(L=4, M=4)), (sc.igcv2, dict(branch_sizes=(4, 4))),
                                      (sc.igcv3, dict(expansion=2, groups=(2, 2)))])
def test_fit_history_survives_save_and_load(fit, args, tmp_path):
    w = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    op = fit(w, max_iter=5, **args)
    assert len(op.history) >= 1
    op.save(tmp_path / "fit.npz")
    assert sc.load(tmp_path / "fit.npz").history == op.history


def test_files_of_format_1_still_load(tmp_path):
    """sparseconv 0.1.0 wrote quantized codes and codebook indices unpacked."""
    w = np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)
    q, c = sc.quantize(w, 4, "affine"), sc.kmeans_quantize(w, bits=3)
    meta = dict(__format__=np.array(1), __kernel_shape__=np.array(SHAPE, np.int64))
    np.savez(tmp_path / "q.npz", __class__=np.array("QuantizedWeight"), codes=q.codes, scale=q.scale,
             zero_point=q.zero_point.astype(np.int64), bits=np.array(4), scheme=np.array("affine"),
             activations=np.array(-1), dtype=np.array(q.dtype.str), **meta)
    np.savez(tmp_path / "c.npz", __class__=np.array("CodebookWeight"), idx=c.idx, codebook=c.codebook, **meta)
    b = sc.binarize(w, activations="binary", activation_scale=False)  # 0.1.0: one class for both kinds
    np.savez(tmp_path / "b.npz", __class__=np.array("BinaryWeight"), bits=b.weight.bits, alpha=b.alpha,
             activations=np.array("binary"), activation_scale=np.array(False), **meta)
    q8 = sc.quantize(w, 8, activations=8).calibrate(w)
    np.savez(tmp_path / "q8.npz", __class__=np.array("QuantizedWeight"), codes=q8.codes, scale=q8.scale,
             zero_point=q8.zero_point.astype(np.int64), bits=np.array(8), scheme=np.array("symmetric"),
             activations=np.array(8), dtype=np.array(q8.dtype.str), act_scale=np.array(q8.act_scale), **meta)
    assert np.array_equal(sc.load(tmp_path / "q.npz").to_dense(), q.to_dense())
    assert np.array_equal(sc.load(tmp_path / "c.npz").to_dense(), c.to_dense())
    back_b, back_q8 = sc.load(tmp_path / "b.npz"), sc.load(tmp_path / "q8.npz")
    assert isinstance(back_b, sc.BinaryInputWeight) and not back_b.activation_scale
    assert isinstance(back_q8, sc.IntegerInputWeight) and back_q8.act_scale == q8.act_scale
    x = np.random.default_rng(4).standard_normal((1, 16, 6, 6)).astype(np.float32)
    assert np.array_equal(sc.conv2d(x, back_b), sc.conv2d(x, b))
    assert np.array_equal(sc.conv2d(x, back_q8), sc.conv2d(x, q8))
    assert _FORMAT == 2


def test_load_names_the_file_for_anything_it_cannot_read(tmp_path):
    sc.quantize(np.ones(SHAPE, np.float32), 4).save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.npz").write_text("not a zip file")
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with zipfile.ZipFile(tmp_path / "bad_member.npz", "w") as z:
        z.writestr("__class__.npy", b"garbage")
    for name in ("truncated.npz", "text.npz", "array.npy", "foreign.npz", "bad_member.npz", "missing.npz"):
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            sc.load(tmp_path / name)
