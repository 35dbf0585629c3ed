"""Names of heads, residual components and head metrics: plain Python and numpy, no JAX.

The selection/URL model (``selection``) reads only this, so it imports without JAX.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ROTARY_POSITION = "position (rotary: none)"  # rotary models add no position vector

METRICS = {
    "dla": "direct logit attribution to the target",
    "share": "share of all |direct attribution| (DLA / Σ|DLA|, −1 to 1)",
    "attn_src": "attention paid to the source position",
    "entropy": "attention entropy (nats)",
    "prev_token": "previous-token score",
    "ablation": "ablation effect on log P(target)",
}


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def parse_head(name: str, n_layers: int, n_heads: int) -> tuple[int, int] | None:
    """``L1H0`` -> (1, 0); anything else, or out of range, -> None."""
    if not isinstance(name, str) or not name.startswith("L") or "H" not in name:
        return None
    try:
        layer, head = (int(x) for x in name[1:].split("H", 1))
    except ValueError:
        return None
    if 0 <= layer < n_layers and 0 <= head < n_heads:
        return layer, head
    return None


def head_mask(names: tuple[str, ...], n_layers: int, n_heads: int) -> np.ndarray:
    """[L, H] float32, 1 at the named heads (names that are not heads are skipped)."""
    mask = np.zeros((n_layers, n_heads), np.float32)
    for name in names:
        parsed = parse_head(name, n_layers, n_heads)
        if parsed:
            mask[parsed] = 1.0
    return mask


def component_names(
    n_layers: int, n_heads: int, *, rotary: bool = False, mlp: bool = True
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names, kinds) of every write to the residual stream, in ``metrics.components``'
    order: the embeddings, then per layer each head, its attention bias and its MLP. The
    count never changes: a rotary model's position entry and an attention-only model's MLPs
    are there, named as writing nothing (their vectors are zeros)."""
    names = ["token embed", ROTARY_POSITION if rotary else "pos embed"]
    kinds = ["embed", "pos"]
    for layer in range(n_layers):
        names += [head_name(layer, h) for h in range(n_heads)]
        names += [f"L{layer} attn bias", f"L{layer} MLP" + ("" if mlp else " (none)")]
        kinds += ["head"] * n_heads + ["bias", "mlp"]
    return tuple(names), tuple(kinds)


def model_components(cfg: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """:func:`component_names` for a ``ModelConfig``."""
    rotary = getattr(cfg, "positions", "learned") == "rotary"
    return component_names(cfg.n_layers, cfg.n_heads, rotary=rotary, mlp=has_mlp(cfg))


def has_mlp(cfg: Any) -> bool:
    return bool(getattr(cfg, "mlp", True))


def architecture_notes(cfg: Any) -> list[str]:
    """What the views of a model of this architecture cannot show, in a sentence each."""
    notes = []
    if getattr(cfg, "positions", "learned") == "rotary":
        notes.append(
            "rotary positions: no position vector is added to the residual stream, so the "
            f"'{ROTARY_POSITION}' component is zero; positions act inside attention only"
        )
    if getattr(cfg, "parallel", False):
        notes.append(
            "parallel attention and MLP: each MLP read the block's input, not the residual "
            "after attention (resid_mid, recorded as input + attention, was not read by it)"
        )
    if not has_mlp(cfg):
        notes.append("attention-only model: the MLP rows are zero (there are no MLPs)")
    return notes
