"""The loss curve: train (smoothed) and validation loss; a click picks the checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp_app.core.selection import as_float
from interp_app.panels.base import Context, Overlay, Panel, Raw, on_click
from interp_app.panels.plotting import BASE, MUTED, Figure, figure, vertical_line
from interp_app.ui import ids
from interp_app.ui.components import column, graph


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average what exists so far."""
    if len(values) == 0:
        return values
    c = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _train_trace(t_steps: np.ndarray, t_loss: np.ndarray, max_points: int) -> dict:
    sm = smooth(t_loss, max(len(t_loss) // 200, 1))
    keep = np.unique(np.linspace(0, len(t_steps) - 1, min(max_points, len(t_steps))).astype(int))
    return {
        "type": "scatter",
        "x": t_steps[keep],
        "y": np.round(sm[keep], 4),
        "name": "train (smoothed)",
        "mode": "lines",
        "line": {"color": MUTED},
        "hoverinfo": "skip",
    }


def loss_figure(history, step: int, bad_steps: set[int] | None = None, max_points: int = 800):
    """Train loss (smoothed, thinned to ``max_points``) and validation loss per checkpoint."""
    t_steps, t_loss, v_steps, v_loss = history
    data = [_train_trace(t_steps, t_loss, max_points)] if len(t_steps) else []
    data.append(
        {
            "type": "scatter",
            "x": v_steps,
            "y": np.round(v_loss, 4),
            "name": "validation (checkpoints)",
            "mode": "lines+markers",
            "marker": {"size": 5, "color": BASE},
            "line": {"color": BASE},
            "hovertemplate": "step %{x}<br>validation loss %{y:.3f}<extra></extra>",
        }
    )
    if bad_steps:
        data.append(
            {
                "type": "scatter",
                "x": sorted(bad_steps),
                "y": [0] * len(bad_steps),
                "mode": "markers",
                "name": "unreadable",
                "marker": {"symbol": "x", "color": "red", "size": 10},
            }
        )
    return figure(
        data,
        loss_title(step),
        260,
        shapes=[loss_marker(step)],
        xaxis={"title": {"text": "step"}},
        yaxis={"title": {"text": "loss"}, "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right"},
        annotations=[] if len(t_steps) or len(v_steps) else [NO_LOSS],
    )


#: Said on the chart when a run has no losses (an import without trainer_state.json).
NO_LOSS = {
    "text": "no loss recorded for this run (e.g. imported without trainer_state.json)",
    "xref": "paper",
    "yref": "paper",
    "x": 0.5,
    "y": 0.5,
    "showarrow": False,
    "font": {"color": "#666"},
}


def loss_title(step: int) -> str:
    return f"Loss — selected step {step} (click to pick a checkpoint)"


def loss_marker(step: int) -> dict:
    return vertical_line(step)


def draw(ctx: Context) -> dict[Any, Figure]:
    store = ctx.analyzer.store
    fig = loss_figure(store.loss_history(ctx.sel.run), ctx.sel.step, ctx.unreadable)
    notice = store.metrics_notice(ctx.sel.run)
    if notice:
        ctx.notes.append(notice)
    return {PANEL.figure: fig}


def overlay(ctx: Context) -> Overlay:
    return Overlay(loss_title(ctx.sel.step), [loss_marker(ctx.sel.step)])


def click(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    x = as_float(point.get("x"))
    if not steps or x is None:
        return None
    return {**raw, "step": min(steps, key=lambda s: abs(s - x))}


PANEL = Panel(
    name="loss",
    layout=lambda: column("Loss", graph(ids.LOSS_CURVE, 260), md=6),
    outputs=((ids.LOSS_CURVE, "figure"),),
    depends=frozenset({"run", "listing"}),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"step"}),
    events={"click": on_click(click, ids.LOSS_CURVE)},
    needs_view=False,
)
