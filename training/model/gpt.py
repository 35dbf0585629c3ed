"""The seed article's GPT as a Flax NNX module, with one forward pass for training and capture.

Shapes in comments: B batch, T positions, D d_model, H heads, K d_head, M d_mlp, V vocab,
L layers. Weights are laid out per head (``w_qkv[D, 3, H, K]``, ``w_o[H, K, D]``) so that every
head's own contribution to the residual stream is one einsum away, and training runs all
heads in one einsum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from training.config import ModelConfig
from training.model.norm import layer_norm
from training.products import dense, dense_t, matmul, matmul_nt, split3


@struct.dataclass
class Capture:
    """Every internal the app shows, from one pass. Leading axis B everywhere but the biases."""

    tokens: jax.Array  # [B, T]
    tok_emb: jax.Array  # [B, T, D]
    pos_emb: jax.Array  # [T, D]
    resid: jax.Array  # [B, L+1, T, D] residual stream at each layer boundary
    resid_mid: jax.Array  # [B, L, T, D] after attention, before the MLP
    patterns: jax.Array  # [B, L, H, Tq, Tk]
    values: jax.Array  # [B, L, H, T, K]
    head_out: jax.Array  # [B, L, H, T, D] each head's own write to the residual
    attn_bias: jax.Array  # [L, D] attention output bias
    attn_out: jax.Array  # [B, L, T, D] attention block output (heads + bias)
    mlp_out: jax.Array  # [B, L, T, D]
    final_inv_std: jax.Array  # [B, T] final LayerNorm's 1/sqrt(var + eps)
    final: jax.Array  # [B, T, D] after the final LayerNorm
    logits: jax.Array  # [B, T, V]


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


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
    # Drawn flat, then reshaped: XLA takes seconds to compile a 4-D draw, milliseconds a 1-D.
    flat = jax.random.normal(rngs.params(), (int(np.prod(shape)),), jnp.float32)
    return nnx.Param(std * flat.reshape(shape))


def _zeros(*shape: int) -> nnx.Param:
    return nnx.Param(jnp.zeros(shape, jnp.float32))


class LayerNorm(nnx.Module):
    def __init__(self, d: int, eps: float):
        self.scale = nnx.Param(jnp.ones((d,), jnp.float32))
        self.bias = _zeros(d)
        self.eps = eps

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns the output and 1/std, which attribution holds fixed."""
        return layer_norm(x, self.scale[...], self.bias[...], self.eps)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, h, k = cfg.d_model, cfg.n_heads, cfg.d_head
        self.w_qkv = _normal(rngs, (d, 3, h, k), cfg.init_std)  # no bias, as in the article
        self.w_o = _normal(rngs, (h, k, d), cfg.init_std)
        self.b_o = _zeros(d)

    def pattern_and_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Attention patterns [B, H, Tq, Tk] and values [B, T, H*K], heads side by side."""
        b, t, d = x.shape
        _, _, h, k = self.w_qkv.shape
        qkv = dense(x, self.w_qkv[...].reshape(d, 3 * h * k)).reshape(b, t, 3, h * k)
        q, k_, v = split3(qkv)  # each [B, T, H*K]
        # Row block h of the queries keeps only head h's dimensions, so one product over all
        # H*K dimensions gives every head's scores, and heads never move to a batch axis
        # (on the CPU, those transposes cost more than the products themselves).
        blocks = _head_blocks(h, k)
        # Unrolled over heads: XLA's CPU backend reduces over a short middle axis slowly.
        q_rows = jnp.concatenate([q * blocks[i] for i in range(h)], axis=1)  # [B, H*T, H*K]
        scores = matmul_nt(q_rows, k_).reshape(b, h, t, t) * (k**-0.5)
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal, scores, -jnp.inf)
        return jax.nn.softmax(scores, axis=-1), v

    def combine(self, pattern: jax.Array, v: jax.Array) -> jax.Array:
        """Patterns [B, H, T, T] and values [B, T, H*K] -> attention output [B, T, D]."""
        b, h, t, _ = pattern.shape
        hk = v.shape[-1]
        mixed = matmul(pattern.reshape(b, h * t, t), v).reshape(b, h, t, hk)
        blocks = _head_blocks(h, hk // h)
        z = sum(mixed[:, i] * blocks[i] for i in range(h))  # head i's own dimensions, block i
        return dense(z, self.w_o[...].reshape(hk, -1)) + self.b_o[...]  # [B, T, D]

    def split_heads(self, v: jax.Array) -> jax.Array:
        """[B, T, H*K] -> [B, H, T, K]."""
        b, t, _ = v.shape
        _, k, _ = self.w_o.shape
        return jnp.transpose(v.reshape(b, t, -1, k), (0, 2, 1, 3))

    def per_head(self, pattern: jax.Array, v: jax.Array) -> jax.Array:
        z = jnp.einsum("bhqs,bhsk->bhqk", pattern, self.split_heads(v))
        return jnp.einsum("bhqk,hkd->bhqd", z, self.w_o[...])  # [B, H, T, D]


def _head_blocks(h: int, k: int) -> jax.Array:
    """[H, 1, H*K]: 1 where a dimension belongs to head h, else 0."""
    return (jnp.arange(h * k) // k == jnp.arange(h)[:, None])[:, None, :].astype(jnp.float32)


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.w_in = _normal(rngs, (cfg.d_model, cfg.d_mlp), cfg.init_std)
        self.b_in = _zeros(cfg.d_mlp)
        self.w_out = _normal(rngs, (cfg.d_mlp, cfg.d_model), cfg.init_std)
        self.b_out = _zeros(cfg.d_model)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = jax.nn.relu(dense(x, self.w_in[...]) + self.b_in[...])  # [B, T, M]
        return dense(hidden, self.w_out[...]) + self.b_out[...]  # [B, T, D]


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.ln1 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.attn = Attention(cfg, rngs)
        self.ln2 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.mlp = MLP(cfg, rngs)


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
    mixing in the seed keeps two seeds' streams from being shifted copies of each other.

    ``first_row`` is where these rows start in the whole batch, so a device holding a shard
    of the batch draws exactly the bits the whole batch would have.
    """
    row = int(np.prod(shape[1:]))
    start = jnp.asarray(first_row, jnp.uint32) * jnp.uint32(row)
    index = (jnp.arange(int(np.prod(shape)), dtype=jnp.uint32) + start).reshape(shape)
    salted = seed ^ jnp.uint32((site * 0x9E3779B9) & 0xFFFFFFFF)
    return _mix32(_mix32(index) ^ salted)


