"""Activation patching from the prompt into a corrupted one: each head's output and each
residual vector; a click on a head selects it, on a position picks it."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
from dash import html

from interp_app.core.causal import PATCH_MIN_GAP
from interp_app.core.heads import head_name
from interp_app.core.jobs import JobAnalyzer, patch_query
from interp_app.core.selection import Selection, as_int
from interp_app.panels.base import Context, Event, Overlay, Panel, Raw, on_click
from interp_app.panels.plotting import (
    Figure,
    figure,
    frame,
    message_figure,
    position_labels,
    scale,
)
from interp_app.ui import ids
from interp_app.ui.components import column, graph

HINT = (
    "Patching runs on the model without ablation: heads ablated above are not ablated here. "
    f"When the two prompts' logit differences are within {PATCH_MIN_GAP:.1%} of the logit "
    "scale of each other, there is no gap to normalise and the panel says so."
)


def patching_overlay(
    sel: Selection, n_layers: int, answer: str, partial: str = ""
) -> tuple[str, list[dict]]:
    """Title and frames (selected head, selected position): all a head change alters;
    ``partial`` says how much of a background result is there."""
    frame_head = frame(sel.head - 0.5, sel.head + 0.5, sel.layer - 0.5, sel.layer + 0.5)
    frame_pos = frame(sel.pos - 0.5, sel.pos + 0.5, -0.5, n_layers + 0.5, "x2", "y2")
    title = (
        f"Activation patching clean → corrupted, without ablation: ({sel.target!r} − "
        f"{answer!r}) logit difference, clean = 1, corrupted = 0 — selected {sel.head_name}"
        f"{partial}"
    )
    return title, [frame_head, frame_pos]


def _cell(value: float) -> str:
    """A cell's label; empty while a background job has not computed it (NaN)."""
    return "" if np.isnan(value) else f"{value:.2f}"


def _heads_trace(heads: np.ndarray, common: dict) -> dict:
    n_layers, n_heads = heads.shape
    names = [[head_name(layer, h) for h in range(n_heads)] for layer in range(n_layers)]
    return {
        "type": "heatmap",
        "z": heads,
        "x": [f"H{h}" for h in range(n_heads)],
        "y": [f"L{layer}" for layer in range(n_layers)],
        "customdata": names,
        "text": [
            [f"{n}<br>{_cell(v)}" for n, v in zip(nr, row, strict=True)]
            for nr, row in zip(names, heads, strict=True)
        ],
        "hovertemplate": "patch %{customdata}: %{z:.3f}<extra></extra>",
        "showscale": False,
        "xaxis": "x",
        "yaxis": "y",
        **common,
    }


def _resid_trace(resid: np.ndarray, n_words: int, n_layers: int, common: dict) -> dict:
    return {
        "type": "heatmap",
        "z": resid,
        "x": list(range(n_words)),
        "y": ["embeddings"] + [f"after L{i}" for i in range(n_layers)],
        "text": [[_cell(v) for v in row] for row in resid],
        "hovertemplate": "patch %{y} at position %{x}: %{z:.3f}<extra></extra>",
        "xaxis": "x2",
        "yaxis": "y2",
        "colorbar": {"thickness": 10},
        "xgap": 2,
        "ygap": 2,
        **common,
    }


def patching_figure(
    heads: np.ndarray,
    resid: np.ndarray,
    words: list[str],
    sel: Selection,
    answer: str,
    partial: str = "",
) -> Figure:
    """Two heatmaps of the normalised logit difference after patching clean -> corrupted:
    each head's output (layers x heads) and each residual vector (boundary x position);
    rows a background job has not computed yet are NaN (blank)."""
    n_layers = heads.shape[0]
    common = {"zmid": 0, "zmin": -1, "zmax": 1, "colorscale": scale("RdBu")}
    common["texttemplate"] = "%{text}"
    data = [_heads_trace(heads, common), _resid_trace(resid, len(words), n_layers, common)]
    title, shapes = patching_overlay(sel, n_layers, answer, partial)
    return figure(
        data,
        title,
        300,
        shapes=shapes,
        xaxis={"domain": [0, 0.28], "title": {"text": "head"}},
        yaxis={"autorange": "reversed"},
        xaxis2={
            "domain": [0.38, 1],
            "anchor": "y2",
            "tickmode": "array",
            "tickvals": list(range(len(words))),
            "ticktext": position_labels(words),
            "title": {"text": "position (residual stream)"},
        },
        yaxis2={"anchor": "x2", "autorange": "reversed"},
    )


