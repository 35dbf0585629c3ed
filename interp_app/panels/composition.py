"""The composition view: how much each head of the earlier layers writes into what a head of
a later layer reads, as its query (Q), its key (K) or its value (V) (Elhage et al. 2021),
from the selected step's weights; it follows the step slider and the selected head.

An induction head is K-composition made visible: a previous-token head in layer 0 writes
"the token before me" into the keys a layer-1 head matches its query against. Any run with
two or more layers has these scores (they need no data); a one-layer run says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from interp_app.core.heads import head_name
from interp_app.core.induction_views import KINDS, composition_at
from interp_app.panels.base import Context, Overlay, Panel, Raw, on_click
from interp_app.panels.induction import lab_column
from interp_app.panels.plotting import Figure, figure, frame, message_figure, scale
from interp_app.ui import ids
from interp_app.ui.components import graph, hint

COMPOSITION = ids.COMPOSITION
COMPOSITION_COLUMN = ids.COMPOSITION_COLUMN
KIND_NAMES = {"Q": "Q: writes the query", "K": "K: writes the key", "V": "V: writes the value"}
HINT = (
    "Rows: every head of the earlier layers (the writer, through its OV circuit); columns: the "
    "later layer's heads (the reader, through its QK or OV circuit). Score "
    "‖W_OV·W_QK‖/(‖W_OV‖‖W_QK‖) and alike, 0 to 1, each layer's LayerNorm folded in, no "
    "random baseline subtracted (with rotary positions, the rotation inside attention is not "
    "in these weights). Select a head of a later layer to see what composes into it; "
    "a click on a cell selects its column's head."
)


def later_layer(layer: int, n_layers: int) -> int:
    """The reading layer shown: the selected head's, or layer 1 when a layer-0 head is."""
    return min(max(layer, 1), n_layers - 1)


def _kind_trace(z: np.ndarray, k: int, rows: list[str], cols: list[str], top: float) -> dict:
    """One kind's heatmap (Q, K or V) on subplot ``k``; cells labelled while there are few."""
    suffix, kind = ("" if k == 0 else str(k + 1)), KINDS[k]
    return {
        "type": "heatmap",
        "z": z,
        "x": cols,
        "y": rows,
        "customdata": [cols] * len(rows),
        "zmin": 0,
        "zmax": top or 1.0,
        "colorscale": scale("Blues"),
        "showscale": k == 2,
        "colorbar": {"thickness": 10},
        "hovertemplate": f"{kind}: %{{y}} → %{{x}}: %{{z:.3f}}<extra></extra>",
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
        **({"texttemplate": "%{z:.2f}"} if z.size <= 64 else {}),
    }


def _heading(text: str, x: float) -> dict:
    return {
        "text": text,
        "x": x,
        "y": 1.0,
        "xref": "paper",
        "yref": "paper",
        "yanchor": "bottom",
        "showarrow": False,
    }


def composition_figure(
    scores: np.ndarray, later: int, n_heads: int, selected: tuple[int, int], step: int
) -> Figure:
    """[3, rows, H] scores as three heatmaps (Q, K, V) on one colour scale, the selected
    head's row or column framed in each."""
    rows = [head_name(i // n_heads, i % n_heads) for i in range(scores.shape[1])]
    cols = [head_name(later, h) for h in range(n_heads)]
    top = float(np.nanmax(scores)) if scores.size else 1.0
    gap, width = 0.06, (1 - 0.12) / 3
    data = [_kind_trace(scores[k], k, rows, cols, top) for k in range(3)]
    axes: dict[str, dict[str, Any]] = {}
    for k in range(3):
        suffix, x0 = ("" if k == 0 else str(k + 1)), k * (width + gap)
        axes[f"xaxis{suffix}"] = {"domain": [x0, x0 + width], "anchor": f"y{suffix}"}
        axes[f"yaxis{suffix}"] = {
            "anchor": f"x{suffix}",
            "autorange": "reversed",
            "showticklabels": k == 0,
        }
    shapes = composition_marks(selected, later, n_heads, len(rows))
    notes = [
        _heading(KIND_NAMES[kind], k * (width + gap) + width / 2) for k, kind in enumerate(KINDS)
    ]
    return figure(
        data,
        composition_title(later, step, selected),
        max(260, 120 + 22 * len(rows)),
        shapes=shapes,
        annotations=notes,
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
        **axes,
    )


def composition_title(later: int, step: int, selected: tuple[int, int]) -> str:
    return f"Composition into layer {later} at step {step} — selected {head_name(*selected)}"


def composition_marks(
    selected: tuple[int, int], later: int, n_heads: int, n_rows: int
) -> list[dict]:
    """The selected head's frame on each of the three heatmaps (Q, K, V)."""
    return [
        mark
        for k in range(3)
        for mark in _marks(selected, later, n_heads, n_rows, "" if k == 0 else str(k + 1))
    ]


def _marks(selected: tuple[int, int], later: int, n_heads: int, n_rows: int, suffix: str):
    """The selected head's column (a head of the later layer) or row (an earlier one)."""
    layer, head = selected
    x, y = f"x{suffix}", f"y{suffix}"
    if layer == later:
        return [frame(head - 0.5, head + 0.5, -0.5, n_rows - 0.5, x, y)]
    row = layer * n_heads + head
    return [frame(-0.5, n_heads - 0.5, row - 0.5, row + 0.5, x, y)] if row < n_rows else []


def _figure(ctx: Context) -> Figure:
    model, sel = ctx.model, ctx.sel
    if model.n_layers < 2:
        text = "One layer: no head of a later layer reads what another head writes."
        return message_figure(text, 160)
    later = later_layer(sel.layer, model.n_layers)
    scores = composition_at(ctx.analyzer, sel.run, sel.step, later)
    return composition_figure(scores, later, model.n_heads, (sel.layer, sel.head), sel.step)


def draw(ctx: Context) -> dict[Any, Figure]:
    return {PANEL.figure: _figure(ctx)}


def overlay(ctx: Context) -> Overlay:
    """Another head of the same run and step: the frame and the title move. The scores
    shown are those of the later layer, which a head of another layer changes when the
    model has more than two layers (with two it is layer 1 for every head): the previous
    layer is not known here, so then the heatmaps and the height are sent too."""
    model, sel = ctx.model, ctx.sel
    if model.n_layers < 2:
        return Overlay("", [])  # the message figure: no title, no marks
    if "layer" in ctx.changed and model.n_layers > 2:
        fig = _figure(ctx)
        layout = fig["layout"]
        sets = ((("data",), fig["data"]), (("layout", "height"), layout["height"]))
        return Overlay(layout["title"]["text"], layout["shapes"], sets)
    later = later_layer(sel.layer, model.n_layers)
    rows = later * model.n_heads
    selected = (sel.layer, sel.head)
    title = composition_title(later, sel.step, selected)
    return Overlay(title, composition_marks(selected, later, model.n_heads, rows))


def click(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    """A cell selects its column's head (the reader)."""
    name = point.get("customdata")
    return {**raw, "head": name} if isinstance(name, str) else None  # resolve checks it


PANEL = Panel(
    name="composition",
    layout=lambda: lab_column(
        COMPOSITION_COLUMN, "Composition between heads", [graph(COMPOSITION, 300), hint(HINT)], 6
    ),
    outputs=((COMPOSITION, "figure"),),
    depends=frozenset({"run", "step", "listing"}),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"layer", "head"}),
    events={"click": on_click(click, COMPOSITION)},
)
