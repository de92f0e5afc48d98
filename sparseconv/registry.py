"""The family registry: every compression family declares itself once, in its own module.

A family is a way to make the weight matrix cheaper. Its module defines the
operator class, the constructor, the cost and a readable NumPy twin, and
ends with a :func:`register` call that says what the rest of the library
needs to know:

- ``name``: the method string users pass (``"quantize"``, ``"igcv1"``);
- ``build(weight, **params)``: the constructor from a dense weight;
- ``operators``: the operator classes it makes;
- ``sweep(kernel_shape, quick)``: the budgets ``sparseconv compare`` tries
  on a layer, as (label, params) pairs (an empty list where the family
  cannot represent the layer).

How an operator runs in torch is declared on its class, as the name of a
:mod:`sparseconv.torch.modules` class (``torch_module = "QuantConv2d"``) or
``"package.module:Class"`` for a module class defined elsewhere; ``None``
runs its dense weight. ``sparseconv.torch`` (``operator_conv2d``,
``from_operator``, ``from_conv``, ``compress``), ``compare`` and the CLI read
this registry, so a new family touches no other file::

    import sparseconv as sc
    sc.registry.register(sc.registry.Family(
        "half", build=lambda w, keep=0.5: ..., operators=(MyWeight,),
        sweep=lambda kernel_shape, quick: [("keep 50%", {"keep": 0.5})]))
"""

from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Family", "families", "family", "names", "register", "unregister"]

_FAMILIES = {}


@dataclass(frozen=True)
class Family:
    """A compression family: how to build it, what it makes, which budgets ``compare`` sweeps.

    Attributes
    ----------
    name : str
        The method string (``from_conv(conv, name)``, ``compare --families name``).
    build : callable
        ``build(weight, **params) -> WeightOperator``, weight (C_out, C_in, kH, kW).
    operators : tuple of type
        The operator classes ``build`` returns.
    sweep : callable, optional
        ``sweep(kernel_shape, quick) -> [(label, params), ...]``, most expensive
        budget first; None: the family is not part of ``compare``.
    summary : str
        One line for listings (``sparseconv compare --help``, the docs).
    requires : callable, optional
        ``requires(kernel_shape) -> str or None``: why the family cannot
        represent a layer of that shape (``compare`` reports it), or None.
    keeps_zeros : bool
        Its operators cost what the weight's nonzero entries cost (a sparse
        format), so a grouped layer's zero blocks stay free; ``compare``
        skips the other families on depthwise layers, where they would run
        the dense C_in x C_in kH kW block-diagonal matrix.
    """

    name: str
    build: Callable
    operators: tuple
    sweep: Optional[Callable] = None
    summary: str = ""
    requires: Optional[Callable] = None
    keeps_zeros: bool = False

    def cannot(self, kernel_shape, quick=False):
        """Why this family sweeps nothing on a layer of ``kernel_shape`` (None where it sweeps something)."""
        shape = tuple(int(v) for v in kernel_shape)
        reason = None if self.requires is None else self.requires(shape)
        if reason is None and not self.points(shape, quick):
            reason = "no budget of this family fits a {}x{}x{}x{} layer".format(*shape)
        return reason

    def points(self, kernel_shape, quick=False):
        """The (label, params) budgets for a layer of ``kernel_shape`` (none without a sweep)."""
        return [] if self.sweep is None else list(self.sweep(tuple(int(v) for v in kernel_shape), bool(quick)))


def register(family):
    """Add ``family`` to the registry (its name must be new); return it."""
    if not isinstance(family, Family):
        raise TypeError(f"family must be a sparseconv.registry.Family, got {type(family).__name__}")
    if not isinstance(family.name, str) or not family.name.isidentifier():
        raise ValueError(f"a family's name must be an identifier string, got {family.name!r}")
    if family.name in _FAMILIES:
        raise ValueError(f"a family named {family.name!r} is already registered")
    if not callable(family.build):
        raise TypeError(f"family {family.name!r}: build must be callable")
    _FAMILIES[family.name] = family
    return family


def unregister(name):
    """Remove the family called ``name`` (for tests and experiments); return it."""
    return _FAMILIES.pop(family(name).name)


def families():
    """Every registered family, in the order they were registered."""
    return tuple(_FAMILIES.values())


def names():
    """The registered families' names, in order."""
    return tuple(_FAMILIES)


def family(name):
    """The family called ``name``; ValueError listing the known ones otherwise."""
    if not isinstance(name, str) or name not in _FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose from {list(_FAMILIES)}")
    return _FAMILIES[name]
