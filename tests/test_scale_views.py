"""Views at 144 heads and 128 tokens: what a head click recomputes and sends, the capped
figures (multiples of the top heads, pooled; the grid without cell text past 36 heads;
patterns as typed arrays), the one-head token attributions and the page's step against
the step's metrics, and the logit lens computed apart, only when its panel draws.

Runs here are written with random weights (``tests.external_runs``): no training."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from plotly.utils import PlotlyJSONEncoder

from interp_app.core import metrics
from interp_app.core.analyzer import Analyzer
from interp_app.core.head_attr import head_source_attr
from interp_app.core.heads import component_names
from interp_app.core.lean_step import lean_step, lens_window, step_lens
from interp_app.core.prefetch import Prefetcher, neighbours
from interp_app.core.selection import Selection
from interp_app.core.store import RunStore
from interp_app.core.view import View, compute_lens, compute_view, resolve
from interp_app.panels import attention, head_grid, logit_lens, multiples, token_attributions
from interp_app.panels.base import Context
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


def test_a_head_click_reads_no_capture(analyzer):
    """A head click's token attributions come from the step's view (the patterns and values
    it keeps), not from the capture: at GPT-2 size the prefetcher's neighbours push the
    capture out, and a click waited for a forward pass (seconds). Same numbers."""
    sel, _ = resolve(analyzer, {"run": "ext", "head": "L0H0"})
    compute_view(analyzer, sel)
    analyzer._captures.clear()
    other = compute_view(analyzer, sel.with_(layer=1, head=1))
    assert analyzer._captures.order() == []  # no pass, no capture made or read
    prompt = analyzer.encode("ext", sel.prompt)
    cap = analyzer.capture("ext", sel.step, prompt)
    params = analyzer.store.params("ext", sel.step)
    want = head_source_attr(cap, params, 1, 1, sel.pos, other.target_id)[: prompt.length]
    np.testing.assert_allclose(other.source_attr, want, rtol=1e-12, atol=1e-15)


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
    assert len(json.dumps(fig, cls=PlotlyJSONEncoder)) < 150_000
    labels = multiples.head_labels(view, heads)  # each name above its multiple
    assert [label.children for label in labels] == [f"L{a}H{b}" for a, b in heads]
    (x0, x1), (_, y1) = multiples._slots(view, heads)[heads[5]]
    assert labels[5].style["left"] == f"calc(20px + (100% - 40px) * {(x0 + x1) / 2:.4f})"
    assert labels[5].style["top"] == f"{60 + 300 * (1 - y1):.1f}px"
    # the selected head is framed by an element over the figure, at its multiple's place
    marks = multiples.multiples_overlay(view, sel_of(view, *top), "dla")
    assert marks.title is None and marks.shapes is None  # the figure is left as it is
    style, caption = (
        marks.extra[(multiples.FRAME, "style")],
        marks.extra[(multiples.CAPTION, "children")],
    )
    assert style["display"] == "block" and caption == f"selected L{top[0]}H{top[1]}"
    (x0, _), (_, y1) = multiples._slots(view, heads)[top]
    assert style["left"] == f"calc(20px + (100% - 40px) * {x0 - 0.01:.4f})"
    assert style["top"] == f"{60 + 300 * (1 - y1) - 18:.1f}px"  # its name included
    # a head not among the top: said, not framed
    rest = next((a, b) for a in range(12) for b in range(12) if (a, b) not in heads)
    other = multiples.multiples_overlay(view, sel_of(view, *rest), "dla")
    assert other.extra[(multiples.FRAME, "style")]["display"] == "none"
    assert "not among these" in other.extra[(multiples.CAPTION, "children")]


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


def _step_of(analyzer, untied: bool = False, ablate: tuple[str, ...] = ()):
    """(prompt, capture, clean capture or None, parameters, target) of the default selection
    at the last step. ``untied``: the parameters with an unembedding ``w_u`` and bias ``b_u``
    of their own added (the metrics read those, not ``wte``, when a checkpoint has them)."""
    sel, _ = resolve(analyzer, {"run": "ext"})
    prompt = analyzer.encode("ext", sel.prompt)
    cap = analyzer.capture("ext", sel.step, prompt, ablate)
    clean = analyzer.capture("ext", sel.step, prompt) if ablate else None
    params = analyzer.store.params("ext", sel.step)
    if untied:
        rng = np.random.default_rng(0)
        w_u = rng.standard_normal((CONFIG.d_model, CONFIG.vocab_size)).astype(np.float32)
        b_u = rng.standard_normal(CONFIG.vocab_size).astype(np.float32)
        params = {**params, "w_u": w_u, "b_u": b_u}
    return prompt, cap, clean, params, analyzer.store.info("ext").tokenizer.index[sel.target]


@pytest.mark.parametrize("untied, ablate", [(False, ("L1H0",)), (True, ())])
def test_the_pages_step_equals_one_step(analyzer, untied, ablate):
    """``lean_step`` (float64 from the slices each number reads) gives every number of
    ``metrics.one_step`` but the lens, equal, at any query, source, head and target, tied or
    untied, with or without ablation (``clean_probs`` from the unablated pass)."""
    prompt, cap, clean, params, target = _step_of(analyzer, untied, ablate)
    n = prompt.length
    for pos, src, layer, head, tgt in [
        (n - 1, 0, 1, 0, target),
        (n - 2, n - 3, 0, 1, 7),
        (0, 0, 1, 1, target),
        (n // 2, 2, 0, 0, 300),
    ]:
        args = dict(clean=clean, pos=pos, target=tgt, length=n, src=src, layer=layer, head=head)
        want = metrics.one_step(cap, params, eps=CONFIG.ln_eps, **args)
        got = lean_step(cap, params, eps=CONFIG.ln_eps, **args)
        assert set(got) == set(want) - {"lens_top", "lens_prob"}
        for key in ("attr", "ln_bias", "token_attr", "probs", "clean_probs"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15, err_msg=key)
        assert got["heads"].keys() == want["heads"].keys()
        for name, values in want["heads"].items():
            np.testing.assert_allclose(got["heads"][name], values, rtol=1e-12, atol=1e-15)
        if not untied:  # the split sums to the model's own logit (its unembedding is wte)
            logit = float(cap.logits[0, pos, tgt])
            assert got["attr"].sum() + got["ln_bias"] == pytest.approx(logit, abs=1e-5)


@pytest.mark.parametrize("untied, width", [(False, 4), (True, 32)])
def test_the_lens_is_one_steps_at_a_window(analyzer, untied, width):
    """``step_lens``: the lens of ``metrics.one_step`` at the ``width`` positions ending at
    the query (float32: the same top tokens, probabilities within 1e-5), from ``start``."""
    prompt, cap, _, params, target = _step_of(analyzer, untied)
    n = prompt.length
    for pos in (n - 1, 2):
        args = dict(pos=pos, target=target, length=n, src=0, layer=0, head=0)
        want = metrics.one_step(cap, params, eps=CONFIG.ln_eps, **args)
        top, prob, start = step_lens(cap, params, pos=pos, length=n, eps=CONFIG.ln_eps, width=width)
        assert (start, start + top.shape[1]) == lens_window(pos, n, width)
        assert start == max(0, pos + 1 - width)
        assert top.shape == (CONFIG.n_layers + 1, min(n, width))
        shown = slice(start, start + top.shape[1])
        np.testing.assert_array_equal(top, want["lens_top"][:, shown])
        np.testing.assert_allclose(prob, want["lens_prob"][:, shown], atol=1e-5)


def _lens_cached(analyzer, sel: Selection) -> bool:
    start, _ = lens_window(sel.pos, analyzer.encode(sel.run, sel.prompt).length)
    key = ("lens", sel.run, sel.step, sel.prompt, start, sel.ablate, sel.mode)
    return analyzer._derived.peek((analyzer.store.generation(sel.run), key)) is not None


def test_the_lens_is_computed_only_for_its_panel(analyzer):
    """A view (and the prefetcher's, unless asked) leaves the lens out; the panel draws
    ``compute_lens``, the ablated pass's lens at the window ending at the query."""
    sel, _ = resolve(analyzer, {"run": "ext", "ablate": "L1H0", "pos": 3})
    compute_view(analyzer, sel)
    assert not _lens_cached(analyzer, sel)
    steps = analyzer.store.steps("ext")
    prefetch = Prefetcher(analyzer)
    prefetch.around(sel, steps)
    assert prefetch.idle()
    before = sel.with_(step=steps[-2])
    assert ("ext", before.step) in prefetch.done and not _lens_cached(analyzer, before)
    prefetch.around(sel, steps, lens=True)
    assert prefetch.idle() and _lens_cached(analyzer, before)

    ctx = Context(analyzer, sel, steps, set(), {"src": 0}, set())
    lens = ctx.lens
    assert lens is compute_lens(analyzer, sel) and _lens_cached(analyzer, sel)
    # the same window of positions (this short prompt's every one): the same lens, kept
    assert compute_lens(analyzer, sel.with_(pos=1, layer=0, target="a")) is lens
    prompt = analyzer.encode("ext", sel.prompt)
    cap = analyzer.capture("ext", sel.step, prompt, sel.ablate)
    params = analyzer.store.params("ext", sel.step)
    top, prob, start = step_lens(cap, params, pos=sel.pos, length=prompt.length, eps=CONFIG.ln_eps)
    np.testing.assert_array_equal(lens.top, top)
    np.testing.assert_array_equal(lens.prob, prob)
    assert lens.start == start and lens.length == prompt.length
    assert lens.words == compute_view(analyzer, sel).words
    fig = logit_lens.draw(ctx)[logit_lens.FIGURE]
    np.testing.assert_array_equal(fig["data"][0]["z"], lens.prob)
    vocab = analyzer.store.info("ext").tokenizer.vocab
    assert lens.top_words == tuple(tuple(vocab[i] for i in row) for row in top)
    assert fig["data"][0]["text"] == [list(row) for row in lens.top_words]
