"""Parameter count and the exact decompositions of DESIGN.md, on random and trained weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from interp_app.analysis import direct_logit_attribution, source_attributions
from training import checkpoint as ckpt
from training.config import ModelConfig
from training.corpus import builtin_corpus
from training.model import GPT, capture, count_params
from training.params import flat_params, unflatten_params
from training.tokenizer import Tokenizer


def test_default_config_has_10660_parameters():
    assert count_params(GPT(ModelConfig(), nnx.Rngs(0))) == 10_660


def test_init_matches_the_article():
    flat = flat_params(nnx.state(GPT(ModelConfig(), nnx.Rngs(0)), nnx.Param))
    assert abs(flat["wte"].std() - 0.02) < 0.003
    assert np.all(flat["blocks.0.attn.b_o"] == 0) and np.all(flat["ln_f.scale"] == 1)


def _random_model(seed=1):
    """Random weights with non-trivial biases and LayerNorm parameters everywhere."""
    cfg = ModelConfig()
    graphdef, params = nnx.split(GPT(cfg, nnx.Rngs(seed)))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=False)]
    params = jax.tree.unflatten(treedef, leaves)
    return cfg, graphdef, params


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


def test_dropout_masks_keep_the_rate_and_are_independent():
    """The hashed masks: each site keeps 1 - rate of its elements; sites, steps and
    neighbouring elements agree only as often as independent Bernoulli draws would."""
    cfg = ModelConfig()
    model = GPT(cfg, nnx.Rngs(params=0))

    def z_agree(x: np.ndarray, y: np.ndarray) -> float:
        """How far the agreement of two masks is from independence, in standard errors."""
        expected = x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean())
        return ((x == y).mean() - expected) / np.sqrt(expected * (1 - expected) / len(x))

    a = model._masks(jax.random.key(1), 64, cfg.context)
    b = model._masks(jax.random.key(2), 64, cfg.context)
    sites = [np.asarray(m).ravel() for layer in a for m in layer]
    others = [np.asarray(m).ravel() for layer in b for m in layer]
    for mask in sites + others:
        se = np.sqrt(0.8 * 0.2 / len(mask))
        assert abs(mask.mean() - (1.0 - cfg.dropout)) < 5 * se, mask.mean()
        assert abs(z_agree(mask[1:], mask[:-1])) < 5  # neighbours
    for x, y in zip(sites, others, strict=True):  # another step: another mask
        assert abs(z_agree(x, y)) < 5
    n = len(sites[1])
    assert abs(z_agree(sites[1], sites[4][:n])) < 5  # another site or layer
    # the same key gives the same masks (training is repeatable and resumable)
    again = [
        np.asarray(m) for layer in model._masks(jax.random.key(1), 64, cfg.context) for m in layer
    ]
    assert all(np.array_equal(x.ravel(), y) for x, y in zip(again, sites, strict=True))


def test_a_shard_draws_its_rows_of_the_whole_batch_masks():
    cfg = ModelConfig()
    model = GPT(cfg, nnx.Rngs(params=0))
    key = jax.random.key(3)
    whole = model._masks(key, 64, cfg.context)
    upper = model._masks(key, 32, cfg.context, first_row=32)
    for w_layer, u_layer in zip(whole, upper, strict=True):
        for w, u in zip(w_layer, u_layer, strict=True):
            np.testing.assert_array_equal(np.asarray(w)[32:], np.asarray(u))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_equals_plain_per_head_attention(heads):
    """The head-masked query rows (one product for all heads) against heads on a batch axis."""
    cfg = ModelConfig(n_heads=heads, d_model=24, n_layers=1)
    attn = GPT(cfg, nnx.Rngs(params=3)).blocks[0].attn
    x = jax.random.normal(jax.random.key(0), (3, cfg.context, cfg.d_model))
    pattern, v = attn.pattern_and_values(x)
    q, k, v_heads = jnp.einsum("btd,dchk->cbhtk", x, attn.w_qkv[...])
    scores = jnp.einsum("bhqk,bhsk->bhqs", q, k) / np.sqrt(cfg.d_head)
    causal = jnp.tril(jnp.ones((cfg.context, cfg.context), bool))
    want = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    np.testing.assert_allclose(pattern, want, atol=1e-6)
    np.testing.assert_allclose(attn.split_heads(v), v_heads, atol=1e-6)
    z = jnp.einsum("bhqs,bhsk->bhqk", want, v_heads)
    out = jnp.einsum("bhqk,hkd->bqd", z, attn.w_o[...]) + attn.b_o[...]
    np.testing.assert_allclose(attn.combine(pattern, v), out, atol=1e-6)
