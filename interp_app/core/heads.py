"""Names of heads, residual components and head metrics: plain Python and numpy, no JAX.

The selection/URL model (``selection``) reads only this, so it imports without JAX.
"""

from __future__ import annotations

import numpy as np

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


def component_names(n_layers: int, n_heads: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names, kinds) of every write to the residual stream, in ``metrics.components``'
    order: the embeddings, then per layer each head, its attention bias and its MLP."""
    names, kinds = ["token embed", "pos embed"], ["embed", "pos"]
    for layer in range(n_layers):
        names += [head_name(layer, h) for h in range(n_heads)]
        names += [f"L{layer} attn bias", f"L{layer} MLP"]
        kinds += ["head"] * n_heads + ["bias", "mlp"]
    return tuple(names), tuple(kinds)
