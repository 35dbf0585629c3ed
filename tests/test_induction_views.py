"""The induction lab in the app (issue #16): composition scores, the figure builders on
hand-made numbers, a non-induction run's fallbacks (fast tier), and every lab view through
Dash's callback endpoint over two real small induction runs (slow tier: it trains them)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import numpy as np
import pytest
from dash import Patch
from plotly.utils import PlotlyJSONEncoder

from interp_app.core import induction as m
from interp_app.core.analyzer import Analyzer
from interp_app.core.induction_views import (
    HeldOut,
    composition,
    is_induction_run,
    metric_options,
)
from interp_app.core.selection import Selection
from interp_app.core.store import RunStore
from interp_app.panels import compare_runs, induction
from interp_app.panels import composition as composition_panel
from interp_app.panels.base import Context
from interp_app.panels.compare_runs import Curve, compare_runs_figure, default_runs
from interp_app.panels.induction_metrics import head_metric
from interp_app.server.app import create_app
from interp_app.ui.render import clean_options, fields, fingerprint, update_panel
from tests.dash_client import DashClient, decode_array
from training import checkpoint as ckpt
from training.cli import main as train_main
from training.model.config import ModelConfig
from training.model.params import abstract_model, flat_params
from training.run_meta import external_metadata


def _layer(rng, d: int, h: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rng.normal(size=(d, 3, h, k)), rng.normal(size=(h, k, d)), rng.normal(size=d)


def _params(layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for i, (w_qkv, w_o, scale) in enumerate(layers):
        out[f"blocks.{i}.attn.w_qkv"], out[f"blocks.{i}.attn.w_o"] = w_qkv, w_o
        out[f"blocks.{i}.ln1.scale"] = scale
    return out


def test_composition_is_the_definition_for_every_earlier_layer():
    """The factored scores equal ``induction.composition_scores`` (D x D products), for
    the heads of both earlier layers of a 3-layer model, rows layer by layer."""
    rng = np.random.default_rng(0)
    layers = [_layer(rng, 24, 3, 8) for _ in range(3)]
    got = composition(_params(layers), 2)
    want = np.concatenate([m.composition_scores(layers[i], layers[2]) for i in (0, 1)], axis=1)
    assert got.shape == (3, 6, 3)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_composition_of_hand_set_heads():
    """A layer-0 head writing along u = e1 - e2 what it reads from u, and a layer-1 head
    whose key reads u and whose query and value read e3 - e4 (both orthogonal to u and to
    the all-ones direction LayerNorm centres away): K-composition 1, Q and V 0, exactly."""
    d = 4
    u, w = np.array([1.0, -1, 0, 0]), np.array([0, 0, 1.0, -1])
    first = np.zeros((d, 3, 1, 1)), u.reshape(1, 1, d), np.ones(d)
    first[0][:, 2, 0, 0] = u  # V reads u
    second = np.zeros((d, 3, 1, 1)), w.reshape(1, 1, d), np.ones(d)
    second[0][:, 0, 0, 0] = w  # Q reads w
    second[0][:, 1, 0, 0] = 2 * u  # K reads u (any length)
    second[0][:, 2, 0, 0] = w  # V reads w
    got = composition(_params([first, second]), 1)
    np.testing.assert_allclose(got[:, 0, 0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(m.composition_scores(first, second)[:, 0, 0], [0, 1, 0], atol=1e-12)


def test_a_head_that_writes_nothing_composes_with_nothing():
    rng = np.random.default_rng(1)
    layers = [_layer(rng, 16, 2, 4) for _ in range(2)]
    layers[0][1][1] = 0.0  # head L0H1's output projection is zero
    got = composition(_params(layers), 1)
    assert np.all(got[:, 1] == 0.0) and np.all(got[:, 0] > 0)  # 0, not NaN


def _heldout() -> HeldOut:
    """Three steps; the repeated-part loss makes half its drop by step 10."""
    induction_scores = np.zeros((3, 2, 2))
    induction_scores[:, 1, 0] = [0.05, 0.5, 0.9]
    return HeldOut(
        steps=[0, 10, 20],
        repeat_loss=np.array([3.0, 2.0, 1.0]),
        by_position=np.array([[4.0, 4.0, 4.0, 4.0], [4.0, 3.0, 3.0, 2.0], [4.0, 3.0, 2.0, 1.0]]),
        icl=np.array([0.0, -1.0, -3.0]),
        heads={"induction": induction_scores, "duplicate": 0 * induction_scores},
        early=1,
    )


def test_heldout_phase_change_and_one_step():
    data = _heldout()
    assert data.phase_change() == 10
    assert data.at(20)["induction"][1, 0] == 0.9 and data.at(5) is None


def test_induction_curves_figure():
    data = _heldout()
    fig = induction.induction_curves_figure(data, 20)
    loss, icl, heat = fig["data"]
    assert list(loss["y"]) == [3.0, 2.0, 1.0] and list(icl["y"]) == [0.0, -1.0, -3.0]
    np.testing.assert_array_equal(heat["z"], data.by_position.T)  # positions x checkpoints
    assert heat["xaxis"] == "x2" and list(heat["customdata"][0]) == [0, 10, 20]
    phase, selected = fig["layout"]["shapes"]
    assert (phase["x0"], phase["line"]["dash"]) == (1, "dash")  # index of step 10
    assert selected["x0"] == 2
    assert "step 20: ICL -3.00, repeated-part loss 1.00" in fig["layout"]["title"]["text"]
    title, shapes = induction.curves_overlay(data, 0)
    assert "step 0: ICL +0.00" in title and shapes[-1]["x0"] == 0


def test_composition_figure_frames_the_selected_head():
    scores = np.arange(12, dtype=float).reshape(3, 2, 2) / 12
    reader = composition_panel.composition_figure(scores, 1, 2, (1, 1), 30)
    assert [t["xaxis"] for t in reader["data"]] == ["x", "x2", "x3"]
    np.testing.assert_array_equal(reader["data"][1]["z"], scores[1])  # K in the middle
    assert reader["data"][0]["y"] == ["L0H0", "L0H1"] and reader["data"][0]["x"] == [
        "L1H0",
        "L1H1",
    ]
    assert reader["data"][0]["zmax"] == pytest.approx(11 / 12)
    columns = reader["layout"]["shapes"]
    assert len(columns) == 3 and all((s["x0"], s["x1"]) == (0.5, 1.5) for s in columns)
    writer = composition_panel.composition_figure(scores, 1, 2, (0, 1), 30)
    rows = writer["layout"]["shapes"]
    assert all((s["y0"], s["y1"]) == (0.5, 1.5) for s in rows)
    assert (
        writer["layout"]["title"]["text"] == "Composition into layer 1 at step 30 — selected L0H1"
    )
    assert composition_panel.later_layer(0, 2) == 1 and composition_panel.later_layer(3, 4) == 3


def _plain(value: Any) -> Any:
    """What the browser receives: Plotly's JSON (arrays as lists)."""
    return json.loads(json.dumps(value, cls=PlotlyJSONEncoder))


