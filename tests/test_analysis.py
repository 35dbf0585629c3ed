"""The app's numbers against an independent numpy forward pass from the checkpoint (on the
short ``small`` run: any weights will do), and the trained run's defaults and reading."""

import jax
import numpy as np
import pytest

from interp_app.core.analyzer import Analyzer
from interp_app.core.selection import Selection
from interp_app.core.store import RunStore
from interp_app.core.view import compute_lens, compute_view, resolve
from tests.numpy_reference import forward, head_metrics, head_token_attributions, logit_lens

PROMPT = "i like spicy so i like"


def _setup(root, prompt=PROMPT):
    analyzer = Analyzer(RunStore(root))
    sel, notes = resolve(analyzer, {"prompt": prompt})
    assert notes == []
    info = analyzer.store.info(sel.run)
    ids = info.tokenizer.encode(prompt)
    params = analyzer.store.params(sel.run, sel.step)
    ref = forward(params, ids, info.model.n_layers, info.model.n_heads)
    return analyzer, sel, info, ref


@pytest.fixture(scope="module")
def small(small_root):
    return _setup(small_root[0])


@pytest.mark.parametrize("target", ["chili", "apple", None])
def test_logits_and_attribution_match_numpy(small, target):
    analyzer, sel, info, ref = small
    sel = sel if target is None else sel.with_(target=target)  # None: the default target
    view = compute_view(analyzer, sel)
    t = info.tokenizer.vocab.index(sel.target)
    assert abs(view.logit - ref["logits"][5, t]) < 1e-4
    assert abs(view.comp_attr.sum() - view.logit) < 1e-4 * max(1, abs(view.logit))


def test_token_attributions_sum_to_head_bar_and_match_numpy(small):
    analyzer, sel, info, ref = small
    for layer in range(info.model.n_layers):
        for head in range(info.model.n_heads):
            for pos in (2, 5):
                for target in ("chili", "apple"):
                    s = Selection(sel.run, sel.step, sel.prompt, pos, target, layer, head)
                    view = compute_view(analyzer, s)
                    t = info.tokenizer.vocab.index(target)
                    expected = head_token_attributions(ref, layer, head, pos, t)
                    np.testing.assert_allclose(
                        view.source_attr, expected[: pos + 1].tolist() + [0] * (5 - pos), atol=2e-5
                    )
                    bar = view.comp_attr[view.comp_names.index(f"L{layer}H{head}")]
                    assert abs(view.source_attr.sum() - bar) < 1e-5 * max(1, abs(bar))
                    np.testing.assert_allclose(
                        view.patterns[layer, head, pos, : pos + 1],
                        ref["heads"][(layer, head)][0][pos, : pos + 1],
                        atol=1e-5,
                    )


@pytest.mark.parametrize("pos, src", [(5, 2), (3, 0), (2, 4)])
def test_head_metrics_and_logit_lens_match_numpy(small, pos, src):
    analyzer, sel, info, ref = small
    for target in ("chili", "apple"):
        view = compute_view(analyzer, sel.with_(pos=pos, target=target), src=src)
        expected = head_metrics(ref, pos, info.tokenizer.vocab.index(target), src)
        for name, values in expected.items():
            scale = max(1.0, float(np.abs(values).max()))
            np.testing.assert_allclose(view.metrics[name], values, atol=2e-5 * scale, err_msg=name)
    lens = compute_lens(analyzer, sel.with_(pos=pos))  # a short prompt: every position
    top, prob = logit_lens(ref, info.model.ln_eps)
    assert lens.start == 0
    np.testing.assert_array_equal(lens.top, top)
    np.testing.assert_allclose(lens.prob, prob, atol=1e-5)


def test_any_prompt_length_uses_one_compiled_shape(small):
    """After the first prompt, prompts of other lengths compile nothing (JAX reports every
    backend compilation through its public monitoring events)."""
    analyzer, sel, _, _ = small
    compute_view(analyzer, sel)
    compiled: list[str] = []

    def count(event: str, _seconds: float, **_kwargs) -> None:
        if event.endswith("backend_compile_duration"):
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        for text in ("i", "apple is so sweet", "i like the sour taste of lemon and i like"):
            s, _ = resolve(analyzer, {"prompt": text})
            compute_view(analyzer, s)
        jax.jit(lambda x: x + 1)(np.zeros(3))  # a new function: the listener hears it
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert len(compiled) == 1, compiled


# --- the fully trained run (golden outcomes: the slow tier) ---------------------------------


def test_defaults_and_logits_match_numpy(default_root):
    analyzer, sel, info, ref = _setup(default_root[0])
    assert (sel.run, sel.step, sel.pos, sel.target, sel.head_name) == (
        "fruits",
        10_000,
        5,
        "chili",
        "L1H0",
    )
    view = compute_view(analyzer, sel)
    target = info.tokenizer.vocab.index("chili")
    assert abs(view.logit - ref["logits"][5, target]) < 1e-4


def test_logit_lens_ends_in_chili(default_root):
    analyzer, sel, info, _ = _setup(default_root[0])
    lens = compute_lens(analyzer, sel)
    assert info.tokenizer.vocab[lens.top[-1, 5]] == "chili"
    assert lens.top.shape == (info.model.n_layers + 1, 6)
