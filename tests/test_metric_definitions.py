"""Every metric is well defined (issue #13, item 5): the head share is bounded at any logit
and the same in the numpy and the vectorised pass, patching says when the two prompts are
too close to normalise, the default target is never a special token, and mean ablation
over the run's validation lines is the conventional reference-set mean."""

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

from interp_app.core import causal, metrics
from interp_app.core.analyzer import SPECIAL_TOKENS, Analyzer, default_target
from interp_app.core.api import Run
from interp_app.core.heads import METRICS, head_mask
from interp_app.core.prompt import encode_prompt
from interp_app.core.store import RunStore
from interp_app.core.timeline import compute_timeline
from interp_app.core.view import compute_patching, compute_view, resolve
from interp_app.panels.patching import patching_overlay
from interp_app.ui.page import build_layout
from tests.numpy_reference import forward, head_metrics
from training.corpus import builtin_corpus
from training.model.gpt import Capture, Intervention, capture
from training.model.params import unflatten_params, unflatten_stacked

PROMPT = "i like spicy so i like"


@pytest.fixture(scope="module")
def store(default_root):
    """The app's analyzer (named for the tests' old reading: ``store.store`` reads files)."""
    return Analyzer(RunStore(default_root[0]))


def _hand_capture(head: float, embed: float, logit: float) -> tuple[Capture, dict]:
    """One layer, one head, one position, d = 2: with u = wte[0] = (1, -1), unit LayerNorm
    scale and 1/std held at 1, a vector (a, b) attributes a - b to token 0's logit."""
    z = np.zeros
    fields: dict[str, Any] = dict(
        tokens=z((1, 1), np.int32),
        tok_emb=np.array([[[0.0, -embed]]]),  # attributes ``embed``
        pos_emb=z((1, 2)),
        resid=z((1, 2, 1, 2)),
        resid_mid=z((1, 1, 1, 2)),
        patterns=np.ones((1, 1, 1, 1, 1)),
        values=z((1, 1, 1, 1, 1)),
        head_out=np.array([[[[[head, 0.0]]]]]),  # attributes ``head``
        attn_bias=z((1, 2)),
        attn_out=z((1, 1, 1, 2)),
        mlp_out=z((1, 1, 1, 2)),
        final_inv_std=np.ones((1, 1)),
        final=z((1, 1, 2)),
        logits=np.array([[[logit, -logit]]]),
    )
    cap = Capture(**fields)  # numpy float64 arrays in a Capture: the numbers written here
    params = {
        "wte": np.array([[1.0, -1.0], [-1.0, 1.0]]),
        "ln_f.scale": np.ones(2),
        "ln_f.bias": np.zeros(2),
        "blocks.0.attn.w_o": np.zeros((1, 1, 2)),
    }
    return cap, params


def test_share_is_bounded_at_a_negative_logit_by_hand():
    # the numbers: a head adds +0.535 to a logit of -0.115 (the embedding -0.650);
    # "DLA / logit" called that a share of -4.65
    cap, params = _hand_capture(head=0.535, embed=-0.650, logit=-0.115)
    m = metrics.evaluate(metrics.head_metrics, cap, params, 0, 0, 1, 0)  # pos, target, length, src
    assert m["dla"][0, 0] == pytest.approx(0.535)
    assert m["share"][0, 0] == pytest.approx(0.535 / (0.535 + 0.650))  # 0.451
    # the definition is one function for numpy and jax alike; nothing attributed gives 0
    assert float(metrics.attribution_share(jnp.float32(0.535), jnp.float32(1.185))) == (
        pytest.approx(0.535 / 1.185)
    )
    assert metrics.attribution_share(np.zeros(3), 0.0).tolist() == [0.0, 0.0, 0.0]
    assert "Σ|DLA|" in METRICS["share"]


def test_an_untied_unembedding_and_its_bias_are_read_by_hand():
    """Untied: ``u = w_u[:, target]`` (not ``wte[target]``) and the constant term is
    ``ln_bias @ u + b_u[target]``; tied, ``w_u`` is ``wte.T`` and ``b_u`` zeros."""
    cap, params = _hand_capture(head=0.8, embed=-0.3, logit=0.0)
    params["ln_f.bias"] = np.array([0.5, 0.1])
    tied = metrics.evaluate(metrics.attributions, cap, params, 0, 0)
    np.testing.assert_allclose(tied[0][[0, 2]], [-0.3, 0.8])  # (a - b) / 2 . (1, -1)
    assert float(tied[1]) == pytest.approx(0.4)  # ln_bias . wte[0]
    params |= {"w_u": np.array([[2.0, 0.0], [0.0, 1.0]]), "b_u": np.array([0.25, -1.0])}
    for target, (embed, head, const) in {0: (-0.3, 0.8, 1.25), 1: (0.15, -0.4, -0.9)}.items():
        attr, got = metrics.evaluate(metrics.attributions, cap, params, 0, target)
        np.testing.assert_allclose(attr[[0, 2]], [embed, head])
        assert float(got) == pytest.approx(const)


