"""The 3D views: stacks, attention lines, nearest tokens, export (on the short ``small`` run);
what the trained default run reads there (``chili``, the article's attention: slow tier)."""

import numpy as np
import pytest

from interp_app.core.analyzer import Analyzer
from interp_app.core.store import RunStore
from interp_app.core.view import compute_forward, resolve
from interp_app.panels.figures3d import forward_figure
from interp_app.server.app import create_app
from tests.dash_client import DashClient

TWELVE = "i like spicy so i like chili and lemon is so sour"


@pytest.fixture(scope="module")
def store(default_root):
    return Analyzer(RunStore(default_root[0]))


@pytest.fixture(scope="module")
def small(small_root):
    return Analyzer(RunStore(small_root[0]))


@pytest.fixture(scope="module")
def client(small_root):
    return DashClient(create_app(small_root[0]))


def _traces(figure, meta):
    return [t for t in figure["data"] if t.get("meta") == meta]


def test_final_like_is_read_as_chili_and_the_rankings_are_reported(store):
    sel, _ = resolve(store, {})
    assert (sel.step, sel.pos, sel.prompt) == (10000, 5, "i like spicy so i like")
    fwd = compute_forward(store, sel)
    vocab = list(fwd.vocab)
    # the prediction: the final LayerNorm output's dot product with each embedding
    assert vocab[int(fwd.pred_ids[0])] == "chili"
    prompt = store.encode(sel.run, sel.prompt)
    logits = np.asarray(store.capture(sel.run, sel.step, prompt).logits[0, sel.pos])
    np.testing.assert_allclose(fwd.pred_dots, logits[fwd.pred_ids], rtol=1e-5, atol=1e-5)
    # the cosine rankings: one per layer boundary and one of the final LN output, best first
    n_layers = fwd.patterns.shape[0]
    assert fwd.near_ids.shape == fwd.near_cos.shape == (n_layers + 2, 5)
    assert np.all(np.diff(fwd.near_cos, axis=1) <= 0)
    assert np.all(np.abs(fwd.near_cos) <= 1 + 1e-9)
    wte, final = fwd.wte, fwd.final[sel.pos]
    best = vocab.index(vocab[int(fwd.near_ids[-1, 0])])
    cos = wte[best] @ final / np.linalg.norm(wte[best]) / np.linalg.norm(final)
    np.testing.assert_allclose(fwd.near_cos[-1, 0], cos)


def test_forward_view_has_a_stack_per_token_and_layer(small):
    sel, _ = resolve(small, {"prompt": TWELVE})
    fwd = compute_forward(small, sel)
    assert len(fwd.words) == 12
    fig = forward_figure(fwd, sel, 0.3)
    assert len(_traces(fig, "stack")) == 12 * 3
    assert len(_traces(fig, "nearest")) == 1
    assert len(_traces(fig, "query")) == 1


def _lines(fig):
    return _traces(fig, "attn") + _traces(fig, "attn-strong")


def test_threshold_sets_the_lines_and_the_selected_head_is_strong(small):
    sel, _ = resolve(small, {"head": "L0H1"})
    fwd = compute_forward(small, sel)
    counts = []
    for threshold in (0.05, 0.3, 0.6, 0.95):
        fig = forward_figure(fwd, sel, threshold)
        weights = [float(t["hovertemplate"].split("weight ")[1][:5]) for t in _lines(fig)]
        assert min(weights) >= threshold  # the hover rounds: 0.0503 shows as 0.050
        counts.append(len(weights))
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    fig = forward_figure(fwd, sel, 0.3)
    strong = _traces(fig, "attn-strong")
    assert strong and {t["customdata"][0][0] for t in strong} == {"L0H1"}
    assert all(t["opacity"] == 1.0 for t in strong)
    faded = _traces(fig, "attn")
    assert faded and all(t["opacity"] < 0.5 for t in faded)
    assert "L0H1" not in {t["customdata"][0][0] for t in faded}


def test_final_like_attends_to_spicy_in_the_trained_run(store):
    """The article's observation: the final 'like' attends to 'spicy' in layer 0 (L0H1)."""
    sel, _ = resolve(store, {"head": "L0H1"})
    strong = _traces(forward_figure(compute_forward(store, sel), sel, 0.3), "attn-strong")
    assert any(
        t["customdata"][0] == ["L0H1", 5] and "'spicy'@2" in t["hovertemplate"] for t in strong
    )


def test_panels_through_the_endpoint_and_a_line_click(client):
    sel = client.select(None, search="")["selection"]["data"]
    out = client.call(
        "forward-3d.figure",
        {"selection-3d.data": sel, "attention-threshold.value": 0.3},
        ["selection-3d.data"],
    )
    fig, table = out["forward-3d"]["figure"], out["nearest-tokens"]["figure"]
    assert len(_traces(fig, "stack")) == 6 * 3
    shown = out["forward-key"]["data"]
    # another head: only the lines' styles and the title travel, as a Patch
    other = client.call(
        "forward-3d.figure",
        {"selection-3d.data": {**sel, "layer": 0, "head": 1}, "attention-threshold.value": 0.3},
        ["selection-3d.data"],
        {"forward-key.data": shown},
    )
    assert "nearest-tokens" not in other  # the table did not change
    ops = other["forward-3d"]["figure"]["operations"]
    metas = {
        tuple(op["location"]): op["params"]["value"] for op in ops if op["location"][-1] == "meta"
    }
    lines = [i for i, t in enumerate(fig["data"]) if str(t.get("meta")).startswith("attn")]
    assert sorted(loc[1] for loc in metas) == lines
    strong = [
        fig["data"][loc[1]]["customdata"][0][0] for loc, m in metas.items() if m == "attn-strong"
    ]
    assert strong and set(strong) == {"L0H1"}
    assert client.last_bytes < len(str(fig)) / 10
    cells = table["data"][0]["cells"]["values"]
    analyzer = client.app.server.config["ANALYZER"]
    fwd = compute_forward(analyzer, resolve(analyzer, {})[0])  # the default view, as sel
    assert cells[1][-1] == fwd.vocab[int(fwd.pred_ids[0])]  # the prediction row: its top word
    line = _traces(fig, "attn")[0]
    head, query = line["customdata"][0]
    clicked = client.select(
        "forward-3d.clickData",
        {"points": [{"customdata": line["customdata"][0], "curveNumber": 3}]},
        current=sel,
    )["selection"]["data"]
    assert (f"L{clicked['layer']}H{clicked['head']}", clicked["pos"]) == (head, query)
    emb = client.call(
        "embedding-stacks.figure",
        {"selection-3d.data": sel, "embedding-set.value": "tastes"},
        ["embedding-set.value"],
        {"embedding-key.data": None},
    )
    names = [t["name"] for t in emb["embedding-stacks"]["figure"]["data"] if t["type"] == "mesh3d"]
    assert names == [
        "'juicy' embedding",
        "'sour' embedding",
        "'spicy' embedding",
        "'sweet' embedding",
    ]


def test_export_is_a_standalone_html_file(client):
    sel = client.select(None, search="")["selection"]["data"]
    out = client.call(
        "export-3d-file.data",
        {"export-3d.n_clicks": 1},
        ["export-3d.n_clicks"],
        {"selection.data": sel, "attention-threshold.value": 0.3},
    )
    data = out["export-3d-file"]["data"]
    assert data["filename"] == f"forward-small-step{sel['step']}-L1H0.html"
    page = data["content"]
    assert page.startswith("<!doctype html>") and "mesh3d" in page
    assert "<script src=" not in page  # plotly.js is inside: no network needed to open it
    assert len(page) > 1_000_000