def _patched(figure: dict, patch: Patch) -> dict:
    """``figure`` with a Dash Patch's assignments applied, as the browser applies them."""
    out = _plain(figure)
    for op in patch.to_plotly_json()["operations"]:
        assert op["operation"] == "Assign", op
        *path, last = op["location"]
        node = out
        for key in path:
            node = node.setdefault(key, {})
        node[last] = _plain(op["params"]["value"])
    return out


def _random_run(root, name: str, cfg: ModelConfig) -> None:
    """A run of random weights at steps 10 and 20 (numpy only: nothing to compile)."""
    run = ckpt.run_dir(root, name)
    run.mkdir(parents=True)
    meta = external_metadata(cfg, {"tokenizer": {"kind": "bytes"}}, {"kind": "test"})
    ckpt.write_json_atomic(run / ckpt.RUN_FILE, meta)
    template, rng = abstract_model(cfg)[1], np.random.default_rng(0)
    for step in (10, 20):
        state = jax.tree.map(lambda a: rng.normal(0, 0.3, a.shape).astype(a.dtype), template)
        ckpt.save_step(run, step, flat_params(state), {"step": step, "valid_loss": None})


def _render_composition(analyzer, run: str, sel: Selection, before: dict | None):
    """The render callback's work for the composition panel alone: (its outputs, the
    fields' prints it remembers, the panel's memory), as ``Renderer.draw`` does it."""
    steps = analyzer.store.steps(run)
    options = clean_options({}, analyzer.store.info(run).model.context, steps)
    prints = {k: fingerprint([v]) for k, v in fields(sel, options, [run], steps, set()).items()}
    known = before["fields"] if before else {}
    changed = {k for k, v in prints.items() if known.get(k) != v}
    ctx = Context(analyzer, sel, steps, set(), options, changed)
    memory = before["panel"] if before else None
    out, memory = update_panel(composition_panel.PANEL, ctx, prints, memory)
    return out, {"fields": prints, "panel": memory}


