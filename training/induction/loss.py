"""The induction task's training loss: next-token cross-entropy with the repeated part
weighted ``repeat_weight`` times the rest.

Only the repeated part (``L - 1`` of 32 positions) is predictable; with every position
weighted alike, a two-layer model settles on heads that spread attention over the context
(a "tokens seen so far" unigram) and attend away from the induction target: in a
throwaway probe, seeds 1 and 2 of the issue's setup ended at an induction score of 0.01
after 500 steps. Weighting the repeated part 5x formed an induction head in both by step
~250 (issue #16). The weight trades speed for sharing: at 3 the transition was slow (seed
1 had none by step 800), at 10-20 both layer-1 heads became induction heads in every seed.
Each sequence's weights are normalised to sum to one, and the batch loss
is the mean over sequences, so half a batch on each device averages to the whole batch's
loss exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def position_weights(lengths: jax.Array, context: int, repeat_weight: float) -> jax.Array:
    """[B, context] float32 weights summing to 1/B over each sequence's positions: the
    repeated positions (``t >= context + 1 - L``) ``repeat_weight`` times the others."""
    t = jnp.arange(context)[None, :]
    raw = jnp.where(t >= context + 1 - lengths[:, None], repeat_weight, 1.0)
    return raw / raw.sum(-1, keepdims=True) / lengths.shape[0]


@jax.custom_vjp
def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """logits [B, T, V], labels [B, T], weights [B, T] -> sum of weight x -log p(label).

    A closed-form gradient (as ``training.loss.mean_cross_entropy``): autodiff of the
    log-softmax is several small operations, each a call on XLA's CPU backend."""
    return _forward(logits, labels, weights)[0]


def _forward(logits: jax.Array, labels: jax.Array, weights: jax.Array):
    shifted = logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True))
    exp = jnp.exp(shifted)
    total = exp.sum(-1, keepdims=True)
    picked = jnp.take_along_axis(shifted, labels[..., None], axis=-1)[..., 0]
    loss = ((jnp.log(total[..., 0]) - picked) * weights).sum()
    return loss, (exp / total, labels, weights)


def _backward(res, g: jax.Array):
    probs, labels, weights = res
    one_hot = labels[..., None] == jnp.arange(probs.shape[-1])
    return g * weights[..., None] * (probs - one_hot), None, None


weighted_cross_entropy.defvjp(_forward, _backward)
