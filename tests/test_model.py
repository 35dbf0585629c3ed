"""Parameter count, the exact decompositions of DESIGN.md on random and trained weights, and
the reference and fast attention paths computing the same model."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.metric_views import direct_logit_attribution, source_attributions
from tests.test_model_family import random_flat
from training import checkpoint as ckpt
from training.corpus import builtin_corpus
from training.loss import mean_cross_entropy
from training.model import fast, gpt
from training.model.config import ModelConfig
from training.model.dropout import NO_DROPOUT
from training.model.gpt import GPT, Capture, Intervention, capture, count_params, init_params
from training.model.params import flat_params, unflatten_params
from training.tokenizer import Tokenizer


def test_default_config_has_10660_parameters():
    assert count_params(nnx.eval_shape(lambda: GPT(ModelConfig(), nnx.Rngs(0)))) == 10_660


def test_init_matches_the_article():
    flat = flat_params(init_params(ModelConfig())[1])
    assert abs(flat["wte"].std() - 0.02) < 0.003
    assert np.all(flat["blocks.0.attn.b_o"] == 0) and np.all(flat["ln_f.scale"] == 1)


def _random_model(seed=1, cfg=None):
    """Random weights with non-trivial biases and LayerNorm parameters everywhere (drawn in
    numpy: drawing them op by op in JAX compiled each shape's draw, seconds of the tier)."""
    cfg = cfg or ModelConfig()
    graphdef, params = unflatten_params(cfg, random_flat(cfg, seed))
    return cfg, graphdef, jax.tree.map(jnp.asarray, params)


def _trained_model(default_root):
    root, _ = default_root
    run = ckpt.read_run(root, "fruits")
    flat = ckpt.load_params(run.path, ckpt.list_steps(run.path)[-1])
    graphdef, params = unflatten_params(run.model, flat)
    return run.model, graphdef, params


def _tokens(cfg):
    tok = Tokenizer.from_lines(builtin_corpus().train)
    ids = tok.encode("i like spicy so i like")
    pad = [tok.padding_id] * (cfg.context - len(ids))
    return jnp.asarray([ids + pad, ids[::-1] + pad], jnp.int32)


def _check_all(cfg, graphdef, params):
    tokens = _tokens(cfg)
    cap = jax.tree.map(np.asarray, capture(graphdef, params, tokens))
    flat = flat_params(params)
    tol = lambda *xs: 1e-5 * max(1.0, max(float(np.abs(x).max()) for x in xs))  # noqa: E731

    # logits from capture equal the training forward
    logits = np.asarray(nnx.merge(graphdef, params)(tokens))
    np.testing.assert_allclose(cap.logits, logits, atol=tol(logits))

    # heads + output bias == attention block output
    recon = cap.head_out.sum(2) + cap.attn_bias[None, :, None, :]
    np.testing.assert_allclose(recon, cap.attn_out, atol=tol(cap.attn_out))

    # embeddings + heads + biases + MLPs == final residual
    total = (
        cap.tok_emb
        + cap.pos_emb[None]
        + cap.head_out.sum((1, 2))
        + cap.attn_bias.sum(0)
        + cap.mlp_out.sum(1)
    )
    np.testing.assert_allclose(total, cap.resid[:, -1], atol=tol(cap.resid))

    for b in range(tokens.shape[0]):
        for pos in (0, 3, 5):
            for target in (0, 3, 18):
                comps, attr, ln_bias = direct_logit_attribution(cap, flat, b, pos, target)
                terms = np.append(attr, ln_bias)
                assert abs(terms.sum() - cap.logits[b, pos, target]) <= tol(terms, cap.logits)
                for layer in range(cfg.n_layers):
                    for head in range(cfg.n_heads):
                        src = source_attributions(cap, flat, b, layer, head, pos, target)
                        dla = attr[comps.names.index(f"L{layer}H{head}")]
                        assert np.all(src[pos + 1 :] == 0)  # causal: no future source
                        assert abs(src.sum() - dla) <= tol(src, [dla])


def test_decompositions_exact_on_random_weights():
    _check_all(*_random_model())


def test_decompositions_exact_on_trained_weights(default_root):
    _check_all(*_trained_model(default_root))


def test_padding_never_changes_earlier_positions():
    cfg, graphdef, params = _random_model(3)
    tokens = _tokens(cfg)
    short = capture(graphdef, params, tokens[:, :6])
    full = capture(graphdef, params, tokens)
    np.testing.assert_allclose(short.logits, full.logits[:, :6], atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_dropout_only_with_a_key(seed):
    cfg, graphdef, params = _random_model(seed)
    model = nnx.merge(graphdef, params)
    tokens = _tokens(cfg)
    a, b = model(tokens), model(tokens)
    np.testing.assert_array_equal(a, b)
    c = model(tokens, dropout_key=jax.random.key(seed))
    assert not np.allclose(a, c)


@functools.partial(jax.jit, static_argnums=0)
def _dropout_capture(graphdef, state, tokens, key, first_row):
    """The model's own forward pass with dropout on, every internal captured."""
    model = nnx.merge(graphdef, state)
    return model(tokens, dropout_key=key, first_row=first_row, capture=True)


def _dropout_keeps(model, tokens, key, first_row=0, queries=5):
    """Which elements each dropout site of each layer kept, read from the forward pass.

    From a capture with dropout on: the attention and MLP outputs are recorded before their
    dropout and the residual stream after it, so a kept element is one the residual moved by
    (an exact zero where dropped); the attention pattern's mask is solved for from the
    recorded (undropped) patterns and values, per query row (rows ``< queries``, whose
    unknowns are fewer than the width)."""
    cfg = model.cfg
    graphdef, state = nnx.split(model)
    cap = _dropout_capture(graphdef, state, tokens, key, jnp.int32(first_row))
    scale = 1.0 / (1.0 - cfg.dropout)
    keeps = []
    for layer in range(cfg.n_layers):
        attn = model.blocks[layer].attn
        moved = np.asarray(cap.resid_mid[:, layer] - cap.resid[:, layer])
        attn_keep = np.abs(moved) > 0.5 * scale * np.abs(np.asarray(cap.attn_out[:, layer]))
        moved = np.asarray(cap.resid[:, layer + 1] - cap.resid_mid[:, layer])
        mlp_keep = np.abs(moved) > 0.5 * scale * np.abs(np.asarray(cap.mlp_out[:, layer]))
        p = np.asarray(cap.patterns[:, layer], np.float64)  # [B, H, T, T]
        writes = np.einsum(
            "bhsk,hkd->bhsd",
            np.asarray(cap.values[:, layer], np.float64),
            np.asarray(attn.w_o[...], np.float64),
        )
        out = np.asarray(cap.attn_out[:, layer], np.float64) - np.asarray(attn.b_o[...])
        rows = []
        for b in range(p.shape[0]):
            for q in range(queries):
                cols = scale * p[b, :, q, : q + 1, None] * writes[b, :, : q + 1]  # [H, S, D]
                solved = np.linalg.lstsq(cols.reshape(-1, cfg.d_model).T, out[b, q], rcond=None)
                rows.append(solved[0])
        pattern = np.concatenate(rows)
        assert np.abs(pattern - np.round(pattern)).max() < 1e-3  # a 0/1 mask, exactly solved
        keeps.append((pattern > 0.5, attn_keep, mlp_keep))
    return keeps


def test_dropout_masks_keep_the_rate_and_are_independent():
    """The masks the forward pass applies: each site keeps 1 - rate of its elements;
    sites, steps and neighbouring elements agree only as often as independent Bernoulli
    draws would."""
    cfg = ModelConfig()
    model = nnx.merge(*init_params(cfg))
    tokens = jax.random.randint(jax.random.key(0), (64, cfg.context), 0, cfg.vocab_size)

    def z_agree(x: np.ndarray, y: np.ndarray) -> float:
        """How far the agreement of two masks is from independence, in standard errors."""
        expected = x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean())
        return ((x == y).mean() - expected) / np.sqrt(expected * (1 - expected) / len(x))

    a = _dropout_keeps(model, tokens, jax.random.key(1))
    b = _dropout_keeps(model, tokens, jax.random.key(2))
    sites = [m.ravel() for layer in a for m in layer]
    others = [m.ravel() for layer in b for m in layer]
    for mask in sites + others:
        se = np.sqrt(cfg.dropout * (1 - cfg.dropout) / len(mask))
        assert abs(mask.mean() - (1.0 - cfg.dropout)) < 5 * se, mask.mean()
        assert abs(z_agree(mask[1:], mask[:-1])) < 5  # neighbours
    for x, y in zip(sites, others, strict=True):  # another step: another mask
        assert abs(z_agree(x, y)) < 5
    n = len(sites[1])
    assert abs(z_agree(sites[1], sites[5][:n])) < 5  # another site and layer
    assert abs(z_agree(sites[0], sites[3])) < 5  # the pattern site of the next layer
    # the same key gives the same masks (training is repeatable and resumable)
    again = _dropout_keeps(model, tokens, jax.random.key(1))
    for layer_again, layer_a in zip(again, a, strict=True):
        for x, y in zip(layer_again, layer_a, strict=True):
            np.testing.assert_array_equal(x, y)


def test_a_shard_draws_its_rows_of_the_whole_batch_masks():
    cfg = ModelConfig()
    model = nnx.merge(*init_params(cfg))
    tokens = jax.random.randint(jax.random.key(0), (64, cfg.context), 0, cfg.vocab_size)
    key = jax.random.key(3)
    whole = _dropout_keeps(model, tokens, key)
    upper = _dropout_keeps(model, tokens[32:], key, first_row=32)
    alone = _dropout_keeps(model, tokens[32:], key)  # the same rows, as a batch of their own
    for w_layer, u_layer, a_layer in zip(whole, upper, alone, strict=True):
        for w, u, a in zip(w_layer, u_layer, a_layer, strict=True):
            np.testing.assert_array_equal(w[len(w) // 2 :], u)
            assert not np.array_equal(u, a)
    graphdef, state = nnx.split(model)
    logits = _dropout_capture(graphdef, state, tokens, key, jnp.int32(0)).logits
    shard = _dropout_capture(graphdef, state, tokens[32:], key, jnp.int32(32)).logits
    np.testing.assert_allclose(np.asarray(logits)[32:], np.asarray(shard), atol=1e-5)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_fast_attention_pieces_equal_the_reference(heads):
    """The head-masked query rows (one product for all heads) against heads on their own axis."""
    cfg = ModelConfig(n_heads=heads, d_model=24, n_layers=1)
    attn = nnx.merge(*_random_model(3, cfg)[1:]).blocks[0].attn
    x = jax.random.normal(jax.random.key(0), (3, cfg.context, cfg.d_model))
    want = attn.reference(x)
    pattern, v = fast.pattern_and_values(attn.w_qkv[...], x)
    np.testing.assert_allclose(pattern, want.pattern, atol=1e-6)
    np.testing.assert_allclose(fast.split_heads(v, cfg.d_head), want.values, atol=1e-6)
    # sums of ~24 float32 products of size ~1 in another order: a few ulps, relative
    scale = 1e-6 * max(1.0, float(np.abs(want.out).max()))
    out = fast.combine(attn.w_o[...], attn.b_o[...], pattern, v)
    np.testing.assert_allclose(out, want.out, atol=scale)
    # with each head's output (capture, interventions): heads on their own axis instead
    w = attn.w_qkv[...], attn.w_o[...], attn.b_o[...]
    each = fast.fast_attention(*w, x, NO_DROPOUT, each_head=True)
    for name in ("pattern", "values", "heads", "out"):
        np.testing.assert_allclose(getattr(each, name), getattr(want, name), atol=scale)


def test_the_embedding_gather_equals_the_one_hot_product():
    """Capture gathers token embeddings, training multiplies by one-hot rows: the same
    numbers bit for bit, ids past the vocabulary (zeros) included."""
    cfg = ModelConfig(vocab_size=23, d_model=24, n_heads=4)
    model = nnx.merge(*_random_model(5, cfg)[1:])
    tokens = jnp.asarray([[0, 5, 22, 23, 40, 1]], jnp.int32)
    gathered = np.asarray(model.embed(tokens, gather=True))
    np.testing.assert_array_equal(gathered, np.asarray(model.embed(tokens, gather=False)))
    assert not gathered[0, 3:5].any()


# The two attention paths, compared on every output. Eager (not jitted), so a path
# monkeypatched by a test is the one that runs.

PATH_CONFIG = ModelConfig(vocab_size=23, n_layers=3, n_heads=4, d_model=24)


def _intervention(cfg, batch, seed):
    """Some heads and residual positions replaced by random vectors, the rest kept."""
    r = np.random.default_rng(seed)
    L, H, T, D = cfg.n_layers, cfg.n_heads, cfg.context, cfg.d_model
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return Intervention(
        head_keep=f32(r.integers(0, 2, (L, H))),
        head_value=f32(r.normal(size=(batch, L, H, T, D))),
        resid_keep=f32(r.integers(0, 2, (L + 1, T))),
        resid_value=f32(r.normal(size=(batch, L + 1, T, D))),
    )


def _path_differences(cfg, seed, intervention):
    """Per field of the capture (and the logits of the plain forward pass): the largest
    difference between the two paths, and the tolerance it must keep within."""
    _, graphdef, params = _random_model(seed, cfg)
    model = nnx.merge(graphdef, params)
    tokens = jax.random.randint(jax.random.key(seed), (3, cfg.context), 0, cfg.vocab_size)
    iv = _intervention(cfg, tokens.shape[0], seed) if intervention else None
    runs = {
        path: model(tokens, attention=path, capture=True, intervention=iv)
        for path in ("reference", "fast")
    }
    out = {}
    for field in dataclasses.fields(Capture):
        ref, fst = (np.asarray(getattr(runs[p], field.name)) for p in ("reference", "fast"))
        assert ref.shape == fst.shape, field.name
        out[field.name] = (np.abs(ref - fst).max(), 1e-5 * max(1.0, np.abs(ref).max()))
    ref, fst = (np.asarray(model(tokens, attention=p)) for p in ("reference", "fast"))
    out["forward logits"] = (np.abs(ref - fst).max(), 1e-5 * max(1.0, np.abs(ref).max()))
    return out


@pytest.mark.parametrize("intervention", [False, True], ids=["plain", "intervention"])
def test_reference_and_fast_paths_agree(intervention):
    """Logits and every capture field, with and without an intervention, dropout off."""
    for name, (diff, tol) in _path_differences(PATH_CONFIG, 0, intervention).items():
        assert diff <= tol, f"{name}: the paths differ by {diff:.2e}"


@pytest.mark.parametrize(("wrong", "intervention"), [("fast", False), ("reference", True)])
def test_the_path_comparison_catches_a_wrong_path(monkeypatch, wrong, intervention):
    """The two paths are different code: a small error in either one is caught."""
    if wrong == "fast":
        real = gpt.fast_attention

        def skewed(w_qkv, *args, **kwargs):  # one head's queries slightly off
            return real(w_qkv.at[:, 0, -1].multiply(1.01), *args, **kwargs)

        monkeypatch.setattr(gpt, "fast_attention", skewed)
    else:
        real = gpt.CausalSelfAttention.reference

        def skewed_values(self, x, drop=NO_DROPOUT):  # one head's values slightly off
            got = real(self, x, drop)
            return got._replace(values=got.values.at[:, -1].multiply(1.001))

        monkeypatch.setattr(gpt.CausalSelfAttention, "reference", skewed_values)
    diffs = _path_differences(PATH_CONFIG, 0, intervention)
    assert any(diff > tol for diff, tol in diffs.values())


def test_the_paths_train_alike():
    """Loss and gradients agree with dropout on (both paths apply the same masks)."""
    cfg = PATH_CONFIG
    _, graphdef, params = _random_model(2, cfg)
    batch = jax.random.randint(jax.random.key(2), (8, cfg.context + 1), 0, cfg.vocab_size)

    @jax.jit
    def both(params):
        def loss(params, path):
            model = nnx.merge(graphdef, params)
            logits = model(batch[:, :-1], attention=path, dropout_key=jax.random.key(7))
            return mean_cross_entropy(logits, batch[:, 1:])

        return [jax.value_and_grad(loss)(params, path) for path in ("reference", "fast")]

    (ref_loss, ref_grads), (fast_loss, fast_grads) = both(params)
    np.testing.assert_allclose(ref_loss, fast_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ref_grads), jax.tree.leaves(fast_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6 * max(1.0, float(np.abs(a).max())))


def test_a_checkpoint_loads_in_either_path():
    """One parameter schema: names written from one model load and run on both paths."""
    cfg, graphdef, params = _random_model(4)
    _, loaded = unflatten_params(cfg, flat_params(params))
    tokens = _tokens(cfg)
    want = capture(graphdef, params, tokens)
    for path in ("reference", "fast"):
        got = capture(graphdef, loaded, tokens, attention=path)
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-5)
