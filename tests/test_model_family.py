"""The model family of one ModelConfig (issue #14 item 1): every config runs on both attention
paths with the same numbers, matches an independent float64 numpy forward written from the
GPT-NeoX / GPT-2 semantics, keeps the Capture's fields and shapes, and keeps the exact
decompositions (head outputs, residual components, direct logit attribution) exact.

The sweep over a pairwise-covering set of configs is the slow tier (``SCALE_TESTS``); the
fast tier checks one representative non-default config."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from interp_app.core import metrics
from interp_app.core.forward import dot_ranking
from tests.metric_views import direct_logit_attribution, source_attributions
from training.model.config import ModelConfig
from training.model.gpt import Capture, Intervention
from training.model.params import ParamsError, abstract_model, flat_params, unflatten_params
from training.steps import sequence_loss

BASE: dict[str, Any] = {"vocab_size": 23, "n_layers": 2, "n_heads": 2, "d_model": 16, "d_mlp": 32}
POSITIONS: dict[str, dict[str, Any]] = {
    "learned": {},
    "rotary25": {"positions": "rotary", "rotary_dims": 2, "rotary_base": 500.0},
    "rotary100": {"positions": "rotary", "rotary_dims": 8},
}
UNEMBED: dict[str, dict[str, Any]] = {"tied": {}, "untied": {"tied": False, "unembed_bias": True}}

#: (positions, activation, parallel, unembedding, qkv bias, mlp): every pair of any two
#: factors' values appears in some row (``test_the_sweep_covers_every_pair``).
PAIRWISE = [
    ("learned", "relu", False, "tied", False, True),
    ("learned", "gelu", True, "untied", True, False),
    ("rotary25", "gelu_tanh", False, "tied", True, False),
    ("rotary100", "gelu_tanh", True, "untied", False, True),
    ("rotary25", "relu", True, "untied", False, False),
    ("rotary100", "gelu", False, "tied", True, True),
    ("rotary25", "gelu", False, "untied", False, True),
    ("rotary100", "relu", True, "tied", True, False),
    ("learned", "gelu_tanh", False, "tied", False, True),
]
FACTORS = [list(POSITIONS), ["relu", "gelu", "gelu_tanh"], [False, True], list(UNEMBED)]
FACTORS += [[False, True], [True, False]]


def family_config(pos, act, parallel, unembed, qkv, mlp) -> ModelConfig:
    extra = {**POSITIONS[pos], **UNEMBED[unembed]}
    return ModelConfig(
        **BASE, **extra, activation=act, parallel=parallel, qkv_bias=qkv, mlp=mlp, dropout=0.0
    )


#: The fast tier's one non-default config: every switch away from the article's model.
REPRESENTATIVE = family_config("rotary25", "gelu", True, "untied", True, True)


def random_flat(cfg: ModelConfig, seed: int = 1) -> dict[str, np.ndarray]:
    """Random weights by checkpoint name (numpy: no compilation), every bias and LayerNorm
    parameter away from 0 / 1."""
    r = np.random.default_rng(seed)
    _, template = abstract_model(cfg)
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), template)
    flat = {}
    for name, leaf in flat_params(zeros).items():
        noise = 0.3 * r.normal(size=leaf.shape)
        flat[name] = (noise + 1.0 if name.endswith(".scale") else noise).astype(np.float32)
    return flat


def _tokens(cfg: ModelConfig, seed: int = 0) -> jax.Array:
    r = np.random.default_rng(seed)
    return jnp.asarray(r.integers(0, cfg.vocab_size, (2, cfg.context)), jnp.int32)


# An independent float64 forward pass, written from the HF semantics (docs/plans/hf-import.md).


def _ln(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    c = x - x.mean(-1, keepdims=True)
    return c / np.sqrt((c * c).mean(-1, keepdims=True) + eps) * scale + bias


def _act(name: str, x: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "gelu":
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _rope(x: np.ndarray, r: int, base: float) -> np.ndarray:
    """[H, T, K]: dims i and i + r/2 of position t turn by t * base^(-2i/r), one pair at a time."""
    out = x.copy()
    for t in range(x.shape[1]):
        for i in range(r // 2):
            theta = t * base ** (-2.0 * i / r)
            a, b = x[:, t, i], x[:, t, i + r // 2]
            out[:, t, i] = a * math.cos(theta) - b * math.sin(theta)
            out[:, t, i + r // 2] = b * math.cos(theta) + a * math.sin(theta)
    return out


def _np_attention(cfg: ModelConfig, p: dict, pre: str, h: np.ndarray) -> np.ndarray:
    qkv = np.einsum("td,dshe->shte", h, p[pre + "w_qkv"])  # [3, H, T, K]
    if cfg.qkv_bias:
        qkv = qkv + p[pre + "b_qkv"][:, :, None, :]
    q, k, v = qkv
    if cfg.positions == "rotary":
        q, k = (
            _rope(q, cfg.rotary_dims, cfg.rotary_base),
            _rope(k, cfg.rotary_dims, cfg.rotary_base),
        )
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(cfg.d_head)
    t = h.shape[0]
    scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    return np.einsum("hts,hse,hed->td", pattern, v, p[pre + "w_o"]) + p[pre + "b_o"]


def numpy_logits(cfg: ModelConfig, flat: dict, ids: np.ndarray) -> np.ndarray:
    """[T, V] logits of one prompt, in float64."""
    p = {k: np.asarray(v, np.float64) for k, v in flat.items()}
    eps = cfg.ln_eps
    x = p["wte"][ids] + (p["wpe"][: len(ids)] if cfg.positions == "learned" else 0.0)
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        attn = _np_attention(
            cfg, p, b + "attn.", _ln(x, p[b + "ln1.scale"], p[b + "ln1.bias"], eps)
        )
        mlp: np.ndarray | float = 0.0
        if cfg.mlp:
            h = _ln(x if cfg.parallel else x + attn, p[b + "ln2.scale"], p[b + "ln2.bias"], eps)
            hidden = _act(cfg.activation, h @ p[b + "mlp.w_in"] + p[b + "mlp.b_in"])
            mlp = hidden @ p[b + "mlp.w_out"] + p[b + "mlp.b_out"]
        x = x + attn + mlp
    final = _ln(x, p["ln_f.scale"], p["ln_f.bias"], eps)
    w_u = p["wte"].T if cfg.tied else p["w_u"]
    return final @ w_u + (p["b_u"] if cfg.unembed_bias else 0.0)


# The checks every config must pass.


def _intervention(cfg: ModelConfig, batch: int, seed: int) -> Intervention:
    """Some heads and residual positions replaced by random vectors, the rest kept."""
    r = np.random.default_rng(seed)
    L, H, T, D = cfg.n_layers, cfg.n_heads, cfg.context, cfg.d_model
    keep_heads = np.array([[1.0, 0.0]] + [[0.0, 1.0]] * (L - 1))[:, :H]
    keep_resid = r.integers(0, 2, (L + 1, T)).astype(np.float32)
    keep_resid[1, 3] = 0.0  # at least one replaced position, after the embeddings
    return Intervention(
        head_keep=jnp.asarray(keep_heads, jnp.float32),
        head_value=jnp.asarray(r.normal(size=(batch, L, H, T, D)), jnp.float32),
        resid_keep=jnp.asarray(keep_resid),
        resid_value=jnp.asarray(r.normal(size=(batch, L + 1, T, D)), jnp.float32),
    )


def _shapes(cfg: ModelConfig, b: int) -> dict[str, tuple[int, ...]]:
    L, H, T, D, K, V = (cfg.n_layers, cfg.n_heads, cfg.context, cfg.d_model, cfg.d_head, 0)
    V = cfg.vocab_size
    return {
        "tokens": (b, T),
        "tok_emb": (b, T, D),
        "pos_emb": (T, D),
        "resid": (b, L + 1, T, D),
        "resid_mid": (b, L, T, D),
        "patterns": (b, L, H, T, T),
        "values": (b, L, H, T, K),
        "head_out": (b, L, H, T, D),
        "attn_bias": (L, D),
        "attn_out": (b, L, T, D),
        "mlp_out": (b, L, T, D),
        "final_inv_std": (b, T),
        "final": (b, T, D),
        "logits": (b, T, V),
    }


def _tol(*xs) -> float:
    return 1e-5 * max(1.0, max(float(np.abs(np.asarray(x)).max()) for x in xs))


def _paths_agree(reference: Capture, fast: Capture) -> None:
    for field in dataclasses.fields(Capture):
        ref, fst = np.asarray(getattr(reference, field.name)), np.asarray(getattr(fast, field.name))
        assert ref.shape == fst.shape, field.name
        assert np.abs(ref - fst).max() <= _tol(ref), f"{field.name}: the paths differ"


def _sums_hold(cfg: ModelConfig, cap: Capture, kept: np.ndarray | None = None) -> None:
    """Heads + bias = attention output; the residual before, between and after each block
    adds up (parallel: the MLP beside), where ``kept`` [L+1, T] (an intervention's
    ``resid_keep``) left it; without one, embeddings + attention + MLP = final residual."""
    got = {f.name: getattr(cap, f.name).shape for f in dataclasses.fields(Capture)}
    assert got == _shapes(cfg, cap.tokens.shape[0])
    recon = cap.head_out.sum(2) + cap.attn_bias[None, :, None, :]
    np.testing.assert_allclose(recon, cap.attn_out, atol=_tol(cap.attn_out))
    np.testing.assert_allclose(
        cap.resid_mid, cap.resid[:, :-1] + cap.attn_out, atol=_tol(cap.resid_mid)
    )
    kept = np.ones(cap.resid.shape[1:3]) if kept is None else np.asarray(kept)
    after = np.where(kept[None, 1:, :, None] > 0, cap.resid_mid + cap.mlp_out, cap.resid[:, 1:])
    np.testing.assert_allclose(cap.resid[:, 1:], after, atol=_tol(cap.resid))
    if not kept.all():
        return
    total = cap.tok_emb + cap.pos_emb[None] + cap.attn_out.sum(1) + cap.mlp_out.sum(1)
    np.testing.assert_allclose(total, cap.resid[:, -1], atol=_tol(cap.resid))
    if cfg.positions == "rotary":
        assert not np.any(cap.pos_emb)
    if not cfg.mlp:
        assert not np.any(cap.mlp_out)


def _dla_exact(cfg: ModelConfig, cap: Capture, flat: dict, sweep: bool) -> None:
    """Every component's direct attribution plus the constant (LayerNorm bias and unembedding
    bias) is the logit; one head's sources add up to its attribution."""
    for b, pos, target in [(0, 0, 1), (0, 7, 5), (1, 11, 22)]:
        comps, attr, const = direct_logit_attribution(cap, flat, b, pos, target)
        terms = np.append(attr, const)
        assert abs(terms.sum() - cap.logits[b, pos, target]) <= _tol(terms, cap.logits)
        if not sweep:
            continue
        one = metrics.one_prompt(cap, b)
        _, lens_prob = metrics.evaluate(metrics.logit_lens, one, flat, cfg.ln_eps)
        probs = np.exp(cap.logits[b, pos] - cap.logits[b, pos].max())
        assert abs(lens_prob[-1, pos] - probs.max() / probs.sum()) < 1e-5  # the last reads out
        layer, head = cfg.n_layers - 1, cfg.n_heads - 1
        src = source_attributions(cap, flat, b, layer, head, pos, target)
        dla = attr[comps.names.index(f"L{layer}H{head}")]
        assert abs(src.sum() - dla) <= _tol(src, [dla])


