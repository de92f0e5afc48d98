"""Output-shape arithmetic, property-tested against torch, and the error cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparseconv as sc

torch = pytest.importorskip("torch")

geometry = st.fixed_dictionaries(dict(
    h=st.integers(1, 12), w=st.integers(1, 12),
    kh=st.integers(1, 5), kw=st.integers(1, 5),
    sh=st.integers(1, 3), sw=st.integers(1, 3),
    ph=st.integers(0, 3), pw=st.integers(0, 3),
    dh=st.integers(1, 3), dw=st.integers(1, 3),
))


def _torch_shape(g):
    """torch's output shape, or None where torch refuses the geometry."""
    x = torch.zeros(1, 1, g["h"], g["w"])
    w = torch.zeros(1, 1, g["kh"], g["kw"])
    try:
        y = torch.nn.functional.conv2d(x, w, stride=(g["sh"], g["sw"]), padding=(g["ph"], g["pw"]),
                                       dilation=(g["dh"], g["dw"]))
    except RuntimeError:
        return None
    return tuple(y.shape[2:])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(geometry)
def test_output_shape_agrees_with_torch(g):
    expected = _torch_shape(g)
    args = dict(kernel_size=(g["kh"], g["kw"]), stride=(g["sh"], g["sw"]), padding=(g["ph"], g["pw"]),
                dilation=(g["dh"], g["dw"]))
    if expected is None:
        with pytest.raises(ValueError, match="larger than the padded input"):
            sc.conv_output_shape((1, 1, g["h"], g["w"]), **args)
        return
    assert sc.conv_output_shape((1, 1, g["h"], g["w"]), **args) == expected
    y = sc.conv2d(np.ones((1, 1, g["h"], g["w"])), np.ones((1, 1, g["kh"], g["kw"])),
                  stride=args["stride"], padding=args["padding"], dilation=args["dilation"])
    assert y.shape[2:] == expected
    assert sc.im2col(np.ones((1, 1, g["h"], g["w"])), **args).shape == (g["kh"] * g["kw"], expected[0] * expected[1])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 6), st.integers(1, 6), st.integers(1, 3),
       st.integers(1, 3))
def test_same_padding_keeps_the_size(h, w, kh, kw, dh, dw):
    shape = sc.conv_output_shape((1, 1, h, w), (kh, kw), padding="same", dilation=(dh, dw))
    assert shape == (h, w)
