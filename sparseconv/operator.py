"""The weight-operator algebra: every compression is a cheaper stand-in for W.

A convolution weight of shape (C_out, C_in, kH, kW) is, as a matrix, the
C_out x (C_in*kH*kW) matrix ``W`` with ``conv2d(x) = W @ im2col(x)``. A
:class:`WeightOperator` is anything that can play ``W``: it multiplies
columns (``op @ cols``), multiplies by its adjoint (``op.rmatmat``), says
what matrix it equals (``to_dense``), what it stores (``num_params``,
``nbytes``) and what it costs (``cost``), and saves itself losslessly.

Subclasses implement ``_matmat``, ``_rmatmat``, ``to_dense``, ``num_params``,
``nbytes``, ``cost`` and ``_state``/``_from_state``; a subclass with a faster
way to convolve than "im2col in chunks, then ``_matmat``" overrides
``_conv2d``.

Storage is what is stored: ``nbytes`` is the bytes of the arrays ``save``
writes (and the object holds). A decoded copy a kernel keeps for speed (an
unpacked index, a re-laid-out weight) goes through ``_cached``: it is made on
first use, counted apart in ``cache_nbytes`` and freed by ``drop_cache()``.
"""

import os
import zipfile

import numba
import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._kernels.im2col import im2col_range
from ._validation import as_array, choice, float_dtype, geometry

__all__ = ["NonlinearWeight", "WeightOperator", "as_weight", "load", "relative_error"]

_REGISTRY = {}
#: the file format written; ``load`` reads every format listed in _READS
_FORMAT = 2
_READS = (1, 2)


