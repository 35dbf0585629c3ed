"""Interventions are exact: ablating nothing changes nothing, patching everything restores
the clean run, vectorised sweeps equal loops, and a plain-numpy forward agrees (on the short
``small`` run: exactness needs no trained model); the trained run reads chili over apple."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from interp_app.core import causal
from interp_app.core.prompt import encode_prompt
from interp_app.core.store import RunStore
from tests.numpy_reference import forward
from training.model.gpt import GPT, Intervention, capture
from training.model.params import flat_params, unflatten_params

CLEAN, CORRUPT = "i like spicy so i like", "i like sweet so i like"


def _model(root, run):
    store = RunStore(root)
    info = store.info(run)
    flat = store.params(run, store.steps(run)[-1])
    graphdef, params = unflatten_params(info.model, flat)

    def tokens(text):
        return jnp.asarray([encode_prompt(info.tokenizer, info.model.context, text).padded])

    return info, flat, graphdef, params, tokens


@pytest.fixture(scope="module")
def model(small_root):
    return _model(small_root[0], "small")


def _reference(info, mode):
    """The validation lines for the mode that averages over them, else nothing."""
    if mode not in causal.REFERENCE_MODES:
        return None
    return causal.reference_batch(info.meta, info.tokenizer, info.model.context)


def test_ablating_nothing_changes_nothing(model):
    info, _, graphdef, params, tokens = model
    plain = capture(graphdef, params, tokens(CLEAN))
    for mode in causal.MODES:
        none = causal.ablated_capture(
            graphdef, params, tokens(CLEAN), jnp.zeros((2, 2)), mode, 6, _reference(info, mode)
        )
        np.testing.assert_allclose(none.logits, plain.logits, atol=1e-5)
        np.testing.assert_allclose(none.head_out, plain.head_out, atol=1e-6)


def test_patching_everything_restores_the_clean_run(model):
    info, _, graphdef, params, tokens = model
    clean = capture(graphdef, params, tokens(CLEAN))
    all_heads = Intervention(
        head_keep=jnp.zeros((2, 2)),
        head_value=clean.head_out,
        resid_keep=jnp.ones((3, 12)),
        resid_value=clean.resid,
    )
    patched = capture(graphdef, params, tokens(CORRUPT), all_heads)
    # every head from clean: the residual still differs by the corrupted token's embedding,
    # so compare with every position patched as well, which must reproduce clean exactly
    everything = all_heads.replace(resid_keep=jnp.zeros((3, 12)))
    restored = capture(graphdef, params, tokens(CORRUPT), everything)
    np.testing.assert_allclose(restored.logits, clean.logits, atol=1e-5)
    assert not np.allclose(patched.logits, capture(graphdef, params, tokens(CORRUPT)).logits)


@pytest.mark.parametrize("base", [(), ((1, 0),)], ids=["nothing", "L1H0"])
def test_vectorised_ablation_effects_equal_a_loop(model, base):
    """Each head's effect against full ablated captures, also on top of an ablated head (the
    sweep resumes from the base run's layer, and reads one position's logits)."""
    info, _, graphdef, params, tokens = model
    chili = info.tokenizer.vocab.index("chili")
    base_mask = jnp.zeros((2, 2))
    for layer, head in base:
        base_mask = base_mask.at[layer, head].set(1.0)
    for mode in causal.MODES:
        ref = _reference(info, mode)
        effects = np.asarray(
            causal.ablation_effects(
                graphdef, params, tokens(CLEAN), base_mask, mode, 6, 5, chili, ref
            )
        )
        before = causal.ablated_capture(graphdef, params, tokens(CLEAN), base_mask, mode, 6, ref)
        base_lp = jax.nn.log_softmax(before.logits[0, 5])[chili]
        for layer in range(2):
            for head in range(2):
                mask = base_mask.at[layer, head].set(1.0)
                cap = causal.ablated_capture(graphdef, params, tokens(CLEAN), mask, mode, 6, ref)
                lp = jax.nn.log_softmax(cap.logits[0, 5])[chili]
                assert abs(float(lp - base_lp) - effects[layer, head]) < 1e-4
        for layer, head in base:  # ablated already: ablating it again changes nothing
            assert abs(effects[layer, head]) < 1e-6


def test_mean_ablation_of_a_constant_head_changes_nothing(model):
    info, flat, _, _, tokens = model
    changed = dict(flat)
    w = changed["blocks.1.attn.w_qkv"].copy()
    w[:, 2, 0, :] = 0.0  # L1H0's values are zero: its output is the same at every position
    changed["blocks.1.attn.w_qkv"] = w
    graphdef, params = unflatten_params(info.model, changed)
    plain = capture(graphdef, params, tokens(CLEAN))
    mask = jnp.zeros((2, 2)).at[1, 0].set(1.0)
    ablated = causal.ablated_capture(graphdef, params, tokens(CLEAN), mask, "mean", 6)
    np.testing.assert_allclose(ablated.logits[0, :6], plain.logits[0, :6], atol=1e-5)


def test_head_patching_matches_a_plain_numpy_forward(model):
    info, _, _, _, tokens = model
    # random weights with noise everywhere (biases and LayerNorms too): the short run barely
    # tells spicy from sweet yet, and normalising by a tiny gap would amplify float32 noise
    rng = np.random.default_rng(1)
    flat = {
        name: (value + 0.3 * rng.standard_normal(value.shape)).astype(np.float32)
        for name, value in flat_params(nnx.state(GPT(info.model, nnx.Rngs(1)), nnx.Param)).items()
    }
    graphdef, params = unflatten_params(info.model, flat)
    vocab = info.tokenizer.vocab
    clean_ids, corrupt_ids = info.tokenizer.encode(CLEAN), info.tokenizer.encode(CORRUPT)
    clean = forward(flat, clean_ids, 2, 2)
    corrupt = forward(flat, corrupt_ids, 2, 2)
    # chili against the word whose logit difference the corruption moves most: a gap far
    # from zero, so normalising by it keeps the comparison exact to float32
    chili = vocab.index("chili")
    moved = (clean["logits"][5] - clean["logits"][5, chili]) - (
        corrupt["logits"][5] - corrupt["logits"][5, chili]
    )
    other = int(np.argmax(np.abs(moved)))
    diff = lambda ref: ref["logits"][5, chili] - ref["logits"][5, other]  # noqa: E731
    assert abs(diff(clean) - diff(corrupt)) > 0.1
    result = causal.patching(graphdef, params, tokens(CLEAN), tokens(CORRUPT), 5, chili, other)
    for layer in range(2):
        for head in range(2):
            source = clean["heads"][(layer, head)][1].sum(1)
            patched = forward(flat, corrupt_ids, 2, 2, {(layer, head): source})
            expected = (diff(patched) - diff(corrupt)) / (diff(clean) - diff(corrupt))
            assert abs(float(result["heads"][layer, head]) - expected) < 1e-4


def test_trained_run_reads_chili_after_spicy_and_apple_after_sweet(default_root):
    """The answer the default patching experiment reads is the trained run's."""
    info, flat, _, _, _ = _model(default_root[0], "fruits")
    vocab = info.tokenizer.vocab
    chili, apple = vocab.index("chili"), vocab.index("apple")
    clean = forward(flat, info.tokenizer.encode(CLEAN), 2, 2)
    corrupt = forward(flat, info.tokenizer.encode(CORRUPT), 2, 2)
    diff = lambda ref: ref["logits"][5, chili] - ref["logits"][5, apple]  # noqa: E731
    assert diff(clean) > 0 > diff(corrupt)
