"""Argument checking and convolution geometry, shared by every public entry point.

Each check raises an error naming the argument and what it accepts, so that
bad input never reaches a numba kernel. One convention, numpy's: a value of
the wrong type (``1.5`` or ``True`` for a count, a list for a name) raises
``TypeError``; a value of the right type outside what is accepted (``0``
groups, ``bits=17``, an unknown scheme) raises ``ValueError``.
"""

import numbers
from dataclasses import dataclass

import numpy as np


def _is_int(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(value, name, low=None, high=None, note=""):
    """``value`` as an int in [low, high] (either bound may be None); bools are not ints here.

    ``note`` says, after the accepted range, where a bound comes from.
    """
    if low == 1 and high is None:
        span = "a positive int"
    elif high is None:
        span = "an int" if low is None else f"an int >= {low}"
    else:
        span = f"an int <= {high}" if low is None else f"an int from {low} to {high}"
    if not _is_int(value):
        raise TypeError(f"{name} must be {span}{note}, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {span}{note}, got {value!r}")
    return value


def positive_int(value, name):
    """``value`` as an int >= 1."""
    return integer(value, name, low=1)


def choice(value, name, choices):
    """``value`` if it is one of ``choices``: a value of another type is a TypeError, another value a ValueError.

    Among int choices a NumPy integer is an int and a bool is not (``True == 1``).
    """
    if value is None:
        if any(c is None for c in choices):
            return None
        raise TypeError(f"{name} must be one of {list(choices)}, got None")
    kinds = tuple({type(c) for c in choices if c is not None})
    kinds += (np.integer,) if int in kinds else ()
    is_bool = isinstance(value, (bool, np.bool_))
    if not isinstance(value, kinds) or (is_bool and bool not in kinds):
        raise TypeError(f"{name} must be one of {list(choices)}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def pair(value, name, minimum):
    """``value`` as a tuple of two ints >= ``minimum`` (an int stands for both)."""
    if _is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def float_dtype(dtype, name):
    """The float dtype computations on an array of ``dtype`` use.

    float32 and float64 stay as they are; float16 computes in float32;
    integers and bools are converted to float64. Anything else is refused.
    """
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return dtype
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"{name} must have a real numeric dtype (float32 or float64; float16, "
        f"integers and bool are converted), got {dtype}"
    )


def as_array(a, name):
    """``a`` as a NumPy array, refusing objects that are not array-like numbers."""
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from err
    float_dtype(a.dtype, name)
    return a


def as_input(x):
    """Validate x as (N, C_in, H, W); return it C-contiguous in its compute dtype."""
    x = as_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C_in, H, W), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=float_dtype(x.dtype, "x"))


@dataclass(frozen=True)
class Geometry:
    """Where a kernel of (kh, kw) taps lands on an (h, w) input.

    Padding is (top, bottom, left, right) so that ``padding='same'`` with an
    even kernel can pad one side more, as torch does.
    """

    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    top: int
    bottom: int
    left: int
    right: int
    dh: int
    dw: int

    @property
    def h_out(self):
        return (self.h + self.top + self.bottom - self.dh * (self.kh - 1) - 1) // self.sh + 1

    @property
    def w_out(self):
        return (self.w + self.left + self.right - self.dw * (self.kw - 1) - 1) // self.sw + 1

    @property
    def kernel_args(self):
        """(kh, kw, sh, sw, top, left, dh, dw, h_out, w_out), as the kernels take them."""
        return (self.kh, self.kw, self.sh, self.sw, self.top, self.left,
                self.dh, self.dw, self.h_out, self.w_out)


def geometry(x_shape, kernel_size, stride, padding, dilation):
    """Validate the convolution arguments against an input of ``x_shape``."""
    kh, kw = pair(kernel_size, "kernel_size", 1)
    sh, sw = pair(stride, "stride", 1)
    dh, dw = pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride!r}")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
    else:
        ph, pw = pair(padding, "padding", 0)
        pads = (ph, ph, pw, pw)
    h, w = int(x_shape[-2]), int(x_shape[-1])
    g = Geometry(h, w, kh, kw, sh, sw, *pads, dh, dw)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if span_h > h + g.top + g.bottom or span_w > w + g.left + g.right:
        raise ValueError(
            f"kernel_size {(kh, kw)} with dilation {(dh, dw)} spans {(span_h, span_w)}, larger "
            f"than the padded input {(h + g.top + g.bottom, w + g.left + g.right)}"
        )
    return g


def count_or_fraction(value, name, total):
    """How many of ``total`` units ``value`` names: an int count in [0, total] or a float fraction in [0, 1].

    This is ``torch.nn.utils.prune``'s convention for ``amount``; a fraction
    rounds to the nearest count.
    """
    if _is_int(value):
        if not 0 <= value <= total:
            raise ValueError(f"{name}={value} as a count must be in [0, {total}]")
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)) and not isinstance(value, (bool, np.bool_)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} as a fraction must be in [0, 1]")
        return int(round(float(value) * total))
    raise TypeError(f"{name} must be an int count or a float fraction, got {value!r}")