class _Weight:
    """What every weight ``conv2d`` takes provides: storage, cost, the convolution, save; linear or not.

    Parameters
    ----------
    kernel_shape : tuple (C_out, C_in, kH, kW)
    dtype : numpy dtype (float32 or float64)
    """

    #: the :mod:`sparseconv.torch.modules` class that runs this operator in torch ("Name", or
    #: "package.module:Class"); None: its dense weight (see :mod:`sparseconv.registry`)
    torch_module = None
    #: the ways ``conv2d`` and ``@`` can multiply by this operator, the default (fastest) first;
    #: :attr:`method` says which one runs
    methods = ("direct",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, kernel_shape, dtype):
        c_out, c_in, kh, kw = (int(v) for v in kernel_shape)
        self.kernel_shape = (c_out, c_in, kh, kw)
        self.shape = (c_out, c_in * kh * kw)
        self.dtype = np.dtype(dtype)

    @property
    def method(self):
        """Which of :attr:`methods` ``conv2d`` and ``@`` run (default ``methods[0]``); set it to choose another.

        A run-time choice, not part of the operator: ``save`` does not keep it.
        """
        return self.__dict__.get("_method", type(self).methods[0])

    @method.setter
    def method(self, value):
        self._method = choice(value, "method", type(self).methods)

    # -- what a subclass provides -------------------------------------------------
    def to_dense(self):
        """The (C_out, C_in*kH*kW) matrix this operator equals, in its dtype."""
        raise NotImplementedError

    @property
    def num_params(self):
        """How many numbers the representation stores (indices included)."""
        raise NotImplementedError

    @property
    def nbytes(self):
        """Bytes the representation stores, each array at its true bit width: the payload ``save`` writes."""
        raise NotImplementedError

    def cost(self, n_cols):
        """:class:`sparseconv.Cost` of ``self @ cols`` for ``n_cols`` columns (see :meth:`conv_cost` for conv2d)."""
        raise NotImplementedError

    def _conv_cost(self, n_img, geom):
        """Cost of ``conv2d`` under ``geom`` on ``n_img`` images: by default the product on its im2col columns."""
        return self.cost(n_img * geom.h_out * geom.w_out)

    def _state(self):
        """Dict of NumPy arrays (no objects) from which ``_from_state`` rebuilds self."""
        raise NotImplementedError

    @classmethod
    def _from_state(cls, state, kernel_shape):
        """Rebuild an operator of ``kernel_shape`` from what ``_state`` returned."""
        raise NotImplementedError

    def _children(self):
        """Sub-operators held by this one (their caches are part of this one's)."""
        return ()

    # -- shared behaviour ---------------------------------------------------------
    def _cached(self, key, make):
        """The decoded copy ``key``: ``make()`` on first use, then kept until :meth:`drop_cache`."""
        cache = self.__dict__.setdefault("_decoded", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]

    @property
    def cache_nbytes(self):
        """Bytes of decoded copies kept beside the stored arrays for speed (not in ``nbytes``, not saved)."""
        own = sum(_held_bytes(v) for v in self.__dict__.get("_decoded", {}).values())
        return int(own + sum(c.cache_nbytes for c in self._children()))

    def drop_cache(self):
        """Free the decoded copies (the kernels make them again when next needed); returns self."""
        self.__dict__.get("_decoded", {}).clear()
        for child in self._children():
            child.drop_cache()
        return self

    def conv_cost(self, x_shape, stride=1, padding=0, dilation=1):
        """:class:`sparseconv.Cost` of ``conv2d(x, self, stride=..., padding=..., dilation=...)`` for x of ``x_shape``.

        What the convolution runs, under its geometry: an operator whose
        parts run at different resolutions (a product whose 1x1 factors
        before the spatial one see the input's pixels, a spatial low-rank
        pair whose first convolution keeps the input's width) prices each
        part at its own number of columns. Same as :func:`sparseconv.conv_cost`.
        """
        if not (isinstance(x_shape, (tuple, list)) and len(x_shape) == 4):
            raise ValueError(f"x_shape must be a 4-tuple (N, C_in, H, W), got {x_shape!r}")
        if x_shape[1] != self.kernel_shape[1]:
            raise ValueError(f"x_shape has C_in={x_shape[1]} channels, "
                             f"the operator expects C_in={self.kernel_shape[1]}")
        geom = geometry(tuple(x_shape), self.kernel_shape[2:], stride, padding, dilation)
        return self._conv_cost(int(x_shape[0]), geom)

    def to_weight(self):
        """The 4-D weight (C_out, C_in, kH, kW) of the matrix :meth:`to_dense`."""
        return self.to_dense().reshape(self.kernel_shape)

    def _conv2d(self, x, geom, bias, workspace, matmat=None):
        """Convolve x (N, C_in, H, W) by this operator; the generic chunked path.

        Works through the im2col columns ``chunk`` at a time, so that the
        column block and its product stay within ``workspace`` bytes.
        ``matmat`` (default ``self._matmat``) computes each chunk's product.
        """
        matmat = self._matmat if matmat is None else matmat
        n_img = x.shape[0]
        c_out, k = self.shape
        p_img = geom.h_out * geom.w_out
        total = n_img * p_img
        out = np.empty((n_img, c_out, p_img), x.dtype)  # (N, C_out, H_out*W_out)
        chunk = _column_chunk(total, (k + c_out) * x.dtype.itemsize, workspace)
        buf = np.empty(k * chunk, x.dtype)
        for q0 in range(0, total, max(chunk, 1)):
            q1 = min(q0 + chunk, total)
            cols = buf[:k * (q1 - q0)].reshape(k, q1 - q0)  # (C_in*kH*kW, chunk)
            im2col_range(x, cols, q0, q1, *geom.kernel_args)
            prod = np.asarray(matmat(cols), dtype=x.dtype)  # (C_out, chunk)
            _scatter_columns(prod, out, q0, p_img)
            del prod  # before the next chunk's product is allocated
        if bias is not None:
            out += bias[None, :, None]
        return out.reshape(n_img, c_out, geom.h_out, geom.w_out)

    def save(self, path):
        """Write the operator to ``path`` (.npz); :func:`sparseconv.load` reads it back bit-exact.

        The file holds the stored arrays as they are (packed codes stay
        packed), so its payload is ``nbytes``; a fit's ``history`` is kept.
        """
        state = self._state()
        for key, value in state.items():
            if not isinstance(value, np.ndarray) or value.dtype.hasobject:
                raise TypeError(f"{type(self).__name__}._state()[{key!r}] must be a non-object array")
        extra = {}
        if getattr(self, "history", None) is not None:
            extra["__history__"] = np.asarray(self.history, dtype=np.float64)
        np.savez(path, __class__=np.array(type(self).__name__), __format__=np.array(_FORMAT),
                 __kernel_shape__=np.array(self.kernel_shape, np.int64), **extra, **state)

    def __repr__(self):
        c_out, c_in, kh, kw = self.kernel_shape
        return (f"{type(self).__name__}(C_out={c_out}, C_in={c_in}, kernel=({kh}, {kw}), "
                f"dtype={self.dtype}, num_params={self.num_params})")


