"""The head grid: every head's score under the picked metric; click selects a head,
shift-click ablates it. Its controls: the metric, the source position, ablation."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
from dash import dcc, html

from interp_app.core.heads import METRICS, head_name
from interp_app.core.induction_views import HEAD_METRICS
from interp_app.core.selection import Selection, as_int
from interp_app.panels.base import (
    ClientHop,
    Context,
    Event,
    Option,
    Overlay,
    Panel,
    Raw,
    one_of,
    toggled,
)
from interp_app.panels.induction_metrics import head_metric, heldout_view
from interp_app.panels.plotting import Figure, figure, frame, scale
from interp_app.ui import ids
from interp_app.ui.components import column, graph, hint

MODE_CHOICES = {"zero": "zero", "mean": "mean (this prompt)", "valid-mean": "mean (validation)"}
SHARE_HINT = (
    "Share: a head's direct attribution over the sum of |direct attribution| of every term "
    "of the logit (embeddings, heads, biases, MLPs, final LN bias), −1 to 1 at any logit. "
    "Mean ablation puts in the head's output averaged over this prompt's positions; "
    "validation mean, over every position of the run's validation lines."
)


def _colours(heat: dict, values: np.ndarray, metric: str, compared: bool) -> None:
    if metric == "share" and not compared:  # a share is in [-1, 1]: one scale at every step
        heat.update(colorscale=scale("RdBu"), zmid=0, zmin=-1, zmax=1)
    elif metric in ("dla", "share") or compared:
        heat.update(colorscale=scale("RdBu"), zmid=0)
    else:
        heat.update(colorscale=scale("Blues"), zmin=0, zmax=float(np.abs(values).max()) or 1.0)


TEXT_CELLS = 36  # past this many heads the cells carry no text (hover names them)
HEAD_SEARCH = ids.HEAD_SEARCH  # a typed head name (L7H3) selects that head


def grid_title(what: str, sel: Selection) -> str:
    return f"Heads: {what} — selected {sel.head_name}"


def grid_frame(sel: Selection) -> list[dict]:
    return [frame(sel.head - 0.5, sel.head + 0.5, sel.layer - 0.5, sel.layer + 0.5)]


def head_grid_figure(
    view: Any, sel: Selection, metric: str, base: Any | None = None, base_step: int | None = None
) -> Figure:
    """Per-head scores; with ``base``, their change from ``base_step`` to the selected step.
    Up to ``TEXT_CELLS`` heads each cell is labelled; past that, the hover names them."""
    values = view.metrics[metric] - (base.metrics[metric] if base is not None else 0)
    n_layers, n_heads = values.shape
    names = [[head_name(layer, h) for h in range(n_heads)] for layer in range(n_layers)]
    heat = {
        "type": "heatmap",
        "z": values,
        "x": [f"H{h}" for h in range(n_heads)],
        "y": [f"L{layer}" for layer in range(n_layers)],
        "customdata": names,
        "colorbar": {"thickness": 10},
    }
    if n_layers * n_heads <= TEXT_CELLS:
        heat["text"] = [
            [
                f"{n}{' ✕' if n in sel.ablate else ''}<br>{v:.2f}"
                for n, v in zip(nr, row, strict=True)
            ]
            for nr, row in zip(names, values, strict=True)
        ]
        heat["texttemplate"] = "%{text}"
        heat["hovertemplate"] = "%{customdata}: %{z:.3f}<extra></extra>"
    else:
        heat["text"] = [[" (ablated)" if n in sel.ablate else "" for n in nr] for nr in names]
        heat["hovertemplate"] = "%{customdata}%{text}: %{z:.3f}<extra></extra>"
    _colours(heat, values, metric, base is not None)
    return figure(
        [heat],
        grid_title(_what(metric, sel, base_step if base is not None else None), sel),
        300,
        shapes=grid_frame(sel),
        yaxis={"autorange": "reversed"},
    )


def _what(metric: str, sel: Selection, base_step: int | None) -> str:
    what = HEAD_METRICS[metric]
    if base_step is not None:
        what = f"change in {what}, step {base_step} → {sel.step}"
    return what


def ablate_label(sel: Selection) -> str:
    return f"Restore {sel.head_name}" if sel.head_name in sel.ablate else f"Ablate {sel.head_name}"


def draw(ctx: Context) -> dict[Any, Any]:
    sel, view, compare = ctx.sel, heldout_view(ctx, ctx.view, ctx.sel.step), ctx.options["compare"]
    base = ctx.view_at(compare) if compare is not None and compare != sel.step else None
    base = heldout_view(ctx, base, compare)  # an induction run's held-out metrics too
    out: dict[Any, Any] = {
        PANEL.figure: head_grid_figure(
            view, sel, head_metric(ctx), base, compare if base is not None else None
        ),
        (ids.ABLATE_BUTTON, "children"): ablate_label(sel),
        (ids.ABLATE_MODE, "value"): sel.mode,
    }
    if ctx.changed & {"run", "prompt"}:
        out[(ids.SOURCE_PICKER, "options")] = [
            {"label": f"src {i}:{w}", "value": i} for i, w in enumerate(view.words)
        ]
        if ctx.options["src"] >= view.length:
            out[(ids.SOURCE_PICKER, "value")] = 0
    return out


def overlay(ctx: Context) -> Overlay:
    """Another head: the frame, the title and the ablate button (the scores stay)."""
    sel, compare = ctx.sel, ctx.options["compare"]
    changed = compare is not None and compare != sel.step and compare not in ctx.unreadable
    title = grid_title(_what(head_metric(ctx), sel, compare if changed else None), sel)
    return Overlay(
        title, grid_frame(sel), extra={(ids.ABLATE_BUTTON, "children"): ablate_label(sel)}
    )


def search_head(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    """A typed head name (any case); one the model does not have is reported by ``resolve``."""
    if not isinstance(value, str) or not value.strip():
        return None
    return {**raw, "head": value.strip().upper()}


def ablate_selected(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    return toggled(raw, raw["head"])


def pick_mode(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    return {**raw, "ablate_mode": value} if isinstance(value, str) else None


def clean_source(value: Any, context: int, steps: list[int]) -> int:
    """The source position picker's value, or 0 if forged."""
    src = as_int(value)
    return src if src is not None and 0 <= src < context else 0


