"""One head's token attributions in float64 numpy: how much each source token adds to the
target's logit at the query through one head (``metrics.source_attributions`` for one
head), without casting a whole capture to float64. A head click computes one of these
from the values the step's view keeps (``view.compute_view``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp_app.core import metrics


def head_source_attr(
    cap: Any, params: Any, layer: int, head: int, pos: int, target: int
) -> np.ndarray:
    """[T] how much each source token adds to ``logit[target]`` at ``pos`` through one head,
    in float64 numpy: ``metrics.source_attributions`` for one head, without casting the
    whole capture (every head's values and outputs) to float64 again."""
    weights, values = cap.patterns[0, layer, head, pos], cap.values[0, layer, head]
    inv_std = float(cap.final_inv_std[0, pos])
    return attr_through_head(weights, values, inv_std, params, layer, head, target)


def attr_through_head(
    weights: np.ndarray,
    values: np.ndarray,
    inv_std: float,
    params: Any,
    layer: int,
    head: int,
    target: int,
) -> np.ndarray:
    """[T] ``head_source_attr`` from the query's attention row ([T]), the head's values
    ([T, dh]) and the final LayerNorm's 1/std at the query."""
    weights = np.asarray(weights, np.float64)  # [T]
    values = np.asarray(values, np.float64)  # [T, dh]
    w_o = np.asarray(metrics.param(params, f"blocks.{layer}.attn.w_o")[head], np.float64)
    per_source = weights[:, None] * (values @ w_o)  # [T, D]
    centred = per_source - per_source.mean(-1, keepdims=True)
    scale = inv_std * np.asarray(metrics.param(params, "ln_f.scale"), np.float64)
    w_u, _ = metrics.unembedding(params, np)
    return (centred * scale) @ np.asarray(w_u[:, target], np.float64)
