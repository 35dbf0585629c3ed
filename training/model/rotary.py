"""Rotary position embedding, GPT-NeoX style (``modeling_gpt_neox.py``; see
docs/plans/hf-import.md section 2), applied to each head's queries and keys.

Only the first ``r`` dimensions of a head rotate; dimension ``i`` pairs with ``i + r/2``
("rotate half", not adjacent pairs), at angle ``position * inv_freq[i mod r/2]`` with
``inv_freq = 1 / base ** (arange(0, r, 2) / r)``. Positions are 0..T-1. Values never
rotate, so each head's output is still ``pattern @ v @ W_O`` and the exact splits hold.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Rotary(NamedTuple):
    """How many dims of each head rotate (even) and the frequency base."""

    dims: int
    base: float


def rotate(x: jax.Array, rotary: Rotary, t_axis: int) -> jax.Array:
    """Rotate ``x`` [..., K] (positions 0..T-1 along ``t_axis``) on its first ``dims``."""
    r = rotary.dims
    t = x.shape[t_axis]
    inv_freq = 1.0 / rotary.base ** (jnp.arange(0, r, 2, dtype=jnp.float32) / r)  # [r/2]
    angles = jnp.arange(t, dtype=jnp.float32)[:, None] * inv_freq  # [T, r/2]
    angles = jnp.concatenate([angles, angles], axis=-1)  # [T, r]
    # broadcast [T, r] against x: T on t_axis, r on the last axis
    shape = [1] * x.ndim
    shape[t_axis], shape[-1] = t, r
    cos, sin = jnp.cos(angles).reshape(shape), jnp.sin(angles).reshape(shape)
    rot, rest = x[..., :r], x[..., r:]
    half = r // 2
    rotated_half = jnp.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
    return jnp.concatenate([rot * cos + rotated_half * sin, rest], axis=-1)
