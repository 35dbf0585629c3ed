"""The step's numbers as the page shows them, each computed from only what it reads.

``metrics.one_step`` casts the whole capture and readout to float64 and reads the logit lens
at every position: at the GPT-2-small shape and 128 tokens that copies every head's output
([L, H, T, D]), the logits ([T, V]) and the unembedding ([D, V]) into the jitted pass and
up to float64 (~0.25 s), and the lens multiplies 13 x 128 residuals by a 768 x 50,257
unembedding. Here the two are apart:

- :func:`lean_step`: ``one_step``'s numbers but the lens, in float64 from the slices they
  read (the components at the query, one column of the unembedding, one head's values,
  the query's row and the previous-token diagonal of the patterns), equal to it;
- :func:`step_lens`: the lens alone, for the panel that shows it (``lens.compute_lens``),
  at the ``LENS_POSITIONS`` positions ending at the query (the whole prompt when it is
  shorter), in float32 (the top token and its probability; float64 changes neither beyond
  1e-6).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from interp_app.core import metrics
from training.model.gpt import Capture

LENS_POSITIONS = 32


def lens_window(pos: int, length: int, width: int = LENS_POSITIONS) -> tuple[int, int]:
    """[start, end) of the positions the lens reads: up to ``width`` ending at the query."""
    start = max(0, min(pos + 1, length) - width)
    return start, min(length, start + width)


def only(cap: Capture, **fields: Any) -> Capture:
    """``cap`` holding only ``fields`` (every other field None): a jitted pass is given, and
    copies to its device, only what it reads."""
    changes: dict[str, Any] = dict.fromkeys(cap.__dataclass_fields__)
    changes.update(fields)
    return cap.replace(**changes)


def at_query(cap: Capture, pos: int) -> Capture:
    """The components that write to the residual stream at ``pos``, as a capture of that
    one position (``metrics.components(at_query(cap, pos), 0)`` is ``components(cap, pos)``)."""
    at = slice(pos, pos + 1)
    return only(
        cap,
        tok_emb=cap.tok_emb[:, at],
        pos_emb=cap.pos_emb[at],
        head_out=cap.head_out[:, :, :, at],
        attn_bias=cap.attn_bias,
        mlp_out=cap.mlp_out[:, :, at],
        final_inv_std=cap.final_inv_std[:, at],
    )


def _float64(tree: Any) -> Any:
    """Every floating leaf cast up, inside the jitted pass as ``one_step`` casts (the same
    fusions: equal numbers, to the last bit at the shapes the tests compare)."""
    return jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


@jax.jit
def _numbers(inputs, pos, length, src):
    """``metrics.one_step`` but the lens, from the slices it reads."""
    at, ro, row, diagonal, weights, values, w_o, logits, clean = _float64(inputs)
    attr, ln_bias = metrics.attributions(at, ro, 0, 0)  # ro.w_u: the target's column alone
    n_layers, n_heads, _ = row.shape
    dla = metrics.head_part(attr, n_layers, n_heads)
    total_abs = jnp.abs(attr).sum() + jnp.abs(ln_bias)
    per_source = weights[:, None] * (values @ w_o)  # metrics.source_attributions, one head
    token_attr = metrics.through_final_ln(per_source, ro, at.final_inv_std[0, 0]) @ ro.w_u[:, 0]
    return {
        "heads": metrics.pattern_metrics(dla, total_abs, row, diagonal, pos, length, src),
        "attr": attr,
        "ln_bias": ln_bias,
        "token_attr": token_attr,
        "probs": jax.nn.softmax(logits),
        "clean_probs": jax.nn.softmax(clean),
    }


def lean_step(
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
    eps: float | None = None,
) -> dict[str, Any]:
    """``metrics.one_step``'s numbers but the logit lens (:func:`step_lens`; ``eps`` is
    taken as ``one_step`` takes it, and unused), in float64 numpy, equal to it."""
    w_u, b_u = metrics.unembedding(params, np)
    readout = metrics.Readout(
        wte=None,
        ln_scale=metrics.param(params, "ln_f.scale"),
        ln_bias=metrics.param(params, "ln_f.bias"),
        w_o=None,
        w_u=w_u[:, target : target + 1],
        b_u=b_u[target : target + 1],
    )
    patterns = cap.patterns[0]  # [L, H, T, T]
    q = np.arange(1, patterns.shape[-1])
    inputs = (
        at_query(cap, pos),
        readout,
        patterns[:, :, pos],  # [L, H, T]
        patterns[:, :, q, q - 1],  # [L, H, T - 1]
        patterns[layer, head, pos],  # [T]
        cap.values[0, layer, head],  # [T, K]
        metrics.param(params, f"blocks.{layer}.attn.w_o")[head],  # [K, D]
        cap.logits[0, pos],
        (cap if clean is None else clean).logits[0, pos],
    )
    with jax.enable_x64(True):
        out = _numbers(inputs, pos, length, src)
        return jax.tree.map(np.array, out)  # writable copies: the caller's own


@functools.partial(jax.jit, static_argnames=("tied",))
def _lens(window: Capture, unembed: Any, b_u: Any, scale: Any, bias: Any, eps: Any, tied: bool):
    w_u = unembed.T if tied else unembed  # tied: wte [V, D], read transposed in the product
    ro = metrics.Readout(wte=None, ln_scale=scale, ln_bias=bias, w_o=None, w_u=w_u, b_u=b_u)
    return metrics.logit_lens(window, ro, eps)


def step_lens(
    cap: Capture,
    params: Mapping[str, np.ndarray],
    *,
    pos: int,
    length: int,
    eps: float,
    width: int = LENS_POSITIONS,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(top token [L+1, W], its probability [L+1, W], the first position W starts at):
    ``metrics.one_step``'s lens at ``lens_window(pos, length, width)``, in float32."""
    width = min(width, cap.resid.shape[2])  # one shape whatever the prompt: one compilation
    start, end = lens_window(pos, length, width)
    tied = not metrics.has_param(params, "w_u")
    unembed = metrics.param(params, "wte" if tied else "w_u")
    _, b_u = metrics.unembedding(params, np)
    top, prob = _lens(
        only(cap, resid=cap.resid[:, :, start : start + width]),
        unembed,
        b_u,
        metrics.param(params, "ln_f.scale"),
        metrics.param(params, "ln_f.bias"),
        np.float32(eps),
        tied,
    )
    return np.array(top[:, : end - start]), np.array(prob[:, : end - start]), start