Result = tuple[np.ndarray, np.ndarray, str, str] | str


def _background(analyzer: JobAnalyzer, sel: Selection) -> Result | None:
    """From the shared cache, what a background job computed so far of a patching too big
    for a request (None: this one is computed in the request)."""
    tokens = len(analyzer.encode(sel.run, sel.prompt).padded)
    if not analyzer.patch_in_background(sel.run, tokens):
        return None
    query = patch_query(analyzer, sel)
    if isinstance(query, str):
        return query
    got = analyzer.cached_patching(query)
    if got is None:
        return (
            f"Computing activation patching at step {sel.step} in the background, a layer "
            "and a block of positions at a time (progress above)."
        )
    if not got["normalised"]:
        return (
            f"The prompt and the corrupted prompt give almost the same logit difference "
            f"({got['clean']:+.4f} and {got['corrupt']:+.4f}): too close to normalise "
            f"(within {PATCH_MIN_GAP:.1%} of the logit scale)."
        )
    answer = analyzer.store.info(sel.run).tokenizer.vocab[got["answer"]]
    done, total = got["done"], got["total"]
    partial = "" if done == total else f" (computing: {done} of {total} parts)"
    return got["heads"], got["resid"], answer, partial


def _result(ctx: Context) -> Result:
    """(heads, residual, answer, how much is there) or why there is nothing to draw: in the
    request (the article's model), or from a background job (big models)."""
    from interp_app.core.view import compute_patching

    if isinstance(ctx.analyzer, JobAnalyzer):
        found = _background(ctx.analyzer, ctx.sel)
        if found is not None:
            return found
    result = compute_patching(ctx.analyzer, ctx.sel)
    return result if isinstance(result, str) else (*result, "")


def draw(ctx: Context) -> dict[Any, Any]:
    out: dict[Any, Any] = {(ids.CORRUPT_INPUT, "value"): ctx.sel.corrupt}
    result = _result(ctx)
    if isinstance(result, str):
        out[PANEL.figure] = message_figure(result, 300)
    else:
        heads, resid, answer, partial = result
        figure = patching_figure(heads, resid, ctx.view.words, ctx.sel, answer, partial)
        out[PANEL.figure] = figure
    return out


def overlay(ctx: Context) -> Overlay | None:
    """Same experiment, another head: move the frames, keep the heatmaps (the result is
    cached, so asking again costs a lookup)."""
    result = _result(ctx)
    if isinstance(result, str):
        return None
    return Overlay(*patching_overlay(ctx.sel, ctx.model.n_layers, result[2], result[3]))


def click(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    curve, x, y = as_int(point.get("curveNumber")), point.get("x"), point.get("y")
    if curve == 0 and isinstance(y, str) and isinstance(x, str):
        return {**raw, "head": f"{y}{x}"}  # "L0" + "H1"
    if curve == 1 and as_int(x) is not None:
        return {**raw, "pos": as_int(x)}
    return None


def corrupt(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    return {**raw, "corrupt": value or ""} if value is None or isinstance(value, str) else None


def layout() -> dbc.Col:
    label = dbc.Label(
        "Corrupted prompt (same number of tokens; Enter)",
        html_for=ids.CORRUPT_INPUT,
        className="small mb-0",
    )
    box = dbc.Input(id=ids.CORRUPT_INPUT, type="text", debounce=True, size="sm")
    row = dbc.Row(
        [dbc.Col(label, width="auto"), dbc.Col(box, md=4)],
        className="g-2 align-items-center mb-1",
    )
    return column(
        "Activation patching",
        [row, graph(ids.PATCHING, 300), html.Div(HINT, className="text-muted small")],
    )


PANEL = Panel(
    name="patching",
    layout=layout,
    outputs=((ids.PATCHING, "figure"), (ids.CORRUPT_INPUT, "value")),
    depends=frozenset({"run", "step", "prompt", "pos", "target", "corrupt"}),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"layer", "head"}),
    events={
        "click": on_click(click, ids.PATCHING),
        "corrupt": Event(ids.CORRUPT_INPUT, "value", corrupt),
    },
)
