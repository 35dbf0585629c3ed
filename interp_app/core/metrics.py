"""Every number the panels read from one captured pass, in one jnp implementation.

The same functions serve one step (:func:`one_step`: what the panels, the API and
``interp-capture`` show) and every step at once (``timeline`` maps them over stacked
parameters with ``jax.vmap``). One step runs in float64 (JAX's ``enable_x64``, a
thread-local switch, on the float32 capture cast up), so its exact splits sum to the logit
to float64 rounding, as the independent numpy reference checks; the vmapped timeline runs
in float32, as the model does, and agrees with it to float32 rounding.

The final LayerNorm is linear once its 1/std for the query position is held fixed, so
``logit[t] = sum_c gamma * s * (c - mean(c)) . u + beta . u + b_u[t]`` with
``u = w_u[:, t]``, over the components ``c`` that write to the residual stream: that is what
makes these splits exact. The unembedding ``w_u`` [D, V] is ``wte.T`` for tied embeddings
(the article's model) and the checkpoint's ``w_u`` otherwise; ``b_u`` is zeros unless the
checkpoint has one. Everything reads the first prompt of a capture.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from training.model.gpt import Capture

Array = Any  # a jax or numpy array (traced inside the jitted and vmapped passes)


class Readout(NamedTuple):
    """The parameters the metrics read besides the capture."""

    wte: Array  # [V, D] token embeddings (the input side)
    ln_scale: Array  # [D] the final LayerNorm's scale
    ln_bias: Array  # [D] and its bias
    w_o: Array  # [L, H, K, D] each head's output projection
    w_u: Array  # [D, V] the unembedding: wte.T when tied
    b_u: Array  # [V] the unembedding bias: zeros when the model has none


def param(params: Any, name: str) -> Array:
    """A parameter by its checkpoint name (``blocks.0.attn.w_o``), from a flat mapping of
    those names or from the model's state pytree (each dotted part one level)."""
    if isinstance(params, Mapping) and name in params:
        return params[name][...]
    node = params
    for part in name.split("."):
        node = node[int(part) if part.isdigit() else part]
    return node[...]  # a state's leaf is a variable: its value


def has_param(params: Any, name: str) -> bool:
    """Whether ``params`` (flat mapping or state pytree) holds ``name``: ``w_u``, ``b_u``,
    ``wpe`` and ``b_qkv`` exist only when the model's config asks for them."""
    if isinstance(params, Mapping) and name in params:
        return True
    node = params
    for part in name.split("."):
        try:
            node = node[int(part) if part.isdigit() else part]
        except (KeyError, IndexError, TypeError, AttributeError):
            return False
    return True


def unembedding(params: Any, xp: Any = jnp) -> tuple[Array, Array]:
    """(``w_u`` [D, V], ``b_u`` [V]) as the model reads them: ``wte.T`` and zeros when the
    model is tied and has no unembedding bias. ``xp`` is numpy for host-side readouts."""
    wte = param(params, "wte")
    w_u = param(params, "w_u") if has_param(params, "w_u") else xp.swapaxes(wte, -1, -2)
    b_u = param(params, "b_u") if has_param(params, "b_u") else xp.zeros_like(w_u[..., 0, :])
    return w_u, b_u


def readout(params: Any, n_layers: int) -> Readout:
    w_u, b_u = unembedding(params)
    return Readout(
        wte=param(params, "wte"),
        ln_scale=param(params, "ln_f.scale"),
        ln_bias=param(params, "ln_f.bias"),
        w_o=jnp.stack([param(params, f"blocks.{i}.attn.w_o") for i in range(n_layers)]),
        w_u=w_u,
        b_u=b_u,
    )


def through_final_ln(vectors: Array, ro: Readout, inv_std: Array) -> Array:
    """The final LayerNorm applied to a part of the residual ([..., D]), its scale held."""
    centred = vectors - vectors.mean(-1, keepdims=True)
    return centred * (inv_std * ro.ln_scale)


def components(cap: Capture, pos: Array) -> Array:
    """[C, D] every write to the residual stream at ``pos``, in ``heads.component_names``'
    order (embeddings; per layer each head, the attention bias, the MLP): they sum to the
    final residual."""
    per_layer = jnp.concatenate(
        [cap.head_out[0, :, :, pos], cap.attn_bias[:, None], cap.mlp_out[0, :, pos][:, None]],
        axis=1,
    )  # [L, H + 2, D]
    embeddings = jnp.stack([cap.tok_emb[0, pos], cap.pos_emb[pos]])
    return jnp.concatenate([embeddings, per_layer.reshape(-1, per_layer.shape[-1])])


