"""Views at 144 heads and 128 tokens: what a head click recomputes and sends, the capped
figures (multiples of the top heads, pooled; the grid without cell text past 36 heads;
patterns as typed arrays) and the one-head token attributions against the step's metrics.

Runs here are written with random weights (``tests.external_runs``): no training."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from plotly.utils import PlotlyJSONEncoder

from interp_app.core import metrics
from interp_app.core.analyzer import Analyzer
from interp_app.core.heads import component_names
from interp_app.core.lean_step import lean_step, lens_window
from interp_app.core.prefetch import neighbours
from interp_app.core.selection import Selection
from interp_app.core.store import RunStore
from interp_app.core.view import View, compute_view, head_source_attr, resolve
from interp_app.panels import attention, head_grid, multiples, token_attributions
from tests.external_runs import CONFIG, write_run


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale-views")
    write_run(root, "ext", "bytes", prompt="the cat sat on the mat")
    return Analyzer(RunStore(root))


def test_one_head_token_attributions_equal_the_step_metrics(analyzer):
    """``head_source_attr`` (numpy, one head) is ``metrics.source_attributions`` (the
    jitted float64 step) for every head and query, and sums to the head's DLA."""
    sel, _ = resolve(analyzer, {"run": "ext"})
    prompt = analyzer.encode("ext", sel.prompt)
    cap = analyzer.capture("ext", sel.step, prompt)
    params = analyzer.store.params("ext", sel.step)
    target = analyzer.store.info("ext").tokenizer.index[sel.target]
    for pos in (0, prompt.length - 1):
        for layer in range(CONFIG.n_layers):
            for head in range(CONFIG.n_heads):
                want = metrics.one_step(
                    cap,
                    params,
                    pos=pos,
                    target=target,
                    length=prompt.length,
                    src=0,
                    layer=layer,
                    head=head,
                    eps=CONFIG.ln_eps,
                )
                got = head_source_attr(cap, params, layer, head, pos, target)
                np.testing.assert_allclose(got, want["token_attr"], rtol=1e-9, atol=1e-12)
                # the DLA reads the float32 head output: equal to float32 precision
                assert got.sum() == pytest.approx(want["heads"]["dla"][layer, head], rel=1e-6)


def test_a_head_click_reuses_the_step_and_leaves_out_ablation(analyzer):
    """Another head: the same head-independent numbers (one object), its own token
    attributions; the ``ablation`` metric (a pass per head) only when asked for."""
    sel, _ = resolve(analyzer, {"run": "ext", "head": "L0H0"})
    first = compute_view(analyzer, sel)
    other = compute_view(analyzer, sel.with_(layer=1, head=1))
    assert other.patterns is first.patterns and other.metrics is first.metrics
    assert not np.allclose(other.source_attr, first.source_attr)
    assert "ablation" not in first.metrics
    with_ablation = compute_view(analyzer, sel, ablation=True)
    assert with_ablation.metrics["ablation"].shape == (CONFIG.n_layers, CONFIG.n_heads)
    ablated = compute_view(analyzer, sel.with_(ablate=("L0H0",)))
    assert not ablated.source_attr.any()  # an ablated head's output mixes no sources


def big_view(n_layers: int = 12, n_heads: int = 12, tokens: int = 128, seed: int = 0) -> View:
    """A View of GPT-2-small's head count over 128 tokens, numbers made by hand."""
    rng = np.random.default_rng(seed)
    raw = rng.random((n_layers, n_heads, tokens, tokens)) * np.tri(tokens)
    patterns = (raw / raw.sum(-1, keepdims=True)).astype(np.float32)
    names, kinds = component_names(n_layers, n_heads)
    dla = rng.standard_normal((n_layers, n_heads))
    return View(
        words=[f"w{i}" for i in range(tokens)],
        length=tokens,
        target_id=0,
        vocab=("a", "b"),
        pred_ids=np.array([0, 1]),
        pred_probs=np.array([0.6, 0.4]),
        metrics={"dla": dla, "share": dla / np.abs(dla).sum()},
        patterns=patterns,
        source_attr=rng.standard_normal(tokens),
        comp_names=(*names, "final LN bias"),
        comp_kinds=(*kinds, "ln"),
        comp_attr=rng.standard_normal(len(names) + 1),
        logit=1.0,
        lens_top=np.zeros((n_layers + 1, tokens), int),
        lens_prob=np.zeros((n_layers + 1, tokens)),
    )


def sel_of(view: View, layer: int, head: int) -> Selection:
    return Selection("r", 0, "p", view.length - 1, "a", layer, head)


def test_pooling_keeps_the_largest_entry_of_each_block_and_the_mask():
    pattern = np.tril(np.arange(1, 65, dtype=np.float32).reshape(8, 8))
    cells, block = multiples.pooled(pattern, cells=4)
    assert block == 2 and cells.shape == (4, 4)
    assert cells[1, 0] == pattern[3, 1] and cells[3, 3] == pattern[7, 7]
    assert np.isnan(cells[0, 1]) and np.isnan(cells[2, 3])  # wholly in the future
    change = -pattern  # a change keeps its sign: the largest magnitude, not the maximum
    assert multiples.pooled(change, cells=4)[0][3, 3] == -pattern[7, 7]
    same, one = multiples.pooled(pattern[:4, :4], cells=4)
    assert one == 1 and np.array_equal(np.nan_to_num(same), pattern[:4, :4])