def grid_click(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    """The head grid, through the shift-aware clientside hop: shift toggles ablation."""
    name = value.get("head") if isinstance(value, dict) else None
    if not isinstance(name, str):
        return None
    return toggled(raw, name) if value.get("shift") is True else {**raw, "head": name}


def _pickers() -> dbc.Row:
    metric = dcc.Dropdown(
        id=ids.METRIC_PICKER,
        options=[{"label": v, "value": k} for k, v in METRICS.items()],
        value="dla",
        clearable=False,
    )
    source = dcc.Dropdown(id=ids.SOURCE_PICKER, clearable=False, placeholder="source")
    return dbc.Row([dbc.Col(metric, width=8), dbc.Col(source, width=4)], className="g-1 mb-1")


def _ablation() -> html.Div:
    button = dbc.Button(
        "Ablate",
        id=ids.ABLATE_BUTTON,
        size="sm",
        color="danger",
        outline=True,
        n_clicks=0,
        className="me-2 py-0",
    )
    modes = dbc.RadioItems(
        id=ids.ABLATE_MODE,
        options=[{"label": label, "value": mode} for mode, label in MODE_CHOICES.items()],
        value="zero",
        inline=True,
        className="small d-inline-block",
    )
    return html.Div([button, modes], className="d-flex align-items-center mt-1")


def _search() -> dcc.Input:
    return dcc.Input(
        id=HEAD_SEARCH,
        type="text",
        placeholder="find a head: L7H3",
        debounce=True,
        className="form-control form-control-sm mb-1",
    )


def layout() -> dbc.Col:
    body = [_pickers(), _search(), graph(ids.HEAD_GRID, 300), _ablation(), hint(SHARE_HINT)]
    return column("Head grid", body, md=3)


PANEL = Panel(
    name="head_grid",
    layout=layout,
    outputs=(
        (ids.HEAD_GRID, "figure"),
        (ids.ABLATE_BUTTON, "children"),
        (ids.ABLATE_MODE, "value"),
        (ids.SOURCE_PICKER, "options"),
        (ids.SOURCE_PICKER, "value"),
    ),
    depends=frozenset(
        {"run", "step", "prompt", "pos", "target", "ablate", "mode"}
        | {"metric", "src", "compare", "listing"}
    ),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"layer", "head"}),
    events={
        "click": Event(ids.GRID_CLICK, "data", grid_click),
        "ablate": Event(ids.ABLATE_BUTTON, "n_clicks", ablate_selected),
        "mode": Event(ids.ABLATE_MODE, "value", pick_mode),
        "search": Event(HEAD_SEARCH, "value", search_head),
    },
    options={
        "metric": Option((ids.METRIC_PICKER, "value"), one_of(HEAD_METRICS, "dla")),
        "src": Option((ids.SOURCE_PICKER, "value"), clean_source),
    },
    clientside=(ClientHop("gridClick", (ids.GRID_CLICK, "data"), (ids.HEAD_GRID, "clickData")),),
)