def attributions(cap: Capture, ro: Readout, pos: Array, target: Array) -> tuple[Array, Array]:
    """([C] each component's direct attribution to ``logit[target]``, the constant term
    ``ln_bias @ u + b_u[target]``): together they sum to the logit."""
    u = ro.w_u[:, target]
    attr = through_final_ln(components(cap, pos), ro, cap.final_inv_std[0, pos]) @ u
    return attr, ro.ln_bias @ u + ro.b_u[target]


def head_part(per_component: Array, n_layers: int, n_heads: int) -> Array:
    """[L, H]: the heads' entries of a [C] array over the components."""
    return per_component[2:].reshape(n_layers, n_heads + 2)[:, :n_heads]


def attribution_share(attr: Array, total_abs: Array) -> Array:
    """``attr / total_abs``: a term's share of the total absolute direct attribution.

    ``total_abs`` is the sum of |attribution| over every term of the logit's exact split
    (embeddings, each head, attention biases, MLPs and the final LayerNorm's bias), so the
    share lies in [-1, 1], keeps the sign of the attribution and the shares' absolute values
    add to 1, whatever the logit is: dividing by the logit itself, as before, gave a head
    with +0.535 at a logit of -0.115 the "share" -4.67. When nothing is attributed at all
    (``total_abs == 0``, so every ``attr`` is 0) the share is 0.
    """
    return attr / (total_abs + (total_abs == 0))


def head_metrics(
    cap: Capture, ro: Readout, pos: Array, target: Array, length: Array, src: Array
) -> dict[str, Array]:
    """Every head's score under every metric but ablation (``causal``), each [L, H]."""
    pats = cap.patterns[0]  # [L, H, T, T]
    n_layers, n_heads, t = pats.shape[0], pats.shape[1], pats.shape[-1]
    attr, ln_bias = attributions(cap, ro, pos, target)
    dla = head_part(attr, n_layers, n_heads)
    total_abs = jnp.abs(attr).sum() + jnp.abs(ln_bias)
    q = jnp.arange(1, t)
    return pattern_metrics(dla, total_abs, pats[:, :, pos], pats[:, :, q, q - 1], pos, length, src)


def pattern_metrics(
    dla: Array, total_abs: Array, row: Array, diagonal: Array, pos: Array, length: Array, src: Array
) -> dict[str, Array]:
    """The head metrics from the direct attributions ([L, H] and their total size) and two
    slices of the patterns: every head's row at the query ([L, H, T]) and the diagonal below
    ([L, H, T-1], each query's weight on the token before it). The page's lean step holds only
    these slices (``lean_step``), so both read the same lines."""
    t = row.shape[-1]
    seen = jnp.arange(t) <= pos  # causal: later keys have weight 0
    entropy = -jnp.where(seen, row * jnp.log(jnp.clip(row, 1e-12)), 0.0).sum(-1)
    q = jnp.arange(1, t)
    prev_mask = (q < length).astype(row.dtype)  # real query positions after the first
    prev = (diagonal * prev_mask).sum(-1) / jnp.maximum(prev_mask.sum(), 1.0)
    return {
        "dla": dla,
        "share": attribution_share(dla, total_abs),
        "attn_src": row[:, :, jnp.clip(src, 0, pos)],
        "entropy": entropy,
        "prev_token": prev,
    }


def source_attributions(
    cap: Capture, ro: Readout, layer: Array, head: Array, pos: Array, target: Array
) -> Array:
    """[T] how much each source token adds to ``logit[target]`` at ``pos`` through one head.

    Source s contributes ``pattern[pos, s] * v[s] @ w_o[head]``; through the final LayerNorm
    (scale held) and the target's unembedding these sum to the head's direct attribution.
    """
    weights = cap.patterns[0, layer, head, pos]  # [T]
    per_source = weights[:, None] * (cap.values[0, layer, head] @ ro.w_o[layer, head])  # [T, D]
    return through_final_ln(per_source, ro, cap.final_inv_std[0, pos]) @ ro.w_u[:, target]