def test_multiples_of_144_heads_show_the_top_16_pooled_and_small():
    view = big_view()
    heads = multiples.shown_heads(view, "dla")
    want = np.argsort(-np.abs(view.metrics["dla"]).ravel())[:16]
    assert heads == [(int(i) // 12, int(i) % 12) for i in want]
    top = heads[0]
    fig = multiples.multiples_figure(view, sel_of(view, *top), metric="dla")
    assert len(fig["data"]) == 16
    assert [t["name"] for t in fig["data"]] == [f"L{a}H{b}" for a, b in heads]
    assert fig["data"][0]["z"]["shape"] == "32,32"
    assert "top 16 of 144 heads" in fig["layout"]["title"]["text"]
    assert "4x4 positions a cell" in fig["layout"]["title"]["text"]
    assert len(fig["layout"]["shapes"]) == 1  # the selected head is framed
    assert len(json.dumps(fig, cls=PlotlyJSONEncoder)) < 150_000
    # a head not among the top: said, not framed
    rest = next((a, b) for a in range(12) for b in range(12) if (a, b) not in heads)
    other = multiples.multiples_overlay(view, sel_of(view, *rest), "dla")
    assert other.shapes == [] and "not among these" in other.title


def test_small_models_keep_every_head_in_layer_order():
    view = big_view(2, 2, 6)
    assert multiples.shown_heads(view, "dla") == [(0, 0), (0, 1), (1, 0), (1, 1)]
    fig = multiples.multiples_figure(view, sel_of(view, 1, 0))
    assert fig["data"][2]["name"] == "L1H0" and "z" in fig["data"][2]
    assert "Every head's pattern" in fig["layout"]["title"]["text"]


def test_the_grid_of_144_heads_has_no_cell_text_but_names_on_hover():
    view = big_view()
    sel = sel_of(view, 7, 3).with_(ablate=("L7H3",))
    fig = head_grid.head_grid_figure(view, sel, "dla")
    heat = fig["data"][0]
    assert "texttemplate" not in heat and heat["customdata"][7][3] == "L7H3"
    assert heat["text"][7][3] == " (ablated)" and heat["text"][0][0] == ""
    small = head_grid.head_grid_figure(big_view(2, 2, 6), sel_of(view, 0, 0), "dla")
    assert small["data"][0]["texttemplate"] == "%{text}"


def test_head_search_selects_a_typed_head():
    assert head_grid.search_head(None, " l7h3 ", {"head": "L0H0"}, []) == {"head": "L7H3"}
    assert head_grid.search_head(None, "", {"head": "L0H0"}, []) is None
    assert head_grid.search_head(None, 7, {"head": "L0H0"}, []) is None


def test_a_128_token_pattern_travels_as_a_typed_array_with_the_future_masked():
    view = big_view()
    fig = attention.attention_figure(view, sel_of(view, 3, 4))
    z = fig["data"][0]["z"]
    values = np.frombuffer(base64.b64decode(z["bdata"]), np.float32).reshape(128, 128)
    np.testing.assert_array_equal(np.tril(values), np.tril(view.patterns[3, 4]))
    assert np.isnan(values[np.triu_indices(128, 1)]).all()
    assert len(json.dumps(fig, cls=PlotlyJSONEncoder)) < 100_000
    tokens = token_attributions.token_attribution_figure(view, sel_of(view, 3, 4))
    assert "texttemplate" not in tokens["data"][0]  # 128 cells: hover, not text


def test_prefetch_goes_the_way_the_user_moves():
    steps = [0, 10, 20, 30]
    assert neighbours(steps, 10) == [20, 0]
    assert neighbours(steps, 10, back=True) == [0, 20]
    assert neighbours(steps, 30, reach=2) == [20, 10]
    assert neighbours(steps, 5) == []


@pytest.mark.parametrize("width", [4, 32])
def test_the_pages_step_equals_one_step_with_the_lens_at_a_window(analyzer, width):
    """``lean_step``: every number of ``metrics.one_step`` (float64, equal), the lens at the
    ``width`` positions ending at the query (float32: the same top tokens, probabilities
    within 1e-5), and ``lens_start`` where they begin."""
    sel, _ = resolve(analyzer, {"run": "ext"})
    prompt = analyzer.encode("ext", sel.prompt)
    cap = analyzer.capture("ext", sel.step, prompt)
    params = analyzer.store.params("ext", sel.step)
    target = analyzer.store.info("ext").tokenizer.index[sel.target]
    pos = prompt.length - 2
    args = dict(pos=pos, target=target, length=prompt.length, src=1, layer=1, head=0)
    want = metrics.one_step(cap, params, eps=CONFIG.ln_eps, **args)
    got = lean_step(cap, params, eps=CONFIG.ln_eps, lens_positions=width, **args)
    for key in ("attr", "ln_bias", "token_attr", "probs", "clean_probs"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15)
    for name, values in want["heads"].items():
        np.testing.assert_allclose(got["heads"][name], values, rtol=1e-12, atol=1e-15)
    start = max(0, pos + 1 - width)
    assert got["lens_start"] == start == lens_window(pos, prompt.length, width)[0]
    shown = slice(start, start + got["lens_top"].shape[1])
    np.testing.assert_array_equal(got["lens_top"], want["lens_top"][:, shown])
    np.testing.assert_allclose(got["lens_prob"], want["lens_prob"][:, shown], atol=1e-5)
