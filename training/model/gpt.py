"""The GPT, written to be read first: nanoGPT's model.py in Flax NNX, shapes in comments.

Shapes: B batch, T positions, D d_model, H heads, K head size (D / H), M d_mlp, V vocab,
L layers.

    tokens [B, T]
    x = token embedding + position embedding                       [B, T, D]
    L blocks:  x = x + attention(LN(x));  x = x + MLP(LN(x))       (pre-LayerNorm)
    logits = LN(x) @ wte.T                                         [B, T, V] (tied embeddings)

That is the article's model, the default :class:`ModelConfig`. Its other fields select the
rest of the GPT-2 / GPT-NeoX family, each at one marked place below: rotary positions
(``training.model.rotary``; no ``wpe``, the capture's ``pos_emb`` is zeros), a qkv bias,
parallel blocks (``x + attention(LN1(x)) + MLP(LN2(x))``), GELU, attention-only blocks (the
capture's ``mlp_out`` is zeros) and an untied unembedding with a bias
(``logits = LN(x) @ w_u + b_u``).

One switch, ``attention``, picks how attention is computed; both read and write the same
parameters, so a checkpoint loads in either:

- ``"reference"``: :meth:`CausalSelfAttention.reference` below, the obvious way (q, k and v
  per head, each head's output, their sum);
- ``"fast"`` (the default, what training runs): ``training.model.fast``, the same numbers
  with all heads in one product, which XLA's CPU backend runs faster.

Weights are laid out per head (``w_qkv[D, 3, H, K]``, ``w_o[H, K, D]``) so that every head's
own contribution to the residual stream is one einsum away. Capture and interventions (the
interpretability contract) are ``training.model.interp``; dropout is
``training.model.dropout``; the checkpoint's parameter names are ``training.model.params``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from training.model.config import ModelConfig
from training.model.dropout import NO_DROPOUT, LayerDropout, dropout_masks, dropout_seed
from training.model.fast import fast_attention
from training.model.interp import Attended, Capture, Intervention, Recorder, capture
from training.model.norm import layer_norm
from training.model.rotary import Rotary, rotate
from training.products import dense, dense_t

__all__ = [
    "GPT",
    "AttentionPath",
    "Capture",
    "Intervention",
    "capture",
    "count_params",
    "dropout_seed",
    "init_model",
    "init_params",
]

AttentionPath = Literal["reference", "fast"]


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
    # Drawn flat, then reshaped: XLA takes seconds to compile a 4-D draw, milliseconds a 1-D.
    flat = jax.random.normal(rngs.params(), (int(np.prod(shape)),), jnp.float32)
    return nnx.Param(std * flat.reshape(shape))


def _zeros(*shape: int) -> nnx.Param:
    return nnx.Param(jnp.zeros(shape, jnp.float32))


class LayerNorm(nnx.Module):
    def __init__(self, d_model: int, eps: float):
        self.scale = nnx.Param(jnp.ones((d_model,), jnp.float32))
        self.bias = _zeros(d_model)
        self.eps = eps

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[..., D] -> the normalised output [..., D] and 1/std [...] (attribution holds it
        fixed); ``training.model.norm`` gives it a closed-form gradient."""
        return layer_norm(x, self.scale[...], self.bias[...], self.eps)