def logit_lens(cap: Capture, ro: Readout, eps: Array) -> tuple[Array, Array]:
    """Top token and its probability for every layer boundary x position: [L+1, T] each.

    Each residual is read through the final LayerNorm (its own statistics) and the
    unembedding (``w_u``, ``b_u``), as the model reads its last one.
    """
    resid = cap.resid[0]  # [L+1, T, D]
    centred = resid - resid.mean(-1, keepdims=True)
    normed = centred / jnp.sqrt((centred**2).mean(-1, keepdims=True) + eps)
    probs = jax.nn.softmax((normed * ro.ln_scale + ro.ln_bias) @ ro.w_u + ro.b_u)  # [L+1, T, V]
    top = probs.argmax(-1)
    return top, jnp.take_along_axis(probs, top[..., None], -1)[..., 0]


def prediction(cap: Capture, pos: Array) -> Array:
    """[V] P(word) at ``pos``."""
    return jax.nn.softmax(cap.logits[0, pos])


def _float64(tree: Any) -> Any:
    """Every floating leaf up-cast to float64 (with ``enable_x64`` on, inside the pass)."""
    return jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


@jax.jit
def _step(cap, clean_logits, ro, pos, target, length, src, layer, head, eps) -> dict[str, Array]:
    cap, clean_logits, ro = _float64((cap, clean_logits, ro))
    attr, ln_bias = attributions(cap, ro, pos, target)
    lens_top, lens_prob = logit_lens(cap, ro, eps)
    return {
        "heads": head_metrics(cap, ro, pos, target, length, src),
        "attr": attr,
        "ln_bias": ln_bias,
        "token_attr": source_attributions(cap, ro, layer, head, pos, target),
        "probs": prediction(cap, pos),
        "clean_probs": jax.nn.softmax(clean_logits),
        "lens_top": lens_top,
        "lens_prob": lens_prob,
    }


def host_readout(params: Mapping[str, np.ndarray], n_layers: int) -> Readout:
    """The readout of checkpoint-named numpy parameters, stacked on the host."""
    w_u, b_u = unembedding(params, np)
    return Readout(
        wte=param(params, "wte"),
        ln_scale=param(params, "ln_f.scale"),
        ln_bias=param(params, "ln_f.bias"),
        w_o=np.stack([param(params, f"blocks.{i}.attn.w_o") for i in range(n_layers)]),
        w_u=w_u,
        b_u=b_u,
    )


def one_step(
    cap: Capture,
    params: Mapping[str, np.ndarray],
    *,
    clean: Capture | None = None,
    pos: int,
    target: int,
    length: int,
    src: int,
    layer: int,
    head: int,
    eps: float,
) -> dict[str, Any]:
    """Every metric of one captured pass, in float64 numpy: ``heads`` (metric -> [L, H]),
    ``attr`` [C] with ``ln_bias`` (the exact split of the logit), ``token_attr`` [T] through
    ``layer``/``head``, ``probs`` [V] at ``pos``, ``lens_top``/``lens_prob`` [L+1, T], and
    ``clean_probs`` [V]: ``probs`` of ``clean`` (the unablated pass; default ``cap``).
    Positions, target and head are traced: no prompt or selection ever recompiles."""
    with jax.enable_x64(True):
        clean_logits = (cap if clean is None else clean).logits[0, pos]
        ro = host_readout(params, cap.head_out.shape[1])
        out = _step(cap, clean_logits, ro, pos, target, length, src, layer, head, eps)
        return jax.tree.map(np.array, out)  # writable copies: the caller's own


def one_prompt(cap: Capture, b: int) -> Capture:
    """The capture of prompt ``b`` of a batch, as a batch of one."""
    shared = ("pos_emb", "attn_bias")  # no batch axis
    return cap.replace(
        **{f: getattr(cap, f)[b : b + 1] for f in cap.__dataclass_fields__ if f not in shared}
    )


@functools.cache
def _compiled(fn: Any) -> Any:
    return jax.jit(fn)  # positions, heads and targets traced: one compilation per function


def evaluate(fn, cap: Capture, params: Mapping[str, np.ndarray], *args: Any) -> Any:
    """``fn(cap, readout, *args)`` in float64, numpy in and out (for checks on batched
    captures: op by op, 90 calls of a test took 10 s)."""
    with jax.enable_x64(True):
        inputs = jax.tree.map(jnp.asarray, (cap, host_readout(params, cap.head_out.shape[1])))
        return jax.device_get(_compiled(fn)(*_float64(inputs), *args))
