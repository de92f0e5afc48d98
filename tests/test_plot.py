"""plot.structure draws each factor's nonzero pattern and the product's."""

import numpy as np
import pytest

import sparseconv as sc


def test_structure_of_igcv1(tmp_path):
    op = sc.IGCV1.random(4, 2, seed=0)
    fig = sc.plot.structure(op)
    axes = fig.axes
    assert len(axes) == len(op.factors) + 1
    for ax, f in zip(axes, op.factors):
        np.testing.assert_array_equal(ax.images[0].get_array(), f.to_dense() != 0)
    np.testing.assert_array_equal(axes[-1].images[0].get_array(), op.to_dense() != 0)
    assert "product" in axes[-1].get_title()
    fig.savefig(tmp_path / "igcv1.png")
    assert (tmp_path / "igcv1.png").stat().st_size > 1000


def test_structure_of_a_single_operator():
    op = sc.block_diagonal(np.ones((8, 8, 3, 3)), 4)
    fig = sc.plot.structure(op)
    assert len(fig.axes) == 1
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (8, 72) and image.sum() == 8 * 18
    with pytest.raises(TypeError, match="WeightOperator"):
        sc.plot.structure(np.eye(3))


def test_every_family_has_its_own_style():
    styles = [sc.plot.family_style(name) for name in sc.registry.names()]
    assert len({tuple(sorted(st.items())) for st in styles}) == len(styles) == len(sc.registry.names())
    assert len({(st["color"], st["marker"]) for st in styles}) == len(styles)
    many = [f"design {i}" for i in range(30)]
    assert len({tuple(sorted(sc.plot.family_style(n, many).items())) for n in many}) == 30
    with pytest.raises(ValueError, match="name must be one of"):
        sc.plot.family_style("not a family")


def test_use_style_sets_the_palette():
    plt = sc.plot.use_style()
    assert plt.rcParams["axes.prop_cycle"].by_key()["color"][:3] == list(sc.plot.PALETTE[:3])