class CausalSelfAttention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d_model, n_heads, head_size = cfg.d_model, cfg.n_heads, cfg.d_head
        # queries, keys and values of every head from one matrix; no bias in the article
        self.w_qkv = _normal(rngs, (d_model, 3, n_heads, head_size), cfg.init_std)
        if cfg.qkv_bias:
            self.b_qkv = _zeros(3, n_heads, head_size)
        self.w_o = _normal(rngs, (n_heads, head_size, d_model), cfg.init_std)
        self.b_o = _zeros(d_model)
        rotary = cfg.positions == "rotary"
        self.rotary = Rotary(cfg.rotary_dims, cfg.rotary_base) if rotary else None

    def qkv_bias(self) -> jax.Array | None:
        """[3, H, K], or None when the config has no qkv bias."""
        return self.b_qkv[...] if hasattr(self, "b_qkv") else None

    def __call__(
        self, x: jax.Array, path: AttentionPath, drop: LayerDropout, each_head: bool
    ) -> Attended:
        """x [B, T, D] -> pattern, values, each head's output and their sum [B, T, D]."""
        if path == "fast":
            w_qkv, w_o, b_o = self.w_qkv[...], self.w_o[...], self.b_o[...]
            b_qkv, rotary = self.qkv_bias(), self.rotary
            return fast_attention(w_qkv, w_o, b_o, x, drop, each_head, b_qkv=b_qkv, rotary=rotary)
        if path == "reference":
            return self.reference(x, drop)
        raise ValueError(f"attention is 'fast' or 'reference', not {path!r}")

    def reference(self, x: jax.Array, drop: LayerDropout = NO_DROPOUT) -> Attended:
        """Attention the obvious way: every head on its own axis."""
        T = x.shape[1]
        head_size = self.w_qkv.shape[-1]
        # (in the einsums, e is a head's own dimension, K of them)
        qkv = jnp.einsum("btd,dshe->sbhte", x, self.w_qkv[...])  # [3, B, H, T, K]
        if (b_qkv := self.qkv_bias()) is not None:
            qkv = qkv + b_qkv[:, None, :, None, :]
        q, k, v = qkv  # each [B, H, T, K]
        if self.rotary is not None:  # positions turn q and k (not v), after the bias
            q, k = rotate(q, self.rotary, t_axis=-2), rotate(k, self.rotary, t_axis=-2)
        scores = q @ jnp.swapaxes(k, -1, -2) / np.sqrt(head_size)  # [B, H, Tq, Tk]
        causal = jnp.tril(jnp.ones((T, T), bool))  # a query sees its own and earlier positions
        pattern = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)  # [B, H, Tq, Tk]
        mixed = drop(pattern, drop.pattern) @ v  # [B, H, T, K]: values weighted by attention
        heads = jnp.einsum("bhte,hed->bhtd", mixed, self.w_o[...])  # [B, H, T, D]
        return Attended(pattern, v, heads, heads.sum(1) + self.b_o[...])  # out [B, T, D]


#: ``ModelConfig.activation`` -> the function; "gelu" is exact (erf), "gelu_tanh" GPT-2's
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
}


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.w_in = _normal(rngs, (cfg.d_model, cfg.d_mlp), cfg.init_std)
        self.b_in = _zeros(cfg.d_mlp)
        self.w_out = _normal(rngs, (cfg.d_mlp, cfg.d_model), cfg.init_std)
        self.b_out = _zeros(cfg.d_model)
        self.activation = cfg.activation

    def __call__(self, x: jax.Array) -> jax.Array:
        # dense(x, w) is x @ w (``training.products`` gives it a gradient the CPU runs fast)
        act = ACTIVATIONS[self.activation]
        hidden = act(dense(x, self.w_in[...]) + self.b_in[...])  # [B, T, M]
        return dense(hidden, self.w_out[...]) + self.b_out[...]  # [B, T, D]


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.ln1 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.attn = CausalSelfAttention(cfg, rngs)
        if cfg.mlp:  # attention-only blocks have neither
            self.ln2 = LayerNorm(cfg.d_model, cfg.ln_eps)
            self.mlp = MLP(cfg, rngs)
        self.parallel = cfg.parallel

    def __call__(
        self, x: jax.Array, layer: int, path: AttentionPath, drop: LayerDropout, rec: Recorder
    ) -> jax.Array:
        """x [B, T, D] -> x [B, T, D]; ``rec`` records (and may replace) what it passes."""
        h, _ = self.ln1(x)
        attended = self.attn(h, path, drop, each_head=rec.wants_heads)
        attn_out = rec.attention(layer, attended, self.attn.b_o[...])  # [B, T, D]
        mid = x + drop(attn_out, drop.attn)
        rec.record(resid_mid=mid)  # under parallel, recorded though the MLP does not read it
        if not hasattr(self, "mlp"):
            rec.record(mlp_out=jnp.zeros_like(x))
            return mid
        h, _ = self.ln2(x if self.parallel else mid)  # parallel: both branches read x
        mlp_out = self.mlp(h)  # [B, T, D]
        rec.record(mlp_out=mlp_out)
        return mid + drop(mlp_out, drop.mlp)