@functools.partial(jax.jit, static_argnums=(0, 4))
def _runs(graphdef, params, tokens, iv, forward: bool) -> dict[str, jax.Array | Capture]:
    """Both paths' captures, plain and intervened (and with ``forward`` the plain forward
    pass's logits, which skips each head's output), in one compilation."""
    model = nnx.merge(graphdef, params)
    out: dict[str, jax.Array | Capture] = {}
    for path in ("reference", "fast"):
        out[path] = model(tokens, attention=path, capture=True)
        out[f"{path} intervened"] = model(tokens, attention=path, capture=True, intervention=iv)
        if forward:
            out[f"{path} logits"] = model(tokens, attention=path)
    return out


def check_config(cfg: ModelConfig, seed: int = 1, sweep: bool = True) -> None:
    """Every claim of the module for one config, on random weights (``sweep``: also the
    plain forward pass, one head's per-source attributions and the logit lens)."""
    flat = random_flat(cfg, seed)
    graphdef, params = unflatten_params(cfg, flat)
    tokens = _tokens(cfg, seed)
    iv = _intervention(cfg, tokens.shape[0], seed)
    runs = jax.tree.map(np.asarray, _runs(graphdef, params, tokens, iv, sweep))
    _paths_agree(runs["reference"], runs["fast"])
    plain = runs["fast"]
    for name in ("reference logits", "fast logits") if sweep else ():
        np.testing.assert_allclose(runs[name], plain.logits, atol=_tol(plain.logits))
    for b in range(tokens.shape[0]):
        want = numpy_logits(cfg, flat, np.asarray(tokens[b]))
        np.testing.assert_allclose(plain.logits[b], want, atol=20 * _tol(want))
    _sums_hold(cfg, plain)
    _dla_exact(cfg, plain, flat, sweep)

    _paths_agree(runs["reference intervened"], runs["fast intervened"])
    cap = runs["fast intervened"]
    _sums_hold(cfg, cap, np.asarray(iv.resid_keep))
    np.testing.assert_array_equal(cap.resid[:, 1, 3], np.asarray(iv.resid_value[:, 1, 3]))
    np.testing.assert_array_equal(cap.head_out[:, 0, 1], np.asarray(iv.head_value[:, 0, 1]))
    assert not np.allclose(cap.logits, plain.logits)


