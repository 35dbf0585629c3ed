"""The circuit panel's figures and clicks, on a hand-made record (numbers chosen so the
expected drawing is known)."""

from __future__ import annotations

import numpy as np
import pytest

from interp_app.core.circuits_graph import Graph
from interp_app.core.circuits_record import Circuits
from interp_app.panels import REGISTRY
from interp_app.panels import circuit as panel
from interp_app.panels.circuit_figures import (
    circuit_graph_figure,
    circuit_timeline_figure,
    faithfulness_figure,
    node_positions,
    shown_edges,
    strongest_over_training,
)


def _record(mlp: bool = True) -> Circuits:
    g = Graph(2, 2, mlp=mlp)
    r, s = g.edge_index
    n = g.n_edges
    steps = np.array([0, 100, 200])
    exact = np.zeros((3, n), np.float32)
    exact[2, g.edge("L0H1 -> L1H1.k")] = -3.0
    exact[2, g.edge("L1H1 -> logits")] = 2.0
    exact[1, g.edge("embed -> logits")] = 0.5
    faith = np.tile(np.linspace(-1.0, 1.0, n + 1, dtype=np.float32), (3, 1))
    return Circuits(
        run="hand",
        metric="logit_diff",
        description="logit('a') − logit('b') at position 2",
        clean=("x", "y", "z"),
        corrupt=("x", "w", "z"),
        target="a",
        answer="b",
        pos=2,
        ig_steps=5,
        senders=g.senders,
        receivers=g.receivers,
        edges=g.edges,
        unreadable=(),
        steps=steps,
        edge_sender=s,
        edge_receiver=r,
        exact=exact,
        eap=exact * 0.5,
        eap_ig=exact * 0.9,
        clean_metric=np.ones(3, np.float32),
        corrupt_metric=-np.ones(3, np.float32),
        faith_exact=faith,
        faith_ig=faith,
    )


def test_the_panel_is_registered():
    assert panel.PANEL in REGISTRY


def test_nodes_sit_in_layer_columns():
    pos = node_positions(_record())
    assert pos["embed"] == (0.0, 0.0) and pos["logits"] == (5.0, 0.0)
    assert pos["L0H0"] == (1.0, -0.5) and pos["L0H1"] == (1.0, 0.5)
    assert pos["L0 MLP"] == (2.0, 0.0) and pos["L1H1"] == (3.0, 0.5)
    assert node_positions(_record(mlp=False))["logits"] == (3.0, 0.0)  # attention-only


def test_the_graph_draws_the_top_edges_by_score():
    c = _record()
    fig = circuit_graph_figure(c, 200, "exact", 2, "L1H1")
    edges, nodes = fig["data"][:-1], fig["data"][-1]
    assert [t["customdata"][0] for t in edges] == ["L1H1 -> logits", "L0H1 -> L1H1.k"]
    widths = {t["customdata"][0]: t["line"]["width"] for t in edges}
    assert widths == {"L0H1 -> L1H1.k": 8.0, "L1H1 -> logits": 1.0 + 7.0 * 2 / 3}
    assert edges[1]["line"]["color"] == "#c0392b" and edges[0]["line"]["color"] == "#2e6fb0"
    # the k input enters L1H1 at its middle, level with the node
    assert edges[1]["y"][-1] == 0.5 and edges[1]["x"][-1] == pytest.approx(3 - 0.12)
    assert nodes["customdata"][nodes["customdata"].index("L1H1")] == "L1H1"
    assert "top 2 of 46 edges by |exact path patching|" in fig["layout"]["title"]["text"]
    assert list(shown_edges(c.exact[2], 100)[:2]) == [
        c.edges.index("L0H1 -> L1H1.k"),
        c.edges.index("L1H1 -> logits"),
    ]


def test_the_timeline_lists_the_strongest_edges_over_training():
    c = _record()
    top = [c.edges[e] for e in strongest_over_training(c, "exact", 3)]
    assert top == ["L0H1 -> L1H1.k", "L1H1 -> logits", "embed -> logits"]
    fig = circuit_timeline_figure(c, 100, "eap_ig")
    heat = fig["data"][0]
    assert heat["y"][:2] == ["L0H1 -> L1H1.k", "L1H1 -> logits"]
    np.testing.assert_allclose(np.asarray(heat["z"])[0], [0, 0, -2.7], rtol=1e-6)
    assert fig["layout"]["shapes"][0]["x0"] == 0.5  # the selected step, index 1


def test_the_faithfulness_curve_is_the_recovered_share():
    c = _record()
    fig = faithfulness_figure(c, 200)
    np.testing.assert_allclose(fig["data"][0]["y"], np.linspace(0, 1, 47), atol=1e-6)
    assert "recovered" in fig["layout"]["title"]["text"]


@pytest.mark.parametrize(
    "customdata, head",
    [
        ("L1H0", "L1H0"),
        ("L0H1 -> L1H1.k", "L1H1"),
        ("L1H0 -> logits", "L1H0"),
        ("embed -> L0 MLP", None),
        ("L0 MLP", None),
        ("logits", None),
        (7, None),
    ],
)
def test_a_click_selects_a_head(customdata, head):
    out = panel.click_node({"customdata": customdata}, {"run": "r"}, [0])
    assert (out or {}).get("head") == head


def test_a_timeline_click_picks_the_step():
    assert panel.click_step({"customdata": 200, "x": 2}, {}, [0, 100, 200]) == {"step": 200}
    assert panel.click_step({"customdata": 5}, {}, [0, 100]) is None


def test_the_panel_computes_nothing_until_switched_on():
    """The page and every other panel stay as fast as before: scoring every edge at every
    step is asked for, not done on each page load (the analyzer is never touched)."""
    from interp_app.core.selection import Selection
    from interp_app.panels.base import Context

    ctx = Context(
        None,
        Selection("r", 0, "a b", 1, "a", 0, 0),
        [0],
        set(),
        {"circuit_on": False, "circuit_method": "exact", "circuit_top_k": "10"},
        set(),
    )
    out = panel.draw(ctx)
    text = out[panel.PANEL.figure]["layout"]["annotations"][0]["text"]
    assert text.startswith("Circuits are off")
    clean = panel.PANEL.options["circuit_on"].clean
    assert (
        clean(True, 0, []) is True and clean("yes", 0, []) is False and clean(None, 0, []) is False
    )
