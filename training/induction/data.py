"""Induction sequences: random tokens, whose last ``L`` repeat an earlier segment.

A sequence has ``context + 1`` tokens (inputs ``[:-1]``, next-token targets ``[1:]``), drawn
uniformly with replacement from ``vocab`` tokens. With segment length ``L`` (uniform in
``min_segment .. max_segment``), ``n = context + 1`` and a start ``a`` uniform in
``0 .. n - 2L``::

    positions  0 .. a-1   a .. a+L-1   a+L .. n-L-1   n-L .. n-1
               random     segment      random          segment again

The repeat offset ``d = n - L - a`` varies from sequence to sequence independently of ``L``:
a fixed offset is solved by position alone (issue #16), and so was a variable one fixed by
``L`` (segment, then its repeat, ending the sequence: the boundary told the offset; a
model reached loss 0.6 on the repeat with no induction head). An input position ``t`` is
*repeated* when ``t >= n - L``: its token and its next token both belong to the second
copy, so the next token is the one after the token's previous occurrence, ``t - d + 1``,
readable by induction. There are ``L - 1`` such positions (the last input is ``n - 2``).

Training batches are drawn inside the compiled loop from ``fold_in(key(seed), step)``;
held-out sequences from a key of their own. Both are random draws from 48^33 sequences, so
held-out ones are new to training except with negligible probability (not checked).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from training.induction.config import InductionConfig

#: The held-out set's key: not of the training form ``fold_in(key(seed), step)``.
HELDOUT_KEY = 0x1D0C7


def sample(
    key: jax.Array, cfg: InductionConfig, batch: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``batch`` sequences: tokens [batch, context + 1] int32, segment lengths ``L`` and
    repeat offsets ``d`` [batch] int32 (module docstring)."""
    k_len, k_start, k_tok = jax.random.split(key, 3)
    n = cfg.context + 1
    lengths = jax.random.randint(k_len, (batch,), cfg.min_segment, cfg.max_segment + 1)
    starts = jnp.floor(jax.random.uniform(k_start, (batch,)) * (n - 2 * lengths + 1))
    offsets = (n - lengths - starts.astype(jnp.int32)).astype(jnp.int32)  # a in 0 .. n - 2L
    drawn = jax.random.randint(k_tok, (batch, n), 0, cfg.vocab)
    i = jnp.arange(n)[None, :]
    source = jnp.where(i >= n - lengths[:, None], i - offsets[:, None], i)  # copy back by d
    tokens = jnp.take_along_axis(drawn, source, axis=1).astype(jnp.int32)
    return tokens, lengths.astype(jnp.int32), offsets


def repeated_mask(lengths: np.ndarray | jax.Array, context: int) -> np.ndarray:
    """[B, context] bool: input positions whose next token is predictable by induction
    (``t >= context + 1 - L``, see the module docstring)."""
    t = np.arange(context)[None, :]
    return t >= context + 1 - np.asarray(lengths)[:, None]


@functools.lru_cache(maxsize=8)
def heldout(cfg: InductionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The evaluation set, the same for every seed and run of this config: tokens
    [valid_sequences, context + 1], segment lengths and repeat offsets [valid_sequences].
    Drawn once per config (read-only arrays: every seed's metadata and evaluation ask)."""
    drawn = jax.jit(sample, static_argnums=(1, 2))(
        jax.random.key(HELDOUT_KEY), cfg, cfg.valid_sequences
    )
    tokens, lengths, offsets = (np.array(a) for a in drawn)
    for a in (tokens, lengths, offsets):
        a.flags.writeable = False
    return tokens, lengths, offsets