def test_a_non_default_config_is_exact_on_both_paths():
    """Rotary (25%), parallel, GELU, qkv bias, untied unembedding with a bias."""
    check_config(REPRESENTATIVE, sweep=False)


@pytest.mark.parametrize("row", PAIRWISE, ids=lambda r: "-".join(map(str, r)))
def test_every_config_is_exact_on_both_paths(row):
    check_config(family_config(*row))


def test_the_sweep_covers_every_pair():
    """Pairwise covering: for any two factors, every combination of their values is tested."""
    for (i, a), (j, b) in itertools.combinations(enumerate(FACTORS), 2):
        seen = {(row[i], row[j]) for row in PAIRWISE}
        assert seen == set(itertools.product(a, b)), (i, j)


def test_the_config_refuses_what_it_cannot_build():
    """Each wrong field is named with the choices it allows."""
    cases = [
        ({"positions": "alibi"}, "positions must be one of 'learned', 'rotary'"),
        ({"activation": "swish"}, "activation must be one of 'relu', 'gelu', 'gelu_tanh'"),
        ({"positions": "rotary", "rotary_dims": 3}, "rotary_dims must be even and in 1..d_head"),
        ({"positions": "rotary", "rotary_dims": 12}, r"1..d_head \(10\)"),
        ({"positions": "rotary"}, "got 0"),
        ({"rotary_dims": 4}, "rotary_dims .* is for positions='rotary'"),
        ({"positions": "rotary", "rotary_dims": 4, "rotary_base": 0.0}, "rotary_base"),
        ({"tied": "no"}, "tied must be true or false"),
        ({"ln_eps": 0.0}, "ln_eps must be positive"),
    ]
    for fields, message in cases:
        with pytest.raises(ValueError, match=message):
            ModelConfig(**fields)


