"""The step's numbers as the page shows them: ``metrics.one_step`` with the logit lens read
at a window of positions.

The lens reads every layer boundary at every position through the whole unembedding: at a
Pythia-70m shape and 128 tokens that is 7 x 128 x 512 x 50,304 multiply-adds in float64,
seconds on a small machine, for a panel that shows the positions around the query. Here the
lens covers the ``LENS_POSITIONS`` positions ending at the query (the whole prompt when it
is shorter), in float32 (the top token and its probability; float64 changes neither beyond
1e-6); every other number is ``one_step``'s own functions in float64, equal to it.
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


def _float64(tree: Any) -> Any:
    return jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


@functools.partial(jax.jit, static_argnames=("width",))
def _lean(cap, clean_logits, ro, pos, target, length, src, layer, head, eps, start, width):
    cap64, clean64, ro64 = _float64((cap, clean_logits, ro))
    attr, ln_bias = metrics.attributions(cap64, ro64, pos, target)
    window = jax.lax.dynamic_slice_in_dim(cap.resid, start, width, axis=2)
    lens_top, lens_prob = metrics.logit_lens(cap.replace(resid=window), ro, eps)
    return {
        "heads": metrics.head_metrics(cap64, ro64, pos, target, length, src),
        "attr": attr,
        "ln_bias": ln_bias,
        "token_attr": metrics.source_attributions(cap64, ro64, layer, head, pos, target),
        "probs": metrics.prediction(cap64, pos),
        "clean_probs": jax.nn.softmax(clean64),
        "lens_top": lens_top,
        "lens_prob": lens_prob,
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
    eps: float,
    lens_positions: int = LENS_POSITIONS,
) -> dict[str, Any]:
    """``metrics.one_step``'s numbers, the lens ([L+1, W]) at ``lens_window(pos, length)``
    (``lens_start`` says where it begins)."""
    width = min(lens_positions, cap.resid.shape[2])
    start = max(0, min(pos + 1, length) - width)
    ro = metrics.host_readout(params, cap.head_out.shape[1])
    with jax.enable_x64(True):
        clean_logits = (cap if clean is None else clean).logits[0, pos]
        out = _lean(cap, clean_logits, ro, pos, target, length, src, layer, head, eps, start, width)
        out = jax.tree.map(np.array, out)
    out["lens_start"] = start
    return out
