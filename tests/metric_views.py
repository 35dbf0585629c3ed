"""The exact splits of one captured pass as numpy arrays, for any prompt of a batch.

Test support: a numpy-facing view of ``interp_app.core.metrics`` (the one implementation,
evaluated in float64) for the model's checks on batched captures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from interp_app.core import metrics
from interp_app.core.heads import component_names
from training.model.gpt import Capture


@dataclass(frozen=True)
class Components:
    """Every write to the residual stream at one position, in a fixed order: [C, D]."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]  # "embed", "pos", "head", "bias", "mlp"
    vectors: np.ndarray  # [C, D]


def _split(cap, ro, pos, target):
    attr, ln_bias = metrics.attributions(cap, ro, pos, target)
    return metrics.components(cap, pos), attr, ln_bias


def direct_logit_attribution(
    cap: Capture, params: Mapping[str, np.ndarray], b: int, pos: int, target: int
) -> tuple[Components, np.ndarray, float]:
    """Per-component attributions of prompt ``b`` to ``logit[target]`` and the
    LayerNorm-bias term: ``attr.sum() + ln_bias_term == logits[b, pos, target]``."""
    one = metrics.one_prompt(cap, b)
    vectors, attr, ln_bias = metrics.evaluate(_split, one, params, pos, target)
    names, kinds = component_names(*cap.head_out.shape[1:3])
    return Components(names, kinds, vectors), attr, float(ln_bias)


def source_attributions(
    cap: Capture,
    params: Mapping[str, np.ndarray],
    b: int,
    layer: int,
    head: int,
    pos: int,
    target: int,
) -> np.ndarray:
    """[T] how much each source token adds to ``logit[target]`` at ``pos`` through one
    head, for prompt ``b``; they sum to the head's direct attribution."""
    one = metrics.one_prompt(cap, b)
    return metrics.evaluate(metrics.source_attributions, one, params, layer, head, pos, target)