def test_the_article_model_keeps_its_schema_and_run_json_reads_as_before():
    """The default adds no parameter; an old run.json (no new keys) is the default config."""
    names = set(random_flat(ModelConfig()))
    assert "wpe" in names and not names & {"w_u", "b_u", "blocks.0.attn.b_qkv"}
    assert {n for n in names if "ln2" in n or "mlp" in n}
    old = {k: v for k, v in ModelConfig().to_dict().items() if k in _OLD_FIELDS}
    assert ModelConfig.from_dict(old) == ModelConfig()
    assert ModelConfig.from_dict(REPRESENTATIVE.to_dict()) == REPRESENTATIVE
    flat = random_flat(REPRESENTATIVE)
    assert {"w_u", "b_u", "blocks.1.attn.b_qkv"} <= set(flat) and "wpe" not in flat
    assert flat["w_u"].shape == (16, 23) and flat["blocks.0.attn.b_qkv"].shape == (3, 2, 8)
    attn_only = random_flat(family_config("learned", "relu", False, "tied", False, False))
    assert not [n for n in attn_only if ".ln2." in n or ".mlp." in n]
    # the timeline reads the unembedding from the state pytree, one step from flat arrays
    _, state = unflatten_params(REPRESENTATIVE, flat)
    stacked = metrics.readout(state, REPRESENTATIVE.n_layers)
    for got, want in zip(stacked, metrics.host_readout(flat, 2), strict=True):
        np.testing.assert_array_equal(got, want)