def _small_logit_case(store):
    """The first (step, target) of the default prompt where some head's attribution is
    larger than the target's whole logit: where DLA / logit left [-1, 1]."""
    info = store.store.info("fruits")
    prompt = encode_prompt(info.tokenizer, info.model.context, PROMPT)
    for step in store.store.steps("fruits"):
        cap = store.capture("fruits", step, prompt)
        params = store.store.params("fruits", step)
        for target in range(len(info.tokenizer.vocab)):
            attr, _ = metrics.evaluate(metrics.attributions, cap, params, 5, target)
            heads = metrics.head_part(attr, info.model.n_layers, info.model.n_heads)
            if np.abs(heads).max() > 2 * abs(float(cap.logits[0, 5, target])):
                return prompt, step, target
    raise AssertionError("no checkpoint has a head larger than its target logit")


def test_share_agrees_in_numpy_and_both_passes_where_the_logit_is_small(store):
    prompt, step, target = _small_logit_case(store)
    cap = store.capture("fruits", step, prompt)
    info = store.store.info("fruits")
    word = info.tokenizer.vocab[target]
    ref = Run(store, "fruits").metrics(step, prompt, target=word, pos=5).heads  # float64
    logit = float(cap.logits[0, 5, target])
    assert np.abs(ref["dla"] / logit).max() > 2  # the old definition was off its scale here
    assert np.abs(ref["share"]).max() <= 1
    params = store.store.params("fruits", step)
    numpy_ref = forward(params, list(prompt.ids), info.model.n_layers, info.model.n_heads)
    np.testing.assert_allclose(ref["share"], head_metrics(numpy_ref, 5, target)["share"], atol=2e-6)
    steps, values, _ = store.timeline("fruits", prompt, 5, target)
    np.testing.assert_allclose(values["share"][steps.index(step)], ref["share"], atol=2e-6)
    # the denominator is every term the residual panel draws, whose sum is the logit
    sel, _ = resolve(store, {"step": step, "target": info.tokenizer.vocab[target]})
    view = compute_view(store, sel)
    assert abs(view.comp_attr.sum() - view.logit) < 1e-4
    np.testing.assert_allclose(
        view.metrics["share"], view.metrics["dla"] / np.abs(view.comp_attr).sum(), atol=1e-9
    )