class WeightOperator(_Weight, LinearOperator):
    """Base class of every linear weight operator: a (C_out, C_in*kH*kW) linear map.

    Being a :class:`scipy.sparse.linalg.LinearOperator`, an operator works
    with ``@``, ``.matmat``, ``.rmatmat``, ``.T``/``.H``, sums and products,
    ``scipy.sparse.linalg.aslinearoperator`` and its solvers: for every one,
    <op x, y> = <x, op^H y> and ``op @ cols == op.to_dense() @ cols``.

    Parameters
    ----------
    kernel_shape : tuple (C_out, C_in, kH, kW)
    dtype : numpy dtype (float32 or float64)
    """

    def __init__(self, kernel_shape, dtype):
        _Weight.__init__(self, kernel_shape, dtype)
        LinearOperator.__init__(self, dtype=self.dtype, shape=self.shape)

    def _adjoint(self):
        return _Adjoint(self)


def _not_linear(self, *args, **kwargs):
    raise TypeError(f"{type(self).__name__} is not linear in its input: it quantizes the columns before "
                    f"multiplying, y = W @ q(cols). Linear algebra (sums, products, adjoints, scipy's "
                    f"aslinearoperator and solvers) needs a linear operator: use its linear part, .weight")


class NonlinearWeight(_Weight):
    """A linear weight applied to quantized inputs: y = W @ q(cols), for conv2d only.

    Binary activations (:class:`sparseconv.BinaryInputWeight`) and integer
    activations (:class:`sparseconv.IntegerInputWeight`) quantize the
    columns inside the kernel, so the map is not linear in them. It is not a
    ``LinearOperator``: ``@``, ``matmat``, ``conv2d``, storage, cost and
    ``save`` work; sums, products, adjoints and scipy's linear algebra raise
    ``TypeError``. ``weight`` is the linear operator W (the matrix
    ``to_dense()``), ``quantize``-ing the columns is :meth:`activations_of`.
    """

    def __init__(self, weight):
        if not isinstance(weight, WeightOperator):
            raise TypeError(f"weight must be a linear WeightOperator, got {type(weight).__name__}")
        self.weight = weight
        super().__init__(weight.kernel_shape, weight.dtype)

    def activations_of(self, cols):
        """What the kernel multiplies W by: q(cols) as floats, (C_in*kH*kW, n)."""
        raise NotImplementedError

    def matmat(self, cols):
        """W @ q(cols) for columns (C_in*kH*kW, n)."""
        cols = np.asarray(cols)
        if cols.ndim != 2 or cols.shape[0] != self.shape[1]:
            raise ValueError(f"cols must be 2-D with {self.shape[1]} rows (C_in*kH*kW), got shape {cols.shape}")
        return self._matmat(cols)

    def __matmul__(self, cols):
        if isinstance(cols, _Weight) or isinstance(cols, LinearOperator):
            _not_linear(self)
        cols = np.asarray(cols)
        return self.matmat(cols[:, None])[:, 0] if cols.ndim == 1 else self.matmat(cols)

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __neg__ = __pow__ = __rmatmul__ = _not_linear
    dot = rmatmat = adjoint = transpose = __array__ = _not_linear
    # properties, so that hasattr() in scipy's aslinearoperator raises at once instead of wrapping
    matvec = rmatvec = H = T = property(_not_linear)

    def to_dense(self):
        """W, the matrix that multiplies the quantized columns."""
        return self.weight.to_dense()

    @property
    def num_params(self):
        return self.weight.num_params

    @property
    def nbytes(self):
        return self.weight.nbytes

    def _children(self):
        return (self.weight,)