_OLD_FIELDS = (
    *("vocab_size", "n_layers", "n_heads", "d_model", "d_mlp", "context"),
    *("dropout", "init_std", "ln_eps"),
)


def test_unflatten_names_a_missing_extra_or_misshapen_tensor():
    cfg = REPRESENTATIVE
    flat = random_flat(cfg)
    missing = {k: v for k, v in flat.items() if k != "w_u"}
    with pytest.raises(ParamsError, match=r"missing \['w_u'\]"):
        unflatten_params(cfg, missing)
    with pytest.raises(ParamsError, match=r"unexpected \['wpe'\]"):
        unflatten_params(cfg, {**flat, "wpe": np.zeros((12, 16), np.float32)})
    bad = {**flat, "blocks.0.attn.b_qkv": np.zeros((3, 16), np.float32)}
    with pytest.raises(
        ParamsError,
        match=r"blocks.0.attn.b_qkv has shape \(3, 16\), expected "
        r"\(3, 2, 8\)",
    ):
        unflatten_params(cfg, bad)


def test_what_a_vector_predicts_reads_the_unembedding():
    """The 3D view's prediction is ``final @ w_u + b_u``, not the input embeddings."""
    r = np.random.default_rng(0)
    final, w_u, b_u = r.normal(size=5), r.normal(size=(5, 9)), r.normal(size=9)
    ids, dots = dot_ranking(final, w_u, 3, b_u)
    logits = final @ w_u + b_u
    assert ids.tolist() == np.argsort(-logits)[:3].tolist()
    np.testing.assert_allclose(dots, logits[ids])
    tied_w_u, tied_b_u = metrics.unembedding({"wte": w_u.T}, np)
    np.testing.assert_array_equal(tied_w_u, w_u)
    assert not tied_b_u.any() and tied_b_u.shape == (9,)


def test_a_non_default_config_trains():
    """A few AdamW steps with dropout on lower the loss (both branches, rotary, biases)."""
    cfg = dataclasses.replace(REPRESENTATIVE, dropout=0.1)
    graphdef, params = unflatten_params(cfg, random_flat(cfg, 3))
    r = np.random.default_rng(3)
    batch = jnp.asarray(r.integers(0, 6, (16, cfg.context + 1)), jnp.int32)  # 6 tokens used
    opt = optax.adamw(3e-3)

    @jax.jit
    def losses(params):
        def step(carry, i):
            params, state = carry
            loss, grads = jax.value_and_grad(sequence_loss, argnums=1)(
                graphdef, params, batch, jax.random.key(i)
            )
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        return jax.lax.scan(step, (params, opt.init(params)), jnp.arange(60))[1]

    got = np.asarray(losses(params))
    assert np.all(np.isfinite(got)) and got[-5:].mean() < 0.7 * got[:5].mean(), got


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_layers": 2.0}, "n_layers must be an integer, got 2.0"),
        ({"d_mlp": True}, "d_mlp must be an integer, got True"),
        ({"vocab_size": "19"}, "vocab_size must be an integer"),
        ({"n_heads": 0}, "n_heads must be at least 1, got 0"),  # not a division by zero
        ({"ln_eps": math.inf}, "ln_eps must be a finite number, got inf"),
        ({"dropout": True}, "dropout must be a finite number"),
        (
            {"positions": "rotary", "rotary_dims": 2, "rotary_base": math.nan},
            "rotary_base must be a finite number, got nan",
        ),
        ({"rotary_dims": -2}, "rotary_dims must be at least 0"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_are_refused(changes, message):
    """Checked when the config is made, so a bad value never reaches a JAX shape."""
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelConfig(**changes)
