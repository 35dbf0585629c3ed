"""The two views over training: every head's metric at every checkpoint, and the target's
probability; a click on either picks that checkpoint (and, on the heads, that head)."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp_app.core.heads import head_name
from interp_app.core.induction_views import HEAD_METRICS
from interp_app.core.selection import Selection, as_int
from interp_app.panels.base import Context, Overlay, Panel, Raw, nearest_step, on_click
from interp_app.panels.induction_metrics import head_metric, metric_series
from interp_app.panels.plotting import (
    HIGHLIGHT,
    Figure,
    figure,
    frame,
    scale,
    step_axis,
    step_marker,
)
from interp_app.ui import ids
from interp_app.ui.components import column, graph

QUERY = frozenset({"run", "listing", "prompt", "pos", "target", "ablate", "mode"})
RIVAL_COLOURS = ("#4c6ef5", "#12b886", "#868e96")


def head_names(values: np.ndarray) -> list[str]:
    """Row names of a [S, L, H] timeline, layer by layer."""
    n_layers, n_heads = values.shape[1:3]
    return [head_name(layer, h) for layer in range(n_layers) for h in range(n_heads)]


def head_timeline_overlay(
    steps: list[int], names: list[str], sel: Selection, metric: str, on: str | None = None
) -> tuple[str, list[dict]]:
    """Title and marks (selected step, framed head row): all a step or head change alters.
    ``on``: what the metric is measured on (default: the selection's target and query)."""
    row = names.index(sel.head_name) if sel.head_name in names else 0
    shapes = [frame(-0.5, len(steps) - 0.5, row - 0.5, row + 0.5), *step_marker(steps, sel.step)]
    on = f"for {sel.target!r} at {sel.pos}" if on is None else on
    what = f"{HEAD_METRICS[metric]} {on}".strip()
    title = f"Head timeline: {what} — selected {sel.head_name} at step {sel.step}"
    return title, shapes


def head_timeline_figure(
    steps: list[int], values: np.ndarray, sel: Selection, metric: str, on: str | None = None
) -> Figure:
    """One row per head, one column per checkpoint; click a cell to go to that step and head."""
    names = head_names(values)
    z = values.reshape(len(steps), -1).T  # [heads, S]
    heat: dict[str, Any] = {
        "type": "heatmap",
        "z": z,
        "x": list(range(len(steps))),
        "y": names,
        "customdata": np.tile(np.asarray(steps, np.int32), (len(names), 1)),
        "hovertemplate": "%{y} at step %{customdata}: %{z:.3f}<extra></extra>",
        "colorbar": {"thickness": 10},
    }
    if metric in ("dla", "share"):
        zmax = 1.0 if metric == "share" else float(np.nanmax(np.abs(z))) if z.size else 1.0
        heat.update(colorscale=scale("RdBu"), zmid=0, zmin=-zmax, zmax=zmax)
    else:
        heat.update(colorscale=scale("Blues"), zmin=0)
    title, shapes = head_timeline_overlay(steps, names, sel, metric, on)
    return figure(
        [heat],
        title,
        max(220, 60 + 26 * len(names)),
        shapes=shapes,
        xaxis=step_axis(steps),
        yaxis={"autorange": "reversed"},
    )


def prediction_timeline_title(sel: Selection) -> str:
    return f"P({sel.target!r}) at {sel.pos} over training (click to pick a step)"


def _probability_trace(x: list[int], steps: list[int], probs: np.ndarray, word: str) -> dict:
    return {
        "type": "scatter",
        "x": x,
        "y": probs,
        "name": word,
        "customdata": steps,
        "hovertemplate": word + " at step %{customdata}: %{y:.1%}<extra></extra>",
    }


def prediction_timeline_figure(
    steps: list[int],
    probs: np.ndarray,
    vocab: tuple[str, ...],
    sel: Selection,
    others: int = 3,
    target_id: int | None = None,
) -> Figure:
    """The target's probability over training, and the runners-up at the last step."""
    target = vocab.index(sel.target) if target_id is None else target_id
    rivals = [int(i) for i in np.argsort(-probs[-1]) if int(i) != target][:others]
    x = list(range(len(steps)))
    main = _probability_trace(x, steps, probs[:, target], sel.target)
    main.update(mode="lines+markers", line={"color": HIGHLIGHT, "width": 3}, marker={"size": 4})
    data = [main]
    for i, tok in enumerate(rivals):
        trace = _probability_trace(x, steps, probs[:, tok], vocab[tok])
        trace.update(mode="lines", line={"width": 1.5, "color": RIVAL_COLOURS[i % 3]})
        data.append(trace)
    return figure(
        data,
        prediction_timeline_title(sel),
        300,
        shapes=step_marker(steps, sel.step),
        xaxis=step_axis(steps, 6),
        yaxis={"range": [0, 1], "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.35},
    )


def draw_heads(ctx: Context) -> dict[Any, Figure]:
    metric = head_metric(ctx)
    steps, values, on = metric_series(ctx, metric)
    if values is None:
        return {}
    return {HEADS.figure: head_timeline_figure(steps, values, ctx.sel, metric, on)}


def overlay_heads(ctx: Context) -> Overlay | None:
    metric = head_metric(ctx)
    steps, values, on = metric_series(ctx, metric)
    if values is None:
        return None
    return Overlay(*head_timeline_overlay(steps, head_names(values), ctx.sel, metric, on))


def draw_prediction(ctx: Context) -> dict[Any, Figure]:
    steps, values = ctx.timeline
    if not steps:
        return {}
    tokenizer = ctx.analyzer.store.info(ctx.sel.run).tokenizer
    target = tokenizer.index[ctx.sel.target]
    figure = prediction_timeline_figure(
        steps, values["probs"], tokenizer.vocab, ctx.sel, target_id=target
    )
    return {PREDICTION.figure: figure}


def overlay_prediction(ctx: Context) -> Overlay | None:
    steps, _ = ctx.timeline
    if not steps:
        return None
    return Overlay(prediction_timeline_title(ctx.sel), step_marker(steps, ctx.sel.step))


def clicked_step(point: dict[str, Any], steps: list[int]) -> int | None:
    """The step a timeline click names: its customdata (the timeline leaves unreadable steps
    out, so its x, an index among the readable ones, is only the fallback)."""
    step = as_int(point.get("customdata"))
    return step if step is not None and step in steps else nearest_step(steps, point.get("x"))


def click_heads(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    """A cell: its step (customdata) and its head (y)."""
    step = clicked_step(point, steps)
    if step is None:
        return None
    head = point.get("y")
    return {**raw, "step": step, **({"head": head} if isinstance(head, str) else {})}


def click_prediction(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    step = clicked_step(point, steps)
    return None if step is None else {**raw, "step": step}


HEADS = Panel(
    name="head_timeline",
    layout=lambda: column("Head timeline", graph(ids.HEAD_TIMELINE, 220), md=8),
    outputs=((ids.HEAD_TIMELINE, "figure"),),
    depends=QUERY | {"metric", "src"},
    draw=draw_heads,
    overlay=overlay_heads,
    overlay_on=frozenset({"step", "layer", "head"}),
    events={"click": on_click(click_heads, ids.HEAD_TIMELINE)},
    needs_view=False,
)

PREDICTION = Panel(
    name="prediction_timeline",
    layout=lambda: column("Prediction over training", graph(ids.PREDICTION_TIMELINE, 300), 4),
    outputs=((ids.PREDICTION_TIMELINE, "figure"),),
    depends=QUERY,
    draw=draw_prediction,
    overlay=overlay_prediction,
    overlay_on=frozenset({"step"}),
    events={"click": on_click(click_prediction, ids.PREDICTION_TIMELINE)},
    needs_view=False,
)