def _held_bytes(value):
    """Bytes of an array, an operator (stored and cached) or a tuple of them."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, _Weight):
        return value.nbytes + value.cache_nbytes
    if isinstance(value, (tuple, list)):
        return sum(_held_bytes(v) for v in value)
    return 0


class _Adjoint(LinearOperator):
    def __init__(self, op):
        self.op = op
        super().__init__(dtype=op.dtype, shape=op.shape[::-1])

    def _matmat(self, y):
        return self.op._rmatmat(y)

    def _rmatmat(self, cols):
        return self.op._matmat(cols)

    def _adjoint(self):
        return self.op


#: Bytes of columns (and their product) that a conv2d path works through at a time (``workspace`` can
#: only lower it): one buffer, reused for every chunk, that stays in the caches
_CHUNK_BYTES = 8 * 2**20


def _column_chunk(total, per_col, workspace, unit=1):
    """Columns per chunk, of ``per_col`` bytes each: a multiple of ``unit`` (a kernel's block of columns)
    within ``_CHUNK_BYTES`` and ``workspace``, at least one unit."""
    chunk = min(-(-total // unit) * unit, workspace // per_col // unit * unit,
                max(unit, _CHUNK_BYTES // per_col // unit * unit))
    if total and chunk < unit:
        what = "one column" if unit == 1 else f"{unit} columns"
        raise ValueError(f"workspace={workspace} bytes cannot hold {what} of {per_col} bytes; "
                         f"pass workspace >= {unit * per_col}")
    return chunk


def _scatter_columns(prod, out, q0, p_img):
    """Copy a (C_out, chunk) product of columns q0.. into out (N, C_out, P)."""
    q1 = q0 + prod.shape[1]
    q = q0
    while q < q1:
        n, p = divmod(q, p_img)
        seg = min(p_img - p, q1 - q)
        out[n, :, p:p + seg] = prod[:, q - q0:q - q0 + seg]
        q += seg


def _row_blocks(c_out, n_cols, tile):
    """Blocks of rows to cut each column tile into, so that every thread gets a few tasks."""
    n_tiles = -(-n_cols // tile)
    return int(min(c_out, max(1, -(-4 * numba.get_num_threads() // n_tiles))))


def load(path):
    """Read an operator written by ``op.save(path)``; never unpickles anything.

    Raises ``ValueError`` naming the file when it is not a readable
    sparseconv operator (missing, truncated, another kind of file).
    """
    path = os.fspath(path)
    expected = "a .npz file written by WeightOperator.save"
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; expected {expected}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} cannot be read as {expected} ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not {expected}")
    with data:
        try:
            if "__class__" not in data.files:
                raise ValueError(f"{path} is not a saved sparseconv operator (no __class__ entry); expected {expected}")
            name = str(data["__class__"])
            if name not in _REGISTRY:
                raise ValueError(f"{path} holds an operator of unknown class {name!r}; known: {sorted(_REGISTRY)}")
            fmt = int(data["__format__"])
            if fmt not in _READS:
                raise ValueError(f"{path} has format {fmt}; this version reads formats {list(_READS)} "
                                 f"(save it again with the sparseconv version that wrote it, then upgrade)")
            state = {k: data[k] for k in data.files if not k.startswith("__")}
            kernel_shape = tuple(int(v) for v in data["__kernel_shape__"])
            history = data["__history__"] if "__history__" in data.files else None
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise ValueError(f"{path} is damaged or truncated ({type(exc).__name__}: {exc})") from None
    op = _REGISTRY[name]._from_state(state, kernel_shape)
    if history is not None:
        op.history = [float(v) for v in history]
    return op


def relative_error(op, weight):
    """||W - op.to_dense()||_F / ||W||_F, the relative Frobenius error of an approximation.

    ``weight`` is the reference: a 4-D weight, its (C_out, C_in*kH*kW)
    matrix, or an operator. Computed in float64; 0.0 when both are zero and
    inf when only W is.
    """
    ref = weight.to_dense() if isinstance(weight, _Weight) else as_array(weight, "weight")
    ref = np.asarray(ref, dtype=np.float64)
    approx = op.to_dense() if isinstance(op, _Weight) else as_array(op, "op")
    approx = np.asarray(approx, dtype=np.float64)
    if ref.ndim == 4:
        ref = ref.reshape(ref.shape[0], -1)
    if approx.ndim == 4:
        approx = approx.reshape(approx.shape[0], -1)
    if ref.shape != approx.shape:
        raise ValueError(f"op has shape {approx.shape}, weight has shape {ref.shape}")
    diff = np.linalg.norm(ref - approx)
    norm = np.linalg.norm(ref)
    if norm == 0:
        return 0.0 if diff == 0 else float("inf")
    return float(diff / norm)


def as_weight(weight, name="weight"):
    """A 4-D (C_out, C_in, kH, kW) float weight with finite entries, from an array or an operator."""
    if isinstance(weight, _Weight):
        weight = weight.to_weight()
    weight = as_array(weight, name)
    if weight.ndim != 4:
        raise ValueError(f"{name} must be 4-D (C_out, C_in, kH, kW), got shape {weight.shape}")
    weight = np.ascontiguousarray(weight, dtype=float_dtype(weight.dtype, name))
    if not np.all(np.isfinite(weight)):
        raise ValueError(f"{name} has NaN or inf entries; a factorization of it would be meaningless")
    return weight
