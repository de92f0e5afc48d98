"""The dense family: W itself, stored as it is. The baseline every other operator is measured against."""

import numpy as np

from .conv import dense_conv2d
from .cost import dense_cost
from .operator import WeightOperator, _Weight
from ._validation import as_array, float_dtype

__all__ = ["DenseWeight", "as_operator", "grouped_conv2d"]


def grouped_conv2d(op, groups, x, geom, bias, workspace, weight=None):
    """conv2d by the dense kernels of ``weight`` (default ``op.weight``; torch's grouped layout), caching on
    ``op`` the copies of it in the layouts the kernels take."""
    weight = (op.weight if weight is None else weight).astype(x.dtype, copy=False)

    def layout(kind, make):
        return op._cached((kind, x.dtype.str), lambda: make(weight))
    return dense_conv2d(x, weight, bias, geom, groups, workspace, layout=layout)


class DecodedFirst:
    """For an operator whose weight decodes to floats: by default it runs as its decoded weight.

    ``method="decoded"`` (the default, ``methods[0]``): the weight is decoded
    to a float (C_out, C_in, kH, kW) array once, kept as a cache
    (``cache_nbytes``; ``drop_cache`` frees it), and multiplied by the dense
    kernels, so it runs as fast as the dense layer and ``cost`` is the dense
    product's. The family's own kernel (``methods[1]``: add-only, bins, ...)
    runs with ``method`` set to it, through ``_kernel_matmat`` and
    ``_kernel_cost``: on a CPU whose FMA units make a multiplication as cheap
    as an addition it saves multiplications and memory, not time.
    """

    def _decoded_weight(self, dtype):
        """The decoded weight (C_out, C_in, kH, kW) in ``dtype``: made on first use, then kept."""
        dtype = np.dtype(dtype)
        return self._cached(("decoded", dtype.str), lambda: np.ascontiguousarray(self.to_weight(), dtype=dtype))

    def _matmat(self, cols):
        if self.method != "decoded":
            return self._kernel_matmat(cols)
        cols = np.asarray(cols)
        return self._decoded_weight(np.result_type(cols.dtype, self.dtype)).reshape(self.shape) @ cols

    def _conv2d(self, x, geom, bias, workspace):
        if self.method != "decoded":
            return super()._conv2d(x, geom, bias, workspace)
        return grouped_conv2d(self, 1, x, geom, bias, workspace, weight=self._decoded_weight(x.dtype))

    def cost(self, n_cols):
        if self.method != "decoded":
            return self._kernel_cost(n_cols)
        return dense_cost(self.shape[0], self.shape[1], self.shape[1], n_cols, self.dtype.itemsize)


class DenseWeight(WeightOperator):
    """A conv weight stored densely: the matrix W of shape (C_out, C_in*kH*kW).

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kH, kW)
        float32 or float64 (float16 becomes float32, integers float64). The
        operator keeps its own C-contiguous copy.

    Notes
    -----
    ``conv2d(x, DenseWeight(w))`` equals ``conv2d(x, w)`` and runs the same
    fused kernel; the other operators are compared against it.
    """

    torch_module = "DenseConv2d"

    def __init__(self, weight):
        weight = as_array(weight, "weight")
        if weight.ndim != 4:
            raise ValueError(f"weight must be 4-D (C_out, C_in, kH, kW), got shape {weight.shape}")
        self.weight = np.array(weight, dtype=float_dtype(weight.dtype, "weight"), order="C")
        super().__init__(self.weight.shape, self.weight.dtype)

    @property
    def matrix(self):
        """W as a (C_out, C_in*kH*kW) view of the stored weight."""
        return self.weight.reshape(self.shape)

    def _matmat(self, cols):
        return self.matrix @ cols

    def _rmatmat(self, y):
        return self.matrix.T @ y

    def to_dense(self):
        return self.matrix.copy()

    @property
    def num_params(self):
        return int(self.weight.size)

    @property
    def nbytes(self):
        return int(self.weight.nbytes)

    def cost(self, n_cols):
        return dense_cost(self.shape[0], self.shape[1], self.shape[1], n_cols, self.dtype.itemsize)

    def _conv2d(self, x, geom, bias, workspace):
        return grouped_conv2d(self, 1, x, geom, bias, workspace)

    def _state(self):
        return {"weight": self.weight}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["weight"])


def as_operator(weight):
    """An operator (linear or not) unchanged, or a 4-D weight array as a :class:`sparseconv.DenseWeight`."""
    if isinstance(weight, _Weight):
        return weight
    return DenseWeight(weight)