def dropout_seed(key: jax.Array) -> jax.Array:
    """The 32-bit seed a step's dropout masks are hashed from."""
    return jax.random.bits(key, (), jnp.uint32)


def _dropout(x: jax.Array, keep: jax.Array | None, rate: float) -> jax.Array:
    return x if keep is None else jnp.where(keep, x / (1.0 - rate), 0.0)


class GPT(nnx.Module):
    """Decoder-only, pre-LayerNorm, tied embeddings: logits = LN(x) @ wte.T."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.wte = _normal(rngs, (cfg.vocab_size, cfg.d_model), cfg.init_std)
        self.wpe = _normal(rngs, (cfg.context, cfg.d_model), cfg.init_std)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.ln_f = LayerNorm(cfg.d_model, cfg.ln_eps)

    def _masks(
        self, key: jax.Array | None, b: int, t: int, first_row: jax.Array | int = 0
    ) -> list[tuple] | None:
        """All dropout masks of a step, three sites per layer, from one 32-bit seed (given,
        or drawn from a PRNG key with :func:`dropout_seed`).

        Each element's keep bit is a hash of (seed, site, element index), computed where the
        mask is applied: XLA fuses it into the consumer, so no random tensor is drawn or
        stored (drawing 100k random bits per step with threefry, then slicing them into
        masks, cost a third of a training step here). The keep threshold is exact to 2^-32.
        """
        cfg = self.cfg
        if key is None or cfg.dropout == 0.0:
            return None
        is_key = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        seed = dropout_seed(key) if is_key else key.astype(jnp.uint32)
        shapes = [(b, cfg.n_heads, t, t), (b, t, cfg.d_model), (b, t, cfg.d_model)]
        threshold = jnp.uint32(min(round(cfg.dropout * 2**32), 2**32 - 1))
        return [
            tuple(
                _hash_bits(seed, layer * len(shapes) + site, shape, first_row) >= threshold
                for site, shape in enumerate(shapes)
            )
            for layer in range(cfg.n_layers)
        ]

    def __call__(
        self,
        tokens: jax.Array,
        *,
        dropout_key: jax.Array | None = None,
        first_row: jax.Array | int = 0,
        capture: bool = False,
        intervention: Intervention | None = None,
    ) -> jax.Array | Capture:
        """tokens [B, T] -> logits [B, T, V]; with ``capture`` the full :class:`Capture`.

        Dropout is on only when a key is given, so evaluation and capture are deterministic;
        ``first_row`` places a shard of the batch, so its masks are the whole batch's.
        With an ``intervention`` the attention output is summed from the (replaced) heads.
        """
        iv = intervention
        cfg = self.cfg
        b, t = tokens.shape
        masks = self._masks(dropout_key, b, t, first_row)
        # one-hot matmul, not a gather: its gradient is a matmul, not a slow CPU scatter-add
        tok_emb = dense(jax.nn.one_hot(tokens, cfg.vocab_size, dtype=jnp.float32), self.wte[...])
        pos_emb = self.wpe[...][:t]  # [T, D]
        x = tok_emb + pos_emb
        rec: dict[str, list[jax.Array]] = {
            k: [] for k in ("resid", "mid", "pat", "v", "head", "ao", "mlp")
        }
        for layer, block in enumerate(self.blocks):
            keep_pat, keep_attn, keep_mlp = masks[layer] if masks else (None, None, None)
            if iv is not None:
                x = iv.at_boundary(x, layer)
            rec["resid"].append(x)
            h, _ = block.ln1(x)
            pattern, v = block.attn.pattern_and_values(h)
            heads = None
            if iv is not None:
                heads = iv.on_heads(block.attn.per_head(pattern, v), layer)
                attn_out = heads.sum(1) + block.attn.b_o[...]
            else:
                attn_out = block.attn.combine(_dropout(pattern, keep_pat, cfg.dropout), v)
            x = x + _dropout(attn_out, keep_attn, cfg.dropout)
            rec["mid"].append(x)
            h, _ = block.ln2(x)
            mlp_out = block.mlp(h)
            x = x + _dropout(mlp_out, keep_mlp, cfg.dropout)
            if capture:
                rec["pat"].append(pattern)
                rec["v"].append(block.attn.split_heads(v))
                rec["head"].append(heads if heads is not None else block.attn.per_head(pattern, v))
                rec["ao"].append(attn_out)
                rec["mlp"].append(mlp_out)
        if iv is not None:
            x = iv.at_boundary(x, cfg.n_layers)
        final, inv_std = self.ln_f(x)
        logits = dense_t(final, self.wte[...])  # [B, T, V]
        if not capture:
            return logits
        rec["resid"].append(x)
        stack = lambda name: jnp.stack(rec[name], axis=1)  # noqa: E731
        return Capture(
            tokens=tokens,
            tok_emb=tok_emb,
            pos_emb=pos_emb,
            resid=stack("resid"),
            resid_mid=stack("mid"),
            patterns=stack("pat"),
            values=stack("v"),
            head_out=stack("head"),
            attn_bias=jnp.stack([blk.attn.b_o[...] for blk in self.blocks]),
            attn_out=stack("ao"),
            mlp_out=stack("mlp"),
            final_inv_std=inv_std,
            final=final,
            logits=logits,
        )


def init_model(cfg: ModelConfig, seed: int = 0) -> GPT:
    return GPT(cfg, nnx.Rngs(params=seed))


def init_params(cfg: ModelConfig, seed: int = 0) -> tuple[nnx.GraphDef, nnx.State]:
    """Initialise in one compiled call: op-by-op eager init takes seconds on the CPU."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: GPT(cfg, nnx.Rngs(params=seed))))
    params = jax.jit(lambda: nnx.state(init_model(cfg, seed), nnx.Param))()
    return graphdef, params


def count_params(model: GPT) -> int:
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _capture(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    tokens: jax.Array,
    intervention: Intervention | None = None,
) -> Capture:
    return nnx.merge(graphdef, params)(tokens, capture=True, intervention=intervention)


#: One jitted pass returning every internal; the graph definition is static (hashable).
capture = jax.jit(_capture, static_argnums=0)
