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
    title = fig["layout"]["title"]["text"]
    assert "top 2 of 46 edges by |exact path patching|" in title
    # the selected head's drawn edges and their contributions, on the title's second line
    assert title.endswith("<br>L1H1: L0H1 -> L1H1.k -3.00; L1H1 -> logits +2.00")
    assert [t["opacity"] for t in edges] == [0.95, 0.95]
    assert (
        "none of its edges in the top 2"
        in circuit_graph_figure(c, 200, "exact", 2, "L0H0")["layout"]["title"]["text"]
    )
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


OPTIONS = {"circuit_on": True, "circuit_method": "exact", "circuit_top_k": "10"}


def test_a_head_click_moves_only_the_graphs_marks():
    """What a head click sends: the title, the edges' opacities and the node colours of the
    graph, equal to what a full drawing for that head holds; not the graph's data, the
    timeline or the faithfulness curve (40 KB of a head click on the article's model)."""
    from interp_app.ui.render import as_patch

    c = _record()
    marks = panel.head_marks(c, 200, OPTIONS, "L0H1")
    full = circuit_graph_figure(c, 200, "exact", 10, "L0H1")
    assert marks.title == full["layout"]["title"]["text"]
    assert "L0H1: L0H1 -> L1H1.k -3.00" in marks.title
    sets = dict(marks.sets)
    n_edges = len(full["data"]) - 1
    assert len(sets) == n_edges + 1
    for j, trace in enumerate(full["data"][:-1]):
        assert sets[("data", j, "opacity")] == trace["opacity"]
        assert trace["opacity"] == (0.95 if "L0H1" in trace["customdata"][0] else 0.3)
    assert sets[("data", n_edges, "marker", "color")] == full["data"][-1]["marker"]["color"]
    patch = as_patch(marks).to_plotly_json()["operations"]
    assert len(patch) == 2 + n_edges + 1  # title, shapes, one value per mark
    before = [full, circuit_timeline_figure(c, 200, "exact"), faithfulness_figure(c, 200)]
    assert len(str(patch)) < 0.15 * len(str(before))  # what a head click sent until now


def test_a_head_click_is_an_overlay_a_step_change_a_drawing():
    """The panel's contract (``ui.render.update_panel``): another head only overlays the
    graph; another step redraws all three figures."""
    from interp_app.core.selection import Selection
    from interp_app.panels.base import Context
    from interp_app.ui.render import update_panel

    p = panel.PANEL
    assert {"layer", "head"} <= p.overlay_on and not {"layer", "head"} & p.depends
    sel = Selection("r", 0, "a b", 1, "a", 0, 0)
    ctx = Context(None, sel, [0], set(), {**OPTIONS, "circuit_on": False}, set())
    prints = {k: "x" for k in p.depends | p.overlay_on}
    drawn, before = update_panel(p, ctx, prints, None)
    assert set(drawn) == set(p.outputs)
    moved, after = update_panel(p, ctx, {**prints, "head": "y", "layer": "y"}, before)
    assert list(moved) == [p.figure] and after[0] == before[0]
    redrawn, _ = update_panel(p, ctx, {**prints, "step": "y"}, before)
    assert set(redrawn) == set(p.outputs)
