"""Every head's attention pattern as small multiples (or their change since the previous
checkpoint); a click selects a head, hovering one draws its metric over training."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc

from interp_app.core.heads import head_name, parse_head
from interp_app.core.induction_views import HEAD_METRICS
from interp_app.core.selection import Selection
from interp_app.panels.base import Context, Option, Panel, first_point, on_click, one_of
from interp_app.panels.induction_metrics import head_metric, metric_series
from interp_app.panels.plotting import (
    HIGHLIGHT,
    Figure,
    causal,
    figure,
    frame,
    message_figure,
    scale,
)
from interp_app.panels.residual import click_head
from interp_app.ui import ids
from interp_app.ui.components import column, graph

MODES = {"step": "this step", "change": "change since previous checkpoint"}


def _domains(n: int, gap: float) -> list[tuple[float, float]]:
    width = (1 - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def _trace(pattern: Any, name: str, suffix: str, change: bool) -> dict:
    n = len(pattern)
    return {
        "type": "heatmap",
        "z": causal(pattern),
        "colorscale": scale("RdBu" if change else "Blues"),
        "zmin": -1 if change else 0,
        "zmax": 1,
        "showscale": False,
        "name": name,
        "customdata": [[name] * n] * n,
        "hovertemplate": name + " q%{y} k%{x}: %{z:.2f}<extra></extra>",
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
    }


def _label(name: str, x: float, y: float, selected: bool) -> dict:
    return {
        "text": f"<b>{name}</b>" if selected else name,
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"color": HIGHLIGHT if selected else "#212529", "size": 13},
    }


def multiples_figure(
    view: Any, sel: Selection, base: Any | None = None, base_step: int | None = None
) -> Figure:
    """Small multiples on a layers x heads grid of axes; the selected head is framed.

    With ``base`` each multiple shows the change of its pattern since ``base_step``.
    """
    n_layers, n_heads = view.patterns.shape[:2]
    xdom, ydom = _domains(n_heads, 0.06), _domains(n_layers, 0.14)[::-1]
    data, axes, notes = [], {}, []
    for layer in range(n_layers):
        for h in range(n_heads):
            i = layer * n_heads + h + 1
            suffix, name = ("" if i == 1 else str(i)), head_name(layer, h)
            pattern = view.patterns[layer, h]
            if base is not None:
                pattern = pattern - base.patterns[layer, h]
            data.append(_trace(pattern, name, suffix, base is not None))
            axes[f"xaxis{suffix}"] = {
                "domain": xdom[h],
                "anchor": f"y{suffix}",
                "showticklabels": False,
            }
            axes[f"yaxis{suffix}"] = {
                "domain": ydom[layer],
                "anchor": f"x{suffix}",
                "showticklabels": False,
                "autorange": "reversed",
            }
            selected = (layer, h) == (sel.layer, sel.head)
            notes.append(_label(name, sum(xdom[h]) / 2, ydom[layer][1], selected))
    (x0, x1), (y0, y1) = xdom[sel.head], ydom[sel.layer]
    what = "Every head's pattern" if base is None else f"Change since step {base_step}"
    return figure(
        data,
        f"{what} (selected {sel.head_name}; click to select)",
        380,
        shapes=[frame(x0 - 0.01, x1 + 0.01, y0 - 0.02, y1 + 0.02, "paper", "paper")],
        annotations=notes,
        margin={"l": 20, "r": 20, "t": 60, "b": 20},
        **axes,
    )


def sparkline_figure(steps: list[int], values: Any, name: str, metric: str) -> Figure:
    line = {
        "type": "scatter",
        "x": [str(s) for s in steps],
        "y": values,
        "mode": "lines",
        "line": {"color": HIGHLIGHT},
        "hovertemplate": "step %{x}: %{y:.3f}<extra></extra>",
    }
    return figure(
        [line],
        f"{name}: {HEAD_METRICS[metric]} over training",
        150,
        margin={"l": 40, "r": 10, "t": 30, "b": 20},
        xaxis={"showticklabels": False},
    )


def hovered_sparkline(ctx: Context, hover: Any) -> Figure:
    """The hovered head's metric over training (the selected head's when none is hovered)."""
    point = first_point(hover)
    name = point.get("customdata") if point else None
    name = name if isinstance(name, str) else ctx.sel.head_name
    parsed = parse_head(name, ctx.model.n_layers, ctx.model.n_heads)
    metric = head_metric(ctx)
    steps, values, _ = metric_series(ctx, metric)
    if values is None or parsed is None:
        return message_figure("", 150)
    return sparkline_figure(steps, values[:, parsed[0], parsed[1]], name, metric)


def draw(ctx: Context) -> dict[Any, Figure]:
    base = step = None
    earlier = [s for s in ctx.steps if s < ctx.sel.step]
    if ctx.options["multiples_mode"] == "change" and earlier:
        base, step = ctx.view_at(earlier[-1]), earlier[-1]
    return {PANEL.figure: multiples_figure(ctx.view, ctx.sel, base, step if base else None)}


def layout() -> dbc.Col:
    mode = dbc.RadioItems(
        id=ids.MULTIPLES_MODE,
        options=[{"label": label, "value": value} for value, label in MODES.items()],
        value="step",
        inline=True,
        className="small",
    )
    sparkline = dcc.Graph(
        id=ids.HEAD_SPARKLINE, config={"displayModeBar": False}, style={"height": "150px"}
    )
    return column("All heads, layers x heads", [mode, graph(ids.HEAD_MULTIPLES, 380), sparkline], 6)


PANEL = Panel(
    name="multiples",
    layout=layout,
    outputs=((ids.HEAD_MULTIPLES, "figure"),),
    depends=frozenset({"run", "step", "prompt", "ablate", "mode", "layer", "head"})
    | frozenset({"multiples_mode", "listing"}),
    draw=draw,
    events={"click": on_click(click_head, ids.HEAD_MULTIPLES)},
    options={"multiples_mode": Option((ids.MULTIPLES_MODE, "value"), one_of(MODES, "step"))},
)