def test_a_head_click_moves_only_the_composition_frame(tmp_path):
    """Same step, another head: the panel answers with a Patch of its title and frame only
    (with two layers every head reads into layer 1); three layers and a head of another
    layer: the heatmaps and height come too (the later layer shown may change). Either way
    the patched figure is the figure a full drawing gives; a step change draws in full."""
    slot = composition_panel.PANEL.figure
    two = ModelConfig(vocab_size=260, n_layers=2, n_heads=2, d_model=16, d_mlp=32, context=16)
    for name, cfg in (("two", two), ("deep", dataclasses.replace(two, n_layers=3))):
        _random_run(tmp_path, name, cfg)
    analyzer = Analyzer(RunStore(tmp_path))
    sel = Selection("two", 20, "the cat", 1, "t", 1, 0)
    out, seen = _render_composition(analyzer, "two", sel, None)
    drawn = out[slot]
    assert isinstance(drawn, dict) and "selected L1H0" in drawn["layout"]["title"]["text"]
    full_bytes = len(json.dumps(drawn, cls=PlotlyJSONEncoder))
    for layer, head in ((1, 1), (0, 1), (0, 0)):  # a head of the same layer, then layer 0
        sel = sel.with_(layer=layer, head=head)
        out, seen = _render_composition(analyzer, "two", sel, seen)
        assert list(out) == [slot] and isinstance(out[slot], Patch), out
        ops = out[slot].to_plotly_json()["operations"]
        assert [op["location"] for op in ops] == [["layout", "title", "text"], ["layout", "shapes"]]
        assert len(json.dumps(ops)) < full_bytes / 3, (len(json.dumps(ops)), full_bytes)
        drawn = _patched(drawn, out[slot])
        fresh = _render_composition(analyzer, "two", sel, None)[0][slot]
        assert drawn == _plain(fresh), (layer, head)
    assert "selected L0H0" in drawn["layout"]["title"]["text"]
    out, _ = _render_composition(analyzer, "two", sel.with_(step=10), seen)
    assert isinstance(out[slot], dict) and "at step 10" in out[slot]["layout"]["title"]["text"]

    sel = Selection("deep", 20, "the cat", 1, "t", 2, 0)
    out, seen = _render_composition(analyzer, "deep", sel, None)
    drawn = out[slot]
    assert drawn["layout"]["title"]["text"].startswith("Composition into layer 2")
    for layer, head, data in ((2, 1, False), (1, 0, True), (1, 1, False), (0, 1, True)):
        sel = sel.with_(layer=layer, head=head)
        out, seen = _render_composition(analyzer, "deep", sel, seen)
        assert isinstance(out[slot], Patch)
        sent = [op["location"][:2] for op in out[slot].to_plotly_json()["operations"]]
        assert (["data"] in sent) is data and (["layout", "height"] in sent) is data, sent
        drawn = _patched(drawn, out[slot])
        fresh = _render_composition(analyzer, "deep", sel, None)[0][slot]
        assert drawn == _plain(fresh), (layer, head)
    assert len(drawn["data"][0]["y"]) == 2 and drawn["data"][0]["x"] == ["L1H0", "L1H1"]


def test_compare_runs_figure_marks_each_phase_change():
    a = Curve("ind-s0", "L1H0", [0, 10, 20], np.array([0.0, 0.4, 0.9]), 10)
    b = Curve("ind-s1", "L1H0", [0, 20, 40], np.array([0.0, 0.1, 0.8]), None)
    fig = compare_runs_figure([a, b], "ind-s0", 20, "induction score of L1H0")
    line_a, ring_a, line_b = fig["data"]
    assert line_a["name"] == "ind-s0 L1H0 (phase change at 10)" and line_a["line"]["width"] == 3
    assert (ring_a["x"], ring_a["y"]) == ([10], [0.4])
    assert line_b["name"] == "ind-s1 L1H0 (no phase change)" and line_b["x"] == [0, 20, 40]
    assert line_b["customdata"][1] == ["ind-s1", 20]
    phase, selected = fig["layout"]["shapes"]
    assert phase["x0"] == 10 and phase["line"]["dash"] == "dash"
    assert phase["line"]["color"] == line_a["line"]["color"]
    assert selected["x0"] == 20 and "dash" not in selected["line"]


def test_default_runs_and_the_pickers_values():
    runs = ["fruits", "ind-s0", "ind-s1", "ind-s10", "indx-s0", "other"]
    assert default_runs("ind-s1", runs) == ["ind-s0", "ind-s1", "ind-s10"]
    assert default_runs("other", runs) == ["other"]
    assert compare_runs.clean_runs(["a", 3, "a", "b"], 0, []) == ["a", "b"]
    assert compare_runs.clean_runs("a", 0, []) == []
    assert [o["value"] for o in metric_options(True)][-3:] == ["induction", "duplicate", "previous"]
    assert "induction" not in [o["value"] for o in metric_options(False)]


