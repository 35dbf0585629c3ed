"""The fast attention path: the same numbers as the reference, in a layout XLA's CPU
backend runs faster. Training uses it (``GPT(..., attention="fast")``, the default).

The reference (``training.model.gpt``) moves heads to their own axis and multiplies per
head. Here the heads stay side by side in one [B, T, H*K] array: row block h of the
queries keeps only head h's dimensions (zeros elsewhere), so one product over all H*K
dimensions gives every head's scores, and heads never move to a batch axis (on the CPU,
those transposes cost more than the products themselves). The weighted values are
taken back to the residual stream the same way, head h's dimensions from row block h.

A qkv bias and rotary positions (``training.model.rotary``), when the config has them, are
applied to the [B, T, H*K] queries and keys before the head blocks; the default config has
neither and traces the same program as before they existed.

Shapes: B batch, T positions, D d_model, H heads, K head size.
"""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp

from training.model.dropout import LayerDropout
from training.model.interp import Attended
from training.model.rotary import Rotary, rotate
from training.products import dense, matmul, matmul_nt, split3


def fast_attention(
    w_qkv: jax.Array,  # [D, 3, H, K]
    w_o: jax.Array,  # [H, K, D]
    b_o: jax.Array,  # [D]
    x: jax.Array,  # [B, T, D]
    drop: LayerDropout,
    each_head: bool,
    *,
    b_qkv: jax.Array | None = None,  # [3, H, K]
    rotary: Rotary | None = None,
) -> Attended:
    """Attention of ``x``; with ``each_head``, each head's values and output too."""
    if each_head:
        return each_head_attention(w_qkv, w_o, b_o, x, drop, b_qkv=b_qkv, rotary=rotary)
    pattern, v = pattern_and_values(w_qkv, x, b_qkv=b_qkv, rotary=rotary)
    out = combine(w_o, b_o, drop(pattern, drop.pattern), v)
    return Attended(pattern, None, None, out)


def each_head_attention(
    w_qkv: jax.Array,
    w_o: jax.Array,
    b_o: jax.Array,
    x: jax.Array,
    drop: LayerDropout,
    *,
    b_qkv: jax.Array | None = None,
    rotary: Rotary | None = None,
) -> Attended:
    """Attention with each head's values and output, for capture and interventions.

    Every head's output is needed here anyway, so heads get their own axis and their
    scores and values are per-head products: the head blocks above do H times the work
    (12x at GPT-2 small's 12 heads), which only pays while nothing else needs the heads."""
    b, t, d = x.shape
    _, _, h, k = w_qkv.shape
    qkv = dense(x, w_qkv.reshape(d, 3 * h * k)).reshape(b, t, 3, h, k)
    if b_qkv is not None:
        qkv = qkv + b_qkv
    q, keys, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each [B, T, H, K]
    if rotary is not None:
        q, keys = rotate(q, rotary, t_axis=1), rotate(keys, rotary, t_axis=1)
    scores = jnp.einsum("bqhk,bshk->bhqs", q, keys) * (k**-0.5)
    causal = jnp.tril(jnp.ones((t, t), bool))
    pattern = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)  # [B, H, Tq, Tk]
    values = jnp.transpose(v, (0, 2, 1, 3))  # [B, H, T, K]
    z = jnp.einsum("bhqs,bhsk->bhqk", drop(pattern, drop.pattern), values)  # [B, H, T, K]
    heads = jnp.einsum("bhqk,hkd->bhqd", z, w_o)  # [B, H, T, D]
    # their sum as one product: XLA's CPU backend reduces over the short head axis slowly
    z_flat = jnp.transpose(z, (0, 2, 1, 3)).reshape(b, t, h * k)
    return Attended(pattern, values, heads, dense(z_flat, w_o.reshape(h * k, d)) + b_o)


def pattern_and_values(
    w_qkv: jax.Array,
    x: jax.Array,
    *,
    b_qkv: jax.Array | None = None,
    rotary: Rotary | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Attention patterns [B, H, Tq, Tk] and values [B, T, H*K], heads side by side."""
    b, t, d = x.shape
    _, _, h, k = w_qkv.shape
    qkv = dense(x, w_qkv.reshape(d, 3 * h * k)).reshape(b, t, 3, h * k)
    if b_qkv is not None:
        qkv = qkv + b_qkv.reshape(3, h * k)
    q, keys, v = split3(qkv)  # each [B, T, H*K]
    if rotary is not None:  # per head: [B, T, H, K], positions on axis 1
        q = rotate(q.reshape(b, t, h, k), rotary, t_axis=1).reshape(b, t, h * k)
        keys = rotate(keys.reshape(b, t, h, k), rotary, t_axis=1).reshape(b, t, h * k)
    blocks = _head_blocks(h, k)
    # Unrolled over heads: XLA's CPU backend reduces over a short middle axis slowly.
    q_rows = jnp.concatenate([q * blocks[i] for i in range(h)], axis=1)  # [B, H*T, H*K]
    scores = matmul_nt(q_rows, keys).reshape(b, h, t, t) * (k**-0.5)
    causal = jnp.tril(jnp.ones((t, t), bool))
    scores = jnp.where(causal, scores, -jnp.inf)
    return jax.nn.softmax(scores, axis=-1), v


def combine(w_o: jax.Array, b_o: jax.Array, pattern: jax.Array, v: jax.Array) -> jax.Array:
    """Patterns [B, H, T, T] and values [B, T, H*K] -> attention output [B, T, D]."""
    b, h, t, _ = pattern.shape
    hk = v.shape[-1]
    mixed = matmul(pattern.reshape(b, h * t, t), v).reshape(b, h, t, hk)
    blocks = _head_blocks(h, hk // h)
    z = cast(jax.Array, sum(mixed[:, i] * blocks[i] for i in range(h)))  # head i: block i
    return dense(z, w_o.reshape(hk, -1)) + b_o  # [B, T, D]


def split_heads(v: jax.Array, head_size: int) -> jax.Array:
    """[B, T, H*K] -> [B, H, T, K]."""
    b, t, _ = v.shape
    return jnp.transpose(v.reshape(b, t, -1, head_size), (0, 2, 1, 3))


def _head_blocks(h: int, k: int) -> jax.Array:
    """[H, 1, H*K]: 1 where a dimension belongs to head h, else 0."""
    return (jnp.arange(h * k) // k == jnp.arange(h)[:, None])[:, None, :].astype(jnp.float32)
