"""Pictures of the algebra: the sparsity pattern of every factor of an operator.

matplotlib is imported when a function here is called, not when sparseconv is.
"""

__all__ = ["structure"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("sparseconv.plot needs matplotlib: pip install matplotlib") from err
    return plt


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
