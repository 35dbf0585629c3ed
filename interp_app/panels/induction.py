"""The induction lab's in-context-learning panel: the ICL score and the repeated-part loss
over training above the held-out loss at every position, the selected step and the phase
change marked; a click picks that checkpoint. It also gives the metric picker its choices
for the run (the held-out head metrics only for an induction run).

A run not trained with ``--task induction`` has no held-out sequences: this card is hidden."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
import numpy as np

from interp_app.core.induction_views import HeldOut, is_induction_run, metric_options
from interp_app.panels.base import Context, Overlay, Panel, Raw, on_click
from interp_app.panels.induction_metrics import run_heldout
from interp_app.panels.plotting import (
    BASE,
    HIGHLIGHT,
    Figure,
    figure,
    message_figure,
    scale,
    step_axis,
    step_marker,
)
from interp_app.panels.timelines import clicked_step
from interp_app.ui import ids
from interp_app.ui.components import card, graph, hint

INDUCTION_CURVES = ids.INDUCTION_CURVES
INDUCTION_COLUMN = ids.INDUCTION_COLUMN
HIDDEN = {"display": "none"}
NOTHING = "Not an induction run (interp-train --task induction): no held-out sequences."
ICL_HINT = (
    "In-context learning score (Olsson et al. 2022): the held-out loss at the last position "
    "minus the loss at position T/4 (negative: later tokens are predicted better from "
    "context). Below, the loss at each position over training; the dashed line is the phase "
    "change, where the loss on the repeated part made half its drop."
)


def lab_column(column_id: str, title: str, body: Any, md: int) -> dbc.Col:
    """A titled card whose column the panel can hide (``style``) for runs it has nothing for."""
    return dbc.Col(card(title, body), md=md, id=column_id)


def shown(visible: bool) -> dict[str, str]:
    return {} if visible else HIDDEN


def _phase_line(steps: list[int], phase: int | None) -> list[dict]:
    if phase is None or phase not in steps:
        return []
    line = step_marker(steps, phase)[0]
    return [{**line, "line": {"color": "#495057", "width": 1.5, "dash": "dash"}}]


def curves_overlay(data: HeldOut, step: int) -> tuple[str, list[dict]]:
    """Title and marks (the selected step, the phase change) of the ICL figure."""
    steps = data.steps
    shapes = [*_phase_line(steps, data.phase_change()), *step_marker(steps, step)]
    if step in steps:
        i = steps.index(step)
        now = f"step {step}: ICL {data.icl[i]:+.2f}, repeated-part loss {data.repeat_loss[i]:.2f}"
    else:
        now = f"step {step} not evaluated"
    return f"In-context learning over training — {now}", shapes


def induction_curves_figure(data: HeldOut, step: int) -> Figure:
    """ICL score and repeated-part loss over training (top), loss by position (bottom)."""
    steps, x = data.steps, list(range(len(data.steps)))
    custom = np.asarray(steps, np.int64)
    lines = [
        {
            "type": "scatter",
            "x": x,
            "y": series,
            "name": name,
            "mode": "lines",
            "line": {"color": colour, "width": 2},
            "customdata": custom,
            "hovertemplate": name + " at step %{customdata}: %{y:.3f}<extra></extra>",
        }
        for name, series, colour in (
            ("repeated-part loss", data.repeat_loss, BASE),
            (f"ICL score (last − position {data.early})", data.icl, HIGHLIGHT),
        )
    ]
    z = data.by_position.T  # [T, S]
    heat = {
        "type": "heatmap",
        "x": x,
        "y": list(range(z.shape[0])),
        "z": z,
        "customdata": np.tile(custom, (z.shape[0], 1)),
        "colorscale": scale("Viridis"),
        "colorbar": {"thickness": 10, "len": 0.45, "y": 0.2, "title": {"text": "loss"}},
        "hovertemplate": "position %{y} at step %{customdata}: loss %{z:.3f}<extra></extra>",
        "xaxis": "x2",
        "yaxis": "y2",
        "showlegend": False,
    }
    title, shapes = curves_overlay(data, step)
    axis = step_axis(steps)
    return figure(
        [*lines, heat],
        title,
        460,
        shapes=shapes,
        xaxis={**axis, "anchor": "y", "showticklabels": False, "title": {"text": ""}},
        yaxis={"domain": [0.55, 1], "title": {"text": "nats"}, "zeroline": True},
        xaxis2={**axis, "anchor": "y2", "matches": "x"},
        yaxis2={"domain": [0, 0.42], "title": {"text": "position"}},
        legend={
            "x": 0.99,
            "y": 0.99,
            "xanchor": "right",
            "yanchor": "top",
            "bgcolor": "rgba(255,255,255,0.8)",
        },
    )


def draw(ctx: Context) -> dict[Any, Any]:
    induction = is_induction_run(ctx.analyzer.store, ctx.sel.run)
    out: dict[Any, Any] = {
        (INDUCTION_COLUMN, "style"): shown(induction),
        (ids.METRIC_PICKER, "options"): metric_options(induction),
    }
    data = run_heldout(ctx) if induction else None
    if data is not None and data.steps:
        out[PANEL.figure] = induction_curves_figure(data, ctx.sel.step)
    else:  # the card is hidden; the figure says why all the same
        out[PANEL.figure] = message_figure(NOTHING if not induction else "No readable step yet.")
    return out


def overlay(ctx: Context) -> Overlay | None:
    data = run_heldout(ctx)
    if data is None or not data.steps:
        return None
    return Overlay(*curves_overlay(data, ctx.sel.step))


def click(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    step = clicked_step(point, steps)
    return None if step is None else {**raw, "step": step}


def layout() -> dbc.Col:
    body = [graph(INDUCTION_CURVES, 460), hint(ICL_HINT)]
    return lab_column(INDUCTION_COLUMN, "Induction lab: in-context learning", body, 6)


PANEL = Panel(
    name="induction_curves",
    layout=layout,
    outputs=(
        (INDUCTION_CURVES, "figure"),
        (INDUCTION_COLUMN, "style"),
        (ids.METRIC_PICKER, "options"),
    ),
    depends=frozenset({"run", "listing"}),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"step"}),
    events={"click": on_click(click, INDUCTION_CURVES)},
    needs_view=False,
)
