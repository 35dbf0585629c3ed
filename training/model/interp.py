"""The interpretability contract: what one forward pass captures, and how it is intervened on.

The model calls a :class:`Recorder` at the same points whichever attention path computes it
(``training.model.gpt``: ``attention="reference"`` or ``"fast"``), so a :class:`Capture`
and an :class:`Intervention` mean the same on both:

- the residual stream is read (and may be replaced) at every layer boundary, before each
  block and after the last one;
- attention hands over its :class:`Attended` parts; an intervention replaces chosen heads'
  outputs, and the block's output is then the sum of the (replaced) heads plus the bias;
- the attention output and the MLP output are recorded before their dropout, the residual
  stream after it.

Every config of ``ModelConfig`` records the same fields with the same shapes, so the
components always sum to the final residual: ``pos_emb`` is zeros under rotary positions
(they act inside attention), ``mlp_out`` zeros in attention-only blocks, and under
``parallel`` ``resid_mid`` is still ``resid_pre + attn_out``, though the MLP read
``LN2(resid_pre)``.

Shapes: B batch, T positions, D d_model, H heads, K head size, V vocab, L layers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, NamedTuple, Self

import jax
import jax.numpy as jnp
from flax import nnx, struct


@struct.dataclass
class Capture:
    """Every internal the app shows, from one pass. Leading axis B everywhere but the biases."""

    tokens: jax.Array  # [B, T]
    tok_emb: jax.Array  # [B, T, D]
    pos_emb: jax.Array  # [T, D] (zeros under rotary positions)
    resid: jax.Array  # [B, L+1, T, D] residual stream at each layer boundary
    resid_mid: jax.Array  # [B, L, T, D] after attention (parallel: not what the MLP reads)
    patterns: jax.Array  # [B, L, H, Tq, Tk] attention weights (before dropout)
    values: jax.Array  # [B, L, H, T, K]
    head_out: jax.Array  # [B, L, H, T, D] each head's own write to the residual
    attn_bias: jax.Array  # [L, D] attention output bias
    attn_out: jax.Array  # [B, L, T, D] attention block output (heads + bias)
    mlp_out: jax.Array  # [B, L, T, D] (zeros for attention-only blocks)
    final_inv_std: jax.Array  # [B, T] final LayerNorm's 1/sqrt(var + eps)
    final: jax.Array  # [B, T, D] after the final LayerNorm
    logits: jax.Array  # [B, T, V]

    if TYPE_CHECKING:  # flax's struct.dataclass adds it; type checkers do not see that

        def replace(self, **changes: jax.Array) -> Self: ...


@struct.dataclass
class Intervention:
    """Replace chosen head outputs and residual vectors with given ones, as data.

    ``keep`` is 1 where the model's own value stays and 0 where ``value`` replaces it, so
    ablating or patching any set of heads or positions reuses one compilation.
    """

    head_keep: jax.Array  # [L, H]
    head_value: jax.Array  # [B, L, H, T, D]
    resid_keep: jax.Array  # [L+1, T] residual stream at each layer boundary
    resid_value: jax.Array  # [B, L+1, T, D]

    def at_boundary(self, x: jax.Array, layer: int) -> jax.Array:
        t = x.shape[1]
        keep = self.resid_keep[layer, :t, None]
        return keep * x + (1.0 - keep) * self.resid_value[:, layer, :t]

    def on_heads(self, heads: jax.Array, layer: int) -> jax.Array:
        t = heads.shape[2]
        keep = self.head_keep[layer][None, :, None, None]
        return keep * heads + (1.0 - keep) * self.head_value[:, layer, :, :t]


class Attended(NamedTuple):
    """What one attention block computed. ``values`` and ``heads`` may be None when the
    caller did not ask for each head (training needs only ``out``)."""

    pattern: jax.Array  # [B, H, Tq, Tk] attention weights, before dropout
    values: jax.Array | None  # [B, H, T, K]
    heads: jax.Array | None  # [B, H, T, D] each head's write to the residual stream
    out: jax.Array  # [B, T, D] the heads' sum plus the output bias


class Recorder:
    """What one forward pass records (``capture``) and replaces (``intervention``)."""

    def __init__(self, capture: bool = False, intervention: Intervention | None = None):
        self.capture = capture
        self.intervention = intervention
        self.rows: defaultdict[str, list[jax.Array]] = defaultdict(list)

    @property
    def wants_heads(self) -> bool:
        """Whether attention must give each head's own output, not only their sum."""
        return self.capture or self.intervention is not None

    def boundary(self, x: jax.Array, layer: int) -> jax.Array:
        """The residual stream [B, T, D] entering ``layer`` (``L``: leaving the last block)."""
        if self.intervention is not None:
            x = self.intervention.at_boundary(x, layer)
        self.record(resid=x)
        return x

    def attention(self, layer: int, att: Attended, bias: jax.Array) -> jax.Array:
        """The attention block's output [B, T, D], from the heads an intervention left."""
        out, heads = att.out, att.heads
        if self.intervention is not None:
            assert heads is not None, "attention was not asked for each head"
            heads = self.intervention.on_heads(heads, layer)
            out = heads.sum(1) + bias
        self.record(
            patterns=att.pattern, values=att.values, head_out=heads, attn_out=out, attn_bias=bias
        )
        return out

    def record(self, **arrays: jax.Array | None) -> None:
        if self.capture:
            for name, value in arrays.items():
                assert value is not None, f"{name} was not computed"
                self.rows[name].append(value)

    def result(self, **rest: jax.Array) -> Capture:
        """The :class:`Capture`: recorded layers stacked on axis 1 (axis 0 for the biases)."""
        layers = {
            name: jnp.stack(rows, axis=0 if name == "attn_bias" else 1)
            for name, rows in self.rows.items()
        }
        return Capture(**layers, **rest)


def _capture(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    tokens: jax.Array,
    intervention: Intervention | None = None,
    attention: str = "fast",
) -> Capture:
    model = nnx.merge(graphdef, params)
    return model(tokens, capture=True, intervention=intervention, attention=attention)


#: One jitted pass returning every internal; the graph definition (hashable) and the
#: attention path are static.
capture = jax.jit(_capture, static_argnums=0, static_argnames="attention")
