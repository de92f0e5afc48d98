"""Pictures of the algebra, and the one style every figure of the docs, tutorials and tools shares.

- :func:`use_style`: the rcParams (grid, no top/right spines, small fonts) and
  the Okabe-Ito palette, colour-blind safe;
- :func:`family_style`: a colour and marker per compression family, distinct
  for every family the registry holds (9 colours x 11 markers, so the 11
  families never share a colour-marker pair);
- :func:`structure`: the sparsity pattern of every factor of an operator.

matplotlib is imported when a function here is called, not when sparseconv is.
"""

__all__ = ["MARKERS", "PALETTE", "family_style", "structure", "use_style"]

#: Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
#: one marker per family, so that families sharing a colour never share a marker too
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("sparseconv.plot needs matplotlib: pip install matplotlib") from err
    return plt


def use_style():
    """Set matplotlib's rcParams to the library's figure style (and return ``matplotlib.pyplot``)."""
    plt = _pyplot()
    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 9, "legend.fontsize": 7,
                         "axes.prop_cycle": plt.cycler(color=PALETTE)})
    return plt


def family_style(name, names=None):
    """``dict(color=..., marker=..., linestyle=...)`` for the family (or design) ``name``.

    Parameters
    ----------
    name : str
        A family's name (``"quantize"``) or any label in ``names``.
    names : sequence of str, optional
        The labels a figure shows, in order; default: the registry's
        families. The i-th gets colour i mod 9 and marker i mod 11, and a
        dashed line once the colours repeat, so no two share all three.
    """
    from . import registry

    names = list(registry.names() if names is None else names)
    if name not in names:
        raise ValueError(f"name must be one of {names}, got {name!r}")
    i = names.index(name)
    return dict(color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)],
                linestyle="-" if i < len(PALETTE) else "--")


def structure(op, figsize=None):
    """The nonzero pattern of every factor of ``op`` and of the matrix they multiply out to, side by side.

    Parameters
    ----------
    op : WeightOperator
        A :class:`sparseconv.ProductWeight` (IGCV1/2/3 included) shows its
        factors in the order of the formula, A_k ... A_1, then "=" the
        product; any other operator shows its own matrix.
    figsize : (width, height), optional

    Returns
    -------
    matplotlib.figure.Figure
        One panel per matrix, black where an entry is stored and nonzero.
        1x1 factors applied before the spatial one are drawn as their
        C x C matrices; in the product they act on every tap (A ⊗ I_S).
    """
    from .operator import WeightOperator
    from .product import ProductWeight

    if not isinstance(op, WeightOperator):
        raise TypeError(f"op must be a WeightOperator, got {type(op).__name__}")
    plt = _pyplot()
    panels = [(f, f.to_dense()) for f in op.factors] if isinstance(op, ProductWeight) else []
    panels.append((op, op.to_dense()))
    fig, axes = plt.subplots(1, len(panels), figsize=figsize or (2.6 * len(panels), 3.0), squeeze=False)
    for i, (ax, (f, dense)) in enumerate(zip(axes[0], panels)):
        ax.imshow(dense != 0, cmap="Greys", interpolation="nearest", vmin=0, vmax=1, aspect="auto")
        name = "product" if f is op and len(panels) > 1 else type(f).__name__
        ax.set_title(f"{name}\n{dense.shape[0]} x {dense.shape[1]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(panels) > 1 and i == len(panels) - 2:
            ax.text(1.08, 0.5, "=", transform=ax.transAxes, fontsize=16, va="center")
    fig.tight_layout()
    return fig
