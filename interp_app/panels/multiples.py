"""Every head's attention pattern as small multiples (or their change since the previous
checkpoint); a click selects a head, hovering one draws its metric over training."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
from dash import dcc, html

from interp_app.core.heads import head_name, parse_head
from interp_app.core.induction_views import HEAD_METRICS
from interp_app.core.selection import Selection
from interp_app.panels.base import (
    ClientHop,
    Context,
    Option,
    Overlay,
    Panel,
    first_point,
    on_click,
    one_of,
)
from interp_app.panels.induction_metrics import head_metric, metric_series
from interp_app.panels.plotly_arrays import typed
from interp_app.panels.plotting import (
    HIGHLIGHT,
    Figure,
    figure,
    message_figure,
    scale,
)
from interp_app.panels.residual import click_head
from interp_app.ui import ids
from interp_app.ui.components import column, graph

MODES = {"step": "this step", "change": "change since previous checkpoint"}


TOP_HEADS = 16  # a model with more heads shows the top ones by the grid's metric
MAX_CELLS = 32  # a multiple's side: longer prompts are pooled into blocks of positions
MULTIPLES_CLICK = ids.MULTIPLES_CLICK  # the clicked multiple's head name (clientside hop)


def _domains(n: int, gap: float) -> list[tuple[float, float]]:
    width = (1 - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def pooled(pattern: np.ndarray, cells: int = MAX_CELLS) -> tuple[np.ndarray, int]:
    """([R, R] pattern, block side b): each cell the entry of largest magnitude of a b x b
    block of positions (a sharp pattern stays visible), the masked future as NaN (a gap).
    A pattern of at most ``cells`` positions is returned as it is (b = 1)."""
    n = len(pattern)
    b = -(-n // cells)
    r = -(-n // b)
    padded = np.zeros((r * b, r * b), np.float32)
    padded[:n, :n] = np.tril(np.nan_to_num(np.asarray(pattern, np.float32)))
    blocks = padded.reshape(r, b, r, b).transpose(0, 2, 1, 3).reshape(r, r, b * b)
    pick = np.abs(blocks).argmax(-1)[..., None]
    out = np.take_along_axis(blocks, pick, -1)[..., 0]
    out[np.triu_indices(r, 1)] = np.nan  # blocks wholly in the future
    return out, b


def shown_heads(view: Any, metric: str, top: int = TOP_HEADS) -> list[tuple[int, int]]:
    """Every head (layer by layer) when there are at most ``top``, else the ``top`` with the
    largest |metric| (the grid's), best first."""
    n_layers, n_heads = view.patterns.shape[:2]
    if n_layers * n_heads <= top:
        return [(layer, h) for layer in range(n_layers) for h in range(n_heads)]
    values = np.asarray(view.metrics.get(metric, view.metrics["dla"]), np.float64)
    order = np.argsort(-np.nan_to_num(np.abs(values)).ravel(), kind="stable")[:top]
    return [(int(i) // n_heads, int(i) % n_heads) for i in order]


def _grid(view: Any, heads: list[tuple[int, int]]) -> tuple[int, int]:
    """(rows, columns) of the multiples: layers x heads when every head is shown."""
    n_layers, n_heads = view.patterns.shape[:2]
    if len(heads) == n_layers * n_heads:
        return n_layers, n_heads
    cols = int(np.ceil(np.sqrt(len(heads))))
    return int(np.ceil(len(heads) / cols)), cols


def _trace(pattern: Any, name: str, suffix: str, change: bool, block: int) -> dict:
    n = len(pattern)
    starts = [i * block for i in range(n)]
    where = "q%{y} k%{x}" if block == 1 else f"q%{{y}}+ k%{{x}}+ (largest of {block}x{block})"
    return {
        "type": "heatmap",
        "z": typed(pattern),
        "x": starts,
        "y": starts,
        "colorscale": scale("RdBu" if change else "Blues"),
        "zmin": -1 if change else 0,
        "zmax": 1,
        "showscale": False,
        "name": name,
        "hovertemplate": f"{name} {where}: %{{z:.2f}}<extra></extra>",
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
    }


def _slots(view: Any, heads: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
    """Each shown head's (x domain, y domain) on the paper."""
    rows, cols = _grid(view, heads)
    xdom, ydom = _domains(cols, 0.06), _domains(rows, 0.14 if rows <= 4 else 0.1)[::-1]
    return {head: (xdom[i % cols], ydom[i // cols]) for i, head in enumerate(heads)}


MARGIN = {"l": 20, "r": 20, "t": 60, "b": 20}  # px around the multiples' plot area
HEIGHT = 380  # px: the figure's height
FRAME = ids.MULTIPLES_FRAME
CAPTION = ids.MULTIPLES_CAPTION
LABEL_PX = 16  # a head name's line height
# the frame's look (Plotly's frame shape, as an element clicks pass through)
FRAME_LOOK: dict[str, Any] = {
    "position": "absolute",
    "border": f"3px solid {HIGHLIGHT}",
    "boxSizing": "border-box",
    "pointerEvents": "none",
    "zIndex": 5,
}
LABEL_LOOK: dict[str, Any] = {  # a head's name, centred above its multiple
    "position": "absolute",
    "transform": "translate(-50%, -100%)",
    "fontSize": "12px",
    "lineHeight": f"{LABEL_PX}px",
    "color": "#212529",
    "pointerEvents": "none",
    "whiteSpace": "nowrap",
}
LABELS = ids.MULTIPLES_LABELS


def _left(x: float) -> str:
    """CSS ``left`` of paper x: the figure's width follows the page, its margins are fixed."""
    return f"calc({MARGIN['l']}px + (100% - {MARGIN['l'] + MARGIN['r']}px) * {x:.4f})"


def _top(y: float) -> str:
    return f"{MARGIN['t'] + (HEIGHT - MARGIN['t'] - MARGIN['b']) * (1 - y):.1f}px"


def head_labels(view: Any, heads: list[tuple[int, int]]) -> list[html.Span]:
    """Each shown head's name above its multiple, as elements over the figure (16
    annotations cost Plotly about as much as the 16 heatmaps on every re-draw)."""
    labels = []
    for (layer, h), ((x0, x1), (_, y1)) in _slots(view, heads).items():
        style = {**LABEL_LOOK, "left": _left((x0 + x1) / 2), "top": _top(y1)}
        labels.append(html.Span(head_name(layer, h), style=style))
    return labels


def frame_style(slot: tuple | None) -> dict[str, Any]:
    """CSS placing the frame element over a multiple's (x domain, y domain) on the paper:
    the figure's width follows the page, its margins and height are fixed pixels."""
    if slot is None:
        return {**FRAME_LOOK, "display": "none"}
    (x0, x1), (y0, y1) = slot
    x0, x1 = x0 - 0.01, x1 + 0.01
    inner_w = f"(100% - {MARGIN['l'] + MARGIN['r']}px)"
    inner_h = HEIGHT - MARGIN["t"] - MARGIN["b"]
    top = MARGIN["t"] + inner_h * (1 - y1) - LABEL_PX - 2  # the name above it included
    return {
        **FRAME_LOOK,
        "display": "block",
        "left": _left(x0),
        "width": f"calc({inner_w} * {x1 - x0:.4f})",
        "top": f"{top:.1f}px",
        "height": f"{inner_h * (y1 - y0) + LABEL_PX + 6:.1f}px",
    }


def multiples_title(view: Any, metric: str, base_step: int | None = None) -> str:
    """What the multiples show (not which head is selected: a head click leaves the
    figure as it is)."""
    heads = shown_heads(view, metric)
    what = "Every head's pattern" if base_step is None else f"Change since step {base_step}"
    n_layers, n_heads = view.patterns.shape[:2]
    if len(heads) < n_layers * n_heads:
        what = (
            f"{'Patterns' if base_step is None else what} of the top {len(heads)} of "
            f"{n_layers * n_heads} heads by |{metric}|"
        )
    block = pooled(view.patterns[0, 0])[1]
    pooled_note = f"; {block}x{block} positions a cell" if block > 1 else ""
    return f"{what} (click to select{pooled_note})"


def multiples_overlay(view: Any, sel: Selection, metric: str) -> Overlay:
    """The selected head's frame and the caption naming it: all a head click changes,
    both outside the figure (re-drawing 16 multiples took Plotly 150-250 ms a click)."""
    slot = _slots(view, shown_heads(view, metric)).get((sel.layer, sel.head))
    where = "" if slot is not None else " (not among these)"
    caption = f"selected {sel.head_name}{where}"
    return Overlay(
        None, None, extra={(FRAME, "style"): frame_style(slot), (CAPTION, "children"): caption}
    )


def multiples_figure(
    view: Any,
    sel: Selection,
    base: Any | None = None,
    base_step: int | None = None,
    metric: str = "dla",
) -> Figure:
    """Small multiples (a layers x heads grid, or the top heads by ``metric``), each pattern
    pooled to at most ``MAX_CELLS`` a side (the selected head's frame is
    :func:`multiples_overlay`'s, outside the figure).

    With ``base`` each multiple shows the change of its pattern since ``base_step``.
    """
    heads = shown_heads(view, metric)
    slots = _slots(view, heads)
    data, axes = [], {}
    for i, (layer, h) in enumerate(heads):
        suffix, name = ("" if i == 0 else str(i + 1)), head_name(layer, h)
        pattern = view.patterns[layer, h]
        if base is not None:
            pattern = pattern - base.patterns[layer, h]
        cells, block = pooled(pattern)
        data.append(_trace(cells, name, suffix, base is not None, block))
        xdom, ydom = slots[(layer, h)]
        # no axis is drawn (nothing to read on them): half of Plotly's time per re-draw
        axes[f"xaxis{suffix}"] = {"domain": xdom, "anchor": f"y{suffix}", "visible": False}
        axes[f"yaxis{suffix}"] = {
            "domain": ydom,
            "anchor": f"x{suffix}",
            "visible": False,
            "autorange": "reversed",
        }
    title = multiples_title(view, metric, base_step if base is not None else None)
    return figure(data, title, HEIGHT, margin=MARGIN, **axes)


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


def hovered_name(ctx: Context, point: dict[str, Any] | None) -> str | None:
    """The head of the hovered multiple (its trace number: the multiples carry no per-cell
    names, 1,024 strings a multiple)."""
    curve = point.get("curveNumber") if point else None
    if not isinstance(curve, int) or isinstance(curve, bool):
        return None
    heads = shown_heads(ctx.view, ctx.options["metric"])
    return head_name(*heads[curve]) if 0 <= curve < len(heads) else None


def hovered_sparkline(ctx: Context, hover: Any) -> Figure:
    """The hovered head's metric over training (the selected head's when none is hovered)."""
    name = hovered_name(ctx, first_point(hover)) or ctx.sel.head_name
    parsed = parse_head(name, ctx.model.n_layers, ctx.model.n_heads)
    metric = head_metric(ctx)
    steps, values, _ = metric_series(ctx, metric)
    if values is None or parsed is None:
        return message_figure("", 150)
    return sparkline_figure(steps, values[:, parsed[0], parsed[1]], name, metric)


def _base(ctx: Context) -> tuple[Any | None, int | None]:
    """The previous checkpoint's view in "change" mode (None: this step's patterns)."""
    earlier = [s for s in ctx.steps if s < ctx.sel.step]
    if ctx.options["multiples_mode"] == "change" and earlier:
        base = ctx.view_at(earlier[-1])
        return base, (earlier[-1] if base is not None else None)
    return None, None


SPARKLINE = (ids.HEAD_SPARKLINE, "figure")  # drawn with the panel: no second request a click


def draw(ctx: Context) -> dict[Any, Any]:
    base, step = _base(ctx)
    metric = ctx.options["metric"]
    figure = multiples_figure(ctx.view, ctx.sel, base, step, metric)
    marks = multiples_overlay(ctx.view, ctx.sel, metric)
    labels = head_labels(ctx.view, shown_heads(ctx.view, metric))
    return {
        PANEL.figure: figure,
        SPARKLINE: hovered_sparkline(ctx, None),
        (LABELS, "children"): labels,
        **marks.extra,
    }


def overlay(ctx: Context) -> Overlay:
    marks = multiples_overlay(ctx.view, ctx.sel, ctx.options["metric"])
    return replace(marks, extra={**marks.extra, SPARKLINE: hovered_sparkline(ctx, None)})


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
    caption = html.Div(id=CAPTION, className="small text-muted")
    frame = html.Div(id=FRAME, style=frame_style(None))
    labels = html.Div(id=LABELS)
    figure = html.Div(
        [graph(ids.HEAD_MULTIPLES, HEIGHT), labels, frame], style={"position": "relative"}
    )
    body = [mode, caption, figure, sparkline, dcc.Store(id=MULTIPLES_CLICK)]
    return column("Heads' attention patterns", body, 6)


PANEL = Panel(
    name="multiples",
    layout=layout,
    outputs=(
        (ids.HEAD_MULTIPLES, "figure"),
        SPARKLINE,
        (FRAME, "style"),
        (CAPTION, "children"),
        (LABELS, "children"),
    ),
    depends=frozenset({"run", "step", "prompt", "pos", "target", "ablate", "mode"})
    | frozenset({"multiples_mode", "listing", "metric", "src"}),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"layer", "head"}),
    events={"click": replace(on_click(click_head, MULTIPLES_CLICK), prop="data")},
    clientside=(
        ClientHop("multiplesClick", (MULTIPLES_CLICK, "data"), (ids.HEAD_MULTIPLES, "clickData")),
    ),
    options={"multiples_mode": Option((ids.MULTIPLES_MODE, "value"), one_of(MODES, "step"))},
    cleared={
        (FRAME, "style"): frame_style(None),
        (LABELS, "children"): [],
        (CAPTION, "children"): "",
    },
)