def test_clicks_write_the_selection():
    raw = {"run": "ind-s0", "step": 0, "head": "L1H0"}
    assert compare_runs.click({"customdata": ["ind-s0", 20]}, raw, []) == {**raw, "step": 20}
    other = compare_runs.click({"customdata": ["ind-s1", 40]}, raw, [])
    assert other == {**raw, "run": "ind-s1", "step": 40, "pos": None, "target": None}
    assert compare_runs.click({"customdata": "x"}, raw, []) is None
    assert composition_panel.click({"customdata": "L1H1"}, raw, []) == {**raw, "head": "L1H1"}
    assert induction.click({"customdata": 10, "x": 1}, raw, [0, 10, 20]) == {**raw, "step": 10}


def _context(root, run: str, metric: str) -> Context:
    analyzer = Analyzer(RunStore(root))
    steps = analyzer.store.steps(run)
    sel = Selection(run, steps[-1], "i like", 1, "like", 1, 0)
    options = clean_options({"metric": metric}, analyzer.store.info(run).model.context, steps)
    return Context(analyzer, sel, steps, set(), options, set())


def test_a_run_without_held_out_data_hides_the_lab(small_root):
    """The fruits-style run: the held-out metrics fall back to DLA with one notice, the lab
    cards are hidden (their figures say why), composition still shows (weights only)."""
    ctx = _context(small_root[0], "small", "induction")
    assert not is_induction_run(ctx.analyzer.store, "small")
    assert head_metric(ctx) == "dla" and head_metric(ctx) == "dla"
    assert len(ctx.notes) == 1 and "not trained with --task induction" in ctx.notes[0]
    drawn = induction.draw(ctx)
    assert drawn[(induction.INDUCTION_COLUMN, "style")] == {"display": "none"}
    assert "induction" not in [o["value"] for o in drawn[("metric-picker", "options")]]
    assert "Not an induction run" in str(drawn[induction.PANEL.figure]["layout"]["annotations"])
    hidden = compare_runs.draw(ctx)
    assert hidden[(compare_runs.COMPARE_RUNS_COLUMN, "style")] == {"display": "none"}
    fig = composition_panel.draw(ctx)[composition_panel.PANEL.figure]
    params = ctx.analyzer.store.params("small", ctx.sel.step)
    layers = [
        tuple(params[f"blocks.{i}.{n}"] for n in ("attn.w_qkv", "attn.w_o", "ln1.scale"))
        for i in (0, 1)
    ]
    np.testing.assert_allclose(
        [t["z"] for t in fig["data"]], m.composition_scores(*layers), rtol=1e-6, atol=1e-9
    )


# ---- over real induction runs (slow tier: trains two seeds through interp-train) ----


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    argv = ["--task", "induction", "--root", str(root), "--run", "lab", "--seeds", "0,1"]
    argv += ["--steps", "120", "--dense-every", "20", "--dense-until", "120", "--quiet"]
    assert train_main(argv) == 0
    return root


def _a(value) -> np.ndarray:
    """A figure's array as the browser gets it (typed array or list) -> numpy."""
    return decode_array(value)