def test_share_agrees_in_both_passes_with_heads_mean_ablated(store):
    info = store.store.info("fruits")
    prompt = encode_prompt(info.tokenizer, info.model.context, PROMPT)
    target = info.tokenizer.vocab.index("chili")
    steps, values, _ = store.timeline("fruits", prompt, 5, target, 0, ("L0H1",), "mean")
    for i in (0, len(steps) // 3, len(steps) - 1):
        run = Run(store, "fruits")
        ref = run.metrics(steps[i], prompt, target="chili", pos=5, ablate=["L0H1"], mode="mean")
        np.testing.assert_allclose(values["share"][i], ref.heads["share"], atol=2e-6)
        assert np.abs(values["share"][i]).max() <= 1


def test_default_target_is_never_a_special_token(store):
    vocab = ("apple", "so", "UNKNOWN", "PADDING")
    assert default_target(np.array([0.1, 0.2, 0.5, 3.0]), vocab) == "so"
    assert default_target(None, vocab) == "apple"  # no logits (an unreadable step)
    raw_special = 0
    for step in store.store.steps("fruits"):
        sel, notes = resolve(store, {"step": step, "prompt": "apple is sweet"})
        assert notes == [] and sel.target not in SPECIAL_TOKENS
        info = store.store.info("fruits")
        prompt = encode_prompt(info.tokenizer, info.model.context, sel.prompt)
        logits = np.asarray(store.capture("fruits", step, prompt).logits[0, sel.pos], np.float64)
        words = [i for i, w in enumerate(info.tokenizer.vocab) if w not in SPECIAL_TOKENS]
        assert sel.target == info.tokenizer.vocab[words[int(np.argmax(logits[words]))]]
        raw_special += info.tokenizer.vocab[int(np.argmax(logits))] in SPECIAL_TOKENS
    assert raw_special > 0  # the model does rank PADDING first there: the case is real


def test_patching_threshold_by_hand():
    # a gap of 1e-4 (0.0471 vs 0.0470) was divided by before: values of -6 to 4
    assert not causal.normalisable(0.0471, 0.0470, 1.0)
    assert not causal.normalisable(0.0225, 0.0234, 1.0)
    assert causal.normalisable(0.1039, 0.0940, 1.0)  # a gap of 1e-2
    assert causal.normalisable(21.17, 0.0, 6.9)
    # relative to the logit scale: the same 5e-3 gap is too small next to logits of 10
    assert causal.normalisable(0.005, 0.0, 1.0) and not causal.normalisable(0.005, 0.0, 10.0)


def test_patching_says_when_the_prompts_are_too_close(store):
    info = store.store.info("fruits")
    flat = dict(store.store.params("fruits", 10_000))
    vocab = info.tokenizer.vocab
    sweet, spicy = vocab.index("sweet"), vocab.index("spicy")
    wte = flat["wte"].copy()
    wte[sweet] = wte[spicy] + np.float32(2e-4) * np.sign(wte[spicy])  # nearly the same word
    flat["wte"] = wte
    graphdef, params = unflatten_params(info.model, flat)

    def tokens(text):
        return jnp.asarray([encode_prompt(info.tokenizer, info.model.context, text).padded])

    chili, apple = vocab.index("chili"), vocab.index("apple")
    corrupt = tokens("i like sweet so i like")
    result = causal.patching(graphdef, params, tokens(PROMPT), corrupt, 5, chili, apple)
    gap = abs(float(result["clean"] - result["corrupt"]))
    assert 1e-9 < gap < 1e-3 * float(result["logit_scale"])  # divided by before, not now
    assert not bool(result["normalised"])
    # the panel says so instead of drawing: two prompts the model reads identically
    sel, _ = resolve(store, {"corrupt": "i like spicy so i zzz", "prompt": "i like spicy so i qqq"})
    message = compute_patching(store, sel)
    assert isinstance(message, str) and "too close to normalise" in message
    # and the default experiment, whose gap is large, is still drawn
    default, _ = resolve(store, {})
    assert not isinstance(compute_patching(store, default), str)


def test_patching_is_drawn_exactly_when_the_gap_is_large_enough(store):
    for step in store.store.steps("fruits")[::4]:
        sel, _ = resolve(store, {"step": step})
        info = store.store.info("fruits")
        clean = encode_prompt(info.tokenizer, info.model.context, sel.prompt)
        corrupt = encode_prompt(info.tokenizer, info.model.context, sel.corrupt)
        a = np.asarray(store.capture("fruits", step, clean).logits[0, sel.pos], np.float64)
        b = np.asarray(store.capture("fruits", step, corrupt).logits[0, sel.pos], np.float64)
        out = compute_patching(store, sel)
        answer = out[2] if not isinstance(out, str) else out.split("− '")[1].split("'")[0]
        t, u = info.tokenizer.vocab.index(sel.target), info.tokenizer.vocab.index(answer)
        scale = max(1.0, abs(a[t]), abs(a[u]), abs(b[t]), abs(b[u]))
        gap = abs((a[t] - a[u]) - (b[t] - b[u]))
        assert isinstance(out, str) == (gap <= 1e-3 * scale), (step, gap, scale)
        if not isinstance(out, str):
            assert np.isfinite(out[0]).all() and np.isfinite(out[1]).all()


def test_patching_ignores_the_ablation_and_says_so(store):
    sel, _ = resolve(store, {})
    ablated, _ = resolve(store, {"ablate": "L0H0,L0H1", "ablate_mode": "zero"})
    a, b = compute_patching(store, sel), compute_patching(store, ablated)
    np.testing.assert_array_equal(a[0], b[0])
    title, _ = patching_overlay(ablated, 2, a[2])
    assert "without ablation" in title
    page = str(build_layout("root"))
    assert "Patching runs on the model without ablation" in page
    assert "sum of |direct attribution|" in page and "mean (this prompt)" in page


def test_reference_lines_are_the_runs_validation_lines(store):
    info = store.store.info("fruits")
    assert causal.reference_lines(info.meta) == builtin_corpus().valid
    other = {**info.meta, "corpus": {**info.meta["corpus"], "sha256": "0" * 64}}
    assert causal.reference_lines(other) is None  # a custom corpus: not stored in the run
    tokens, mask = causal.reference_batch(info.meta, info.tokenizer, info.model.context)
    line = builtin_corpus().valid[0]
    assert tokens[0, : len(line.split())].tolist() == info.tokenizer.encode(line)
    assert mask.sum() == len(line.split())
    assert (tokens[0][mask[0] == 0] == info.tokenizer.padding_id).all()


def test_validation_mean_ablation_is_the_mean_over_the_validation_positions(store):
    info = store.store.info("fruits")
    graphdef, state = store.state("fruits", 10_000)
    prompt = encode_prompt(info.tokenizer, info.model.context, PROMPT)
    tokens = jnp.asarray([prompt.padded])
    reference = causal.reference_batch(info.meta, info.tokenizer, info.model.context)
    mask = jnp.zeros((2, 2)).at[0, 1].set(1.0)
    # by hand: L0H1's output on the validation line, averaged over its 7 positions
    line = builtin_corpus().valid[0]
    n = len(line.split())
    ref_prompt = encode_prompt(info.tokenizer, info.model.context, line)
    ref_cap = store.capture("fruits", 10_000, ref_prompt)
    mean = np.asarray(ref_cap.head_out[0, 0, 1, :n], np.float64).mean(0)
    plain = store.capture("fruits", 10_000, prompt)
    value = np.array(plain.head_out)
    value[0, 0, 1, :] = mean
    iv = Intervention(
        head_keep=1.0 - mask,
        head_value=jnp.asarray(value, jnp.float32),
        resid_keep=jnp.ones((3, info.model.context)),
        resid_value=jnp.zeros((1, 3, info.model.context, info.model.d_model)),
    )
    expected = capture(graphdef, state, tokens, iv)
    got = causal.ablated_capture(graphdef, state, tokens, mask, "valid-mean", 6, reference)
    np.testing.assert_allclose(got.logits[0, :6], expected.logits[0, :6], atol=1e-5)
    # it does not depend on the prompt, unlike the mean over this prompt
    prompt_mean = causal.ablated_capture(graphdef, state, tokens, mask, "mean", 6)
    assert not np.allclose(got.logits[0, 5], prompt_mean.logits[0, 5], atol=1e-3)
    # with the prompt itself as the reference set, the two means are one
    own = (tokens, jnp.asarray([[1.0] * 6 + [0.0] * (info.model.context - 6)]))
    same = causal.ablated_capture(graphdef, state, tokens, mask, "valid-mean", 6, own)
    np.testing.assert_allclose(same.logits, prompt_mean.logits, atol=1e-5)
    with pytest.raises(ValueError, match="reference"):
        causal.ablated_capture(graphdef, state, tokens, mask, "valid-mean", 6)


def test_validation_mean_timeline_equals_the_numpy_metrics(store):
    info = store.store.info("fruits")
    prompt = encode_prompt(info.tokenizer, info.model.context, PROMPT)
    tokens = jnp.asarray([prompt.padded])
    target = info.tokenizer.vocab.index("chili")
    reference = causal.reference_batch(info.meta, info.tokenizer, info.model.context)
    ablate = head_mask(("L0H1",), 2, 2)
    steps = store.store.steps("fruits")[-3:]
    _, chunks, _ = store.store.stacked("fruits", steps)
    chunks = [unflatten_stacked(info.model, c) for c in chunks]
    graphdef = store.state("fruits", steps[0])[0]
    out = compute_timeline(
        graphdef, chunks, len(steps), tokens, 5, target, 0, 6, ablate, "valid-mean", reference
    )
    for i, step in enumerate(steps):
        _, state = store.state("fruits", step)
        cap = causal.ablated_capture(
            graphdef, state, tokens, jnp.asarray(ablate), "valid-mean", 6, reference
        )
        params = store.store.params("fruits", step)
        ref = metrics.evaluate(metrics.head_metrics, cap, params, 5, target, 6, 0)
        for name in ("dla", "share", "attn_src", "entropy", "prev_token"):
            np.testing.assert_allclose(out[name][i], ref[name], atol=2e-5, err_msg=name)
        effects = causal.ablation_effects(
            graphdef, state, tokens, jnp.asarray(ablate), "valid-mean", 6, 5, target, reference
        )
        np.testing.assert_allclose(out["ablation"][i], effects, atol=2e-5)
