"""Dropout, with masks hashed from a seed instead of drawn.

Dropout is on only when the forward pass is given a key (training); evaluation and
capture are deterministic. Each layer has three sites: the attention pattern, the
attention output and the MLP output, all scaled by ``1 / (1 - rate)`` where kept.

Each element's keep bit is a hash of (seed, site, element index), computed where the mask
is applied: XLA fuses it into the consumer, so no random tensor is drawn or stored
(drawing 100k random bits per step with threefry, then slicing them into masks, cost a
third of a training step here). The keep threshold is exact to 2^-32.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from training.model.config import ModelConfig


class LayerDropout(NamedTuple):
    """One layer's keep masks (True: kept); all None when dropout is off."""

    pattern: jax.Array | None = None  # [B, H, T, T] attention weights
    attn: jax.Array | None = None  # [B, T, D] attention output
    mlp: jax.Array | None = None  # [B, T, D] MLP output
    rate: float = 0.0

    def __call__(self, x: jax.Array, keep: jax.Array | None) -> jax.Array:
        """``x`` with ``keep``'s dropped elements zeroed and the rest scaled up."""
        return x if keep is None else jnp.where(keep, x / (1.0 - self.rate), 0.0)


#: No dropout: every layer's masks when the forward pass has no key (or the rate is 0).
NO_DROPOUT = LayerDropout()


def dropout_seed(key: jax.Array) -> jax.Array:
    """The 32-bit seed a step's dropout masks are hashed from."""
    return jax.random.bits(key, (), jnp.uint32)


def dropout_masks(
    cfg: ModelConfig,
    key: jax.Array | None,
    batch: int,
    t: int,
    first_row: jax.Array | int = 0,
) -> list[LayerDropout]:
    """Every layer's masks for a [batch, t] input, from one 32-bit seed (given, or drawn
    from a PRNG key with :func:`dropout_seed`); no masks without a key or at rate 0.

    ``first_row`` is where these rows start in the whole batch, so a device holding a shard
    of the batch applies exactly the masks the whole batch would have.
    """
    if key is None or cfg.dropout == 0.0:
        return [NO_DROPOUT] * cfg.n_layers
    is_key = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    seed = dropout_seed(key) if is_key else key.astype(jnp.uint32)
    shapes = [(batch, cfg.n_heads, t, t), (batch, t, cfg.d_model), (batch, t, cfg.d_model)]
    threshold = jnp.uint32(min(round(cfg.dropout * 2**32), 2**32 - 1))

    def layer_masks(layer: int) -> LayerDropout:
        pattern, attn, mlp = (
            _hash_bits(seed, layer * len(shapes) + site, shape, first_row) >= threshold
            for site, shape in enumerate(shapes)
        )
        return LayerDropout(pattern, attn, mlp, cfg.dropout)

    return [layer_masks(layer) for layer in range(cfg.n_layers)]


def _mix32(x: jax.Array) -> jax.Array:
    """A bijective 32-bit integer hash with good avalanche (Wellons' lowbias32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _hash_bits(
    seed: jax.Array, site: int, shape: tuple[int, ...], first_row: jax.Array | int = 0
) -> jax.Array:
    """32 pseudo-random bits per element, from (seed, site, index); hashing the index before
    mixing in the seed keeps two seeds' streams from being shifted copies of each other."""
    row = int(np.prod(shape[1:]))
    start = jnp.asarray(first_row, jnp.uint32) * jnp.uint32(row)
    index = (jnp.arange(int(np.prod(shape)), dtype=jnp.uint32) + start).reshape(shape)
    salted = seed ^ jnp.uint32((site * 0x9E3779B9) & 0xFFFFFFFF)
    return _mix32(_mix32(index) ^ salted)