def test_the_apps_lab_views_are_the_lab_metrics(lab_root):
    """Every lab view through Dash's endpoint equals ``induction_run``'s own evaluation
    of the same checkpoints (its own loading and capture); clicks and the slider follow."""
    from interp_app.core.induction_run import LabRun, step_metrics, timeline

    client = DashClient(create_app(lab_root))
    sel = client.select(None, search="?run=lab-s0")["selection"]["data"]
    r = client.render(sel, metric="induction")
    tl = timeline(lab_root, "lab-s0")
    last = step_metrics(LabRun.open(lab_root, "lab-s0"), int(tl.steps[-1]))
    grid = r["head-grid"]["figure"]
    assert "induction score (held-out" in grid["layout"]["title"]["text"]
    np.testing.assert_allclose(_a(grid["data"][0]["z"]), last["induction"], rtol=1e-6, atol=1e-7)
    heads = _a(r["head-timeline"]["figure"]["data"][0]["z"])  # [L*H, S]
    np.testing.assert_allclose(heads, tl.induction.reshape(len(tl.steps), -1).T, atol=1e-6)
    curves = r["induction-curves"]["figure"]
    np.testing.assert_allclose(_a(curves["data"][0]["y"]), tl.repeat_loss, rtol=1e-6)
    np.testing.assert_allclose(_a(curves["data"][1]["y"]), tl.icl, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_a(curves["data"][2]["z"]), tl.by_position.T, rtol=1e-6)
    comp = r["composition"]["figure"]
    for k in range(3):
        np.testing.assert_allclose(_a(comp["data"][k]["z"]), tl.composition[-1, k], rtol=1e-6)
    compare = r["compare-runs"]["figure"]
    names = [t["name"] for t in compare["data"] if t.get("showlegend", True)]
    phase = m.crossing_step(tl.steps, tl.repeat_loss, 0.5)
    assert names[0] == f"lab-s0 L1H0 (phase change at {phase})" and names[1].startswith("lab-s1")
    np.testing.assert_allclose(_a(compare["data"][0]["y"]), tl.induction[:, 1, 0], atol=1e-6)
    assert r["compare-runs-column"]["style"] == {} and r["induction-curves-column"]["style"] == {}
    assert {o["value"] for o in r["compare-runs-picker"]["options"]} == {"lab-s0", "lab-s1"}

    # a head picked in the grid: the composition frames its row, compare follows it
    picked = client.select("grid-click.data", {"head": "L0H1", "shift": False}, sel)
    sel2 = picked["selection"]["data"]
    r2 = client.render(sel2, metric="previous")
    assert r2["composition"]["figure"]["layout"]["title"]["text"].endswith("selected L0H1")
    assert "previous-token score (held-out sequences) of L0H1" in str(
        r2["compare-runs"]["figure"]["layout"]["title"]["text"]
    )
    np.testing.assert_allclose(
        _a(r2["compare-runs"]["figure"]["data"][0]["y"]), tl.previous[:, 0, 1], atol=1e-6
    )
    # the ICL chart's click picks a step, the compare chart's another run
    step = int(tl.steps[2])
    moved = client.select("induction-curves.clickData", {"points": [{"customdata": step}]}, sel)
    assert moved["selection"]["data"]["step"] == step
    other = client.select(
        "compare-runs.clickData", {"points": [{"customdata": ["lab-s1", step]}]}, sel
    )
    assert other["selection"]["data"]["run"] == "lab-s1"
    assert other["selection"]["data"]["step"] == step


def test_the_step_slider_moves_the_lab_marks_without_redrawing(lab_root):
    """A step change patches the ICL and compare charts' marks (title and shapes only) and
    redraws the composition at that step."""
    from interp_app.core.induction_run import timeline

    tl = timeline(lab_root, "lab-s1")
    client = DashClient(create_app(lab_root))
    sel = client.select(None, search="?run=lab-s1")["selection"]["data"]
    first = client.render(sel, metric="induction")
    step = int(tl.steps[3])
    moved = client.render({**sel, "step": step}, "induction", 0, first["rendered"]["data"])
    for panel in ("induction-curves", "compare-runs"):
        patch = moved[panel]["figure"]
        assert "__dash_patch_update" in patch, panel
        places = {tuple(op["location"]) for op in patch["operations"]}
        assert places == {("layout", "title", "text"), ("layout", "shapes")}, places
        shapes = next(op for op in patch["operations"] if op["location"] == ["layout", "shapes"])
        marker = shapes["params"]["value"][-1]
        assert marker["x0"] == (3 if panel == "induction-curves" else step)  # index vs step
    comp = moved["composition"]["figure"]
    assert f"at step {step}" in comp["layout"]["title"]["text"]
    np.testing.assert_allclose(_a(comp["data"][1]["z"]), tl.composition[3, 1], rtol=1e-6)


def test_forged_lab_inputs_never_get_a_5xx(lab_root):
    """Hostile clicks on the three lab charts and hostile values of their options: each is
    ignored or resolved with a notice (a run that does not exist, a step that is no number)."""
    from tests.test_hardening_app import HOSTILE

    client = DashClient(create_app(lab_root))
    sel = client.select(None, search="?run=lab-s0")["selection"]["data"]
    clicks = [{"points": [{"customdata": c}]} for c in (["nope", 20], ["lab-s1", "x"], "L9H9")]
    for source in ("compare-runs", "composition", "induction-curves"):
        for value in HOSTILE + clicks:
            client.select(f"{source}.clickData", value, sel)  # asserts a 200 or a 204
    for option in ("compare-runs-picker.value", "compare-runs-head.value", "metric-picker.value"):
        for value in HOSTILE:
            client.call("run-picker.options", {"selection.data": sel, option: value}, [option])
    moved = client.select("compare-runs.clickData", {"points": [{"customdata": ["nope", 20]}]}, sel)
    assert "run 'nope' does not exist" in str(moved["notices"])