class GPT(nnx.Module):
    """Decoder-only, pre-LayerNorm, tied embeddings by default: logits = LN(x) @ wte.T."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.wte = _normal(rngs, (cfg.vocab_size, cfg.d_model), cfg.init_std)
        if cfg.positions == "learned":
            self.wpe = _normal(rngs, (cfg.context, cfg.d_model), cfg.init_std)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.ln_f = LayerNorm(cfg.d_model, cfg.ln_eps)
        if not cfg.tied:
            self.w_u = _normal(rngs, (cfg.d_model, cfg.vocab_size), cfg.init_std)
        if cfg.unembed_bias:
            self.b_u = _zeros(cfg.vocab_size)

    def __call__(
        self,
        tokens: jax.Array,
        *,
        attention: AttentionPath = "fast",
        dropout_key: jax.Array | None = None,
        first_row: jax.Array | int = 0,
        capture: bool = False,
        intervention: Intervention | None = None,
    ) -> jax.Array | Capture:
        """tokens [B, T] -> logits [B, T, V]; with ``capture`` the full :class:`Capture`.

        ``attention`` picks the path (same numbers either way). Dropout is on only when a
        key is given, so evaluation and capture are deterministic; ``first_row`` places a
        shard of the batch, so its masks are the whole batch's. An ``intervention``
        replaces residual vectors and head outputs (``training.model.interp``).
        """
        b, t = tokens.shape
        drops = dropout_masks(self.cfg, dropout_key, b, t, first_row)
        rec = Recorder(capture, intervention)
        tok_emb = self.embed(tokens, gather=capture or intervention is not None)  # [B, T, D]
        if self.cfg.positions == "learned":
            pos_emb = self.wpe[...][:t]  # [T, D]
            x = tok_emb + pos_emb
        else:  # rotary: positions act inside attention; nothing is added here
            pos_emb, x = jnp.zeros((t, self.cfg.d_model), jnp.float32), tok_emb
        for layer, (block, drop) in enumerate(zip(self.blocks, drops, strict=True)):
            x = block(rec.boundary(x, layer), layer, attention, drop, rec)
        x = rec.boundary(x, self.cfg.n_layers)
        final, inv_std = self.ln_f(x)  # [B, T, D], [B, T]
        logits = self.unembed(final)  # [B, T, V]
        if not capture:
            return logits
        return rec.result(
            tokens=tokens,
            tok_emb=tok_emb,
            pos_emb=pos_emb,
            final_inv_std=inv_std,
            final=final,
            logits=logits,
        )

    def embed(self, tokens: jax.Array, gather: bool) -> jax.Array:
        """tokens [B, T] -> token embeddings [B, T, D], the same numbers either way.

        Training: a one-hot matmul, whose gradient is a matmul, not a slow CPU scatter-add.
        Capture and interventions (no gradient in the app): a gather, which skips the
        [B, T, V] x [V, D] product (85 ms against 0.2 ms at GPT-2 small's vocabulary). Ids
        past the vocabulary give zeros either way."""
        if gather:
            return jnp.take(self.wte[...], tokens, axis=0, mode="fill", fill_value=0.0)
        one_hot = jax.nn.one_hot(tokens, self.cfg.vocab_size, dtype=jnp.float32)
        return dense(one_hot, self.wte[...])

    def unembed(self, final: jax.Array) -> jax.Array:
        """[B, T, D] -> logits [B, T, V]: ``final @ wte.T`` tied, else ``final @ w_u``
        (plus ``b_u`` when the config has it)."""
        tied = self.cfg.tied
        logits = dense_t(final, self.wte[...]) if tied else dense(final, self.w_u[...])
        return logits + self.b_u[...] if self.cfg.unembed_bias else logits


def init_model(cfg: ModelConfig, seed: int = 0) -> GPT:
    return GPT(cfg, nnx.Rngs(params=seed))


def init_params(cfg: ModelConfig, seed: int = 0) -> tuple[nnx.GraphDef, nnx.State]:
    """Initialise in one compiled call: op-by-op eager init takes seconds on the CPU."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: GPT(cfg, nnx.Rngs(params=seed))))
    params = jax.jit(lambda: nnx.state(init_model(cfg, seed), nnx.Param))()
    return graphdef, params


def count_params(model: GPT) -> int:
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
