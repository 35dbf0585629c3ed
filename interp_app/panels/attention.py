"""The selected head's attention pattern, query row framed."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp_app.core.selection import Selection
from interp_app.panels.base import Context, Panel
from interp_app.panels.plotly_arrays import typed
from interp_app.panels.plotting import Figure, figure, frame, position_labels, scale
from interp_app.ui import ids
from interp_app.ui.components import column, graph

FIGURE = (ids.ATTENTION_PATTERN, "figure")


def masked(pattern: np.ndarray) -> np.ndarray:
    """[T, T] float32, the masked future as NaN (a gap in the heatmap)."""
    out = np.array(pattern, np.float32)
    out[np.triu_indices(len(out), 1)] = np.nan
    return out


def attention_figure(view: Any, sel: Selection) -> Figure:
    """The pattern as a typed array (128 x 128 weights: 87 KB of base64, not 330 KB of JSON
    numbers); zoom by dragging, double-click to reset; the hover names query and key."""
    labels = position_labels(view.words)
    heat = {
        "type": "heatmap",
        "z": typed(masked(view.patterns[sel.layer, sel.head])),
        "x": labels,
        "y": labels,
        "colorscale": scale("Blues"),
        "zmin": 0,
        "zmax": 1,
        "hovertemplate": "query %{y}<br>key %{x}<br>weight %{z:.3f}<extra>"
        + sel.head_name
        + "</extra>",
        "colorbar": {"thickness": 10},
    }
    return figure(
        [heat],
        f"Attention pattern of {sel.head_name} (query row {sel.pos} framed)",
        380,
        shapes=[frame(-0.5, len(labels) - 0.5, sel.pos - 0.5, sel.pos + 0.5)],
        yaxis={"autorange": "reversed", "title": {"text": "query"}},
        xaxis={"title": {"text": "key"}, "tickangle": -45},
    )


def draw(ctx: Context) -> dict[Any, Figure]:
    return {FIGURE: attention_figure(ctx.view, ctx.sel)}


PANEL = Panel(
    name="attention",
    layout=lambda: column(
        "Attention pattern of the selected head", graph(ids.ATTENTION_PATTERN, 380), md=6
    ),
    outputs=(FIGURE,),
    depends=frozenset({"run", "step", "prompt", "pos", "ablate", "mode", "layer", "head"}),
    draw=draw,
)
