"""Views at 144 heads and 128 tokens: what a head click recomputes and sends, the capped
figures (multiples of the top heads, pooled; the grid without cell text past 36 heads;
patterns as typed arrays) and the one-head token attributions against the step's metrics.

Runs here are written with random weights (``tests.external_runs``): no training."""

from __future__ import annotations

import numpy as np
import pytest

from interp_app.core import metrics
from interp_app.core.analyzer import Analyzer
from interp_app.core.store import RunStore
from interp_app.core.view import compute_view, head_source_attr, resolve
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
