"""Head metrics and predictions at every checkpoint, in one vectorised pass.

The parameters of all steps are stacked on a leading axis and the capture pass is mapped
over it with ``jax.vmap``, in fixed-size chunks so that a run of any length (and one that
grows while training) reuses one compilation. Query values (position, target, source,
prompt length) are traced, so changing them never recompiles either.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from interp_app.core.analysis import attribution_share

CHUNK = 64  # steps per vmapped call; the last chunk is padded


def _metrics_one(graphdef, params, tokens, pos, target, src, length, ablated, mode, reference):
    """All per-head metrics for one step: each [L, H]; probabilities [V] at ``pos``."""
    from interp_app.core.causal import ablation, effects, mode_means

    model = nnx.merge(graphdef, params)
    clean = model(tokens, capture=True)
    means = mode_means(graphdef, params, mode, reference)  # this step's, for valid-mean
    cap = model(tokens, capture=True, intervention=ablation(clean, ablated, mode, length, means))
    wte = params["wte"][...]
    gamma = params["ln_f"]["scale"][...]
    beta = params["ln_f"]["bias"][...]
    u = wte[target]  # [D]
    inv_std = cap.final_inv_std[0, pos]

    def dla(vectors):  # [..., D] -> [...]: through the final LayerNorm with its scale held
        centred = vectors - vectors.mean(-1, keepdims=True)
        return (centred * (inv_std * gamma)) @ u

    heads = dla(cap.head_out[0, :, :, pos])  # [L, H]
    rest = jnp.concatenate(  # every other term of the logit's split, as in analysis
        [
            cap.tok_emb[0, pos][None],
            cap.pos_emb[pos][None],
            cap.attn_bias,
            cap.mlp_out[0, :, pos],
        ]
    )
    ln_bias = beta @ u
    total_abs = jnp.abs(heads).sum() + jnp.abs(dla(rest)).sum() + jnp.abs(ln_bias)
    pats = cap.patterns[0]  # [L, H, T, T]
    t = pats.shape[-1]
    row = pats[:, :, pos]  # [L, H, T]
    keys = jnp.arange(t)
    entropy = -jnp.where(keys <= pos, row * jnp.log(jnp.clip(row, 1e-12)), 0.0).sum(-1)
    q = jnp.arange(1, t)
    prev_mask = (q < length).astype(pats.dtype)
    prev = (pats[:, :, q, q - 1] * prev_mask).sum(-1) / jnp.maximum(prev_mask.sum(), 1.0)
    return {
        "dla": heads,
        "share": attribution_share(heads, total_abs),
        "attn_src": row[:, :, jnp.minimum(src, pos)],
        "entropy": entropy,
        "prev_token": prev,
        "probs": jax.nn.softmax(cap.logits[0, pos]),
        "logit_ln_bias": ln_bias,
        "ablation": effects(graphdef, params, tokens, ablated, mode, length, pos, target, means),
    }


@partial(jax.jit, static_argnums=(0, 8))
def _metrics_chunk(graphdef, stacked, tokens, pos, target, src, length, ablated, mode, reference):
    def one(p):
        return _metrics_one(graphdef, p, tokens, pos, target, src, length, ablated, mode, reference)

    return jax.vmap(one)(stacked)


def compute_timeline(
    graphdef,
    stacked_chunks,
    n_steps: int,
    tokens,
    pos: int,
    target: int,
    src: int,
    length: int,
    ablated: np.ndarray,
    mode: str = "zero",
    reference: tuple | None = None,
) -> dict[str, np.ndarray]:
    """Run the vmapped pass over pre-stacked chunks; returns arrays with a leading S axis.

    Metrics are of the model with ``ablated`` ([L, H], 1 = ablated) heads ablated; the
    ablation-effect metric ablates each head on top of those. ``reference`` = (tokens
    [N, T], mask [N, T]) of the run's reference lines, needed by the ``valid-mean`` mode
    (each step's means come from that step's parameters).
    """
    parts = []
    for chunk in stacked_chunks:
        out = _metrics_chunk(
            graphdef,
            chunk,
            tokens,
            jnp.int32(pos),
            jnp.int32(target),
            jnp.int32(src),
            jnp.int32(length),
            jnp.asarray(ablated, jnp.float32),
            mode,
            reference,
        )
        parts.append(jax.device_get(out))
    return {k: np.concatenate([p[k] for p in parts])[:n_steps] for k in parts[0]}


def stack_chunks(flats: list[dict[str, np.ndarray]], chunk: int = CHUNK) -> list[dict]:
    """Stack per-step named arrays into chunks of ``chunk`` steps (last one padded)."""
    out = []
    for start in range(0, len(flats), chunk):
        part = flats[start : start + chunk]
        part = part + [part[-1]] * (chunk - len(part))
        out.append({k: np.stack([f[k] for f in part]) for k in part[0]})
    return out
