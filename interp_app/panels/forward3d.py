"""The 3D section: the forward pass as stacks of boxes with attention lines, the nearest
tokens, the token embeddings, and an HTML export. Its figures are drawn by their own
callbacks (``ui.callbacks3d``), only while the section is on screen or near it (the
browser says so: ``assets/visible.js`` writes ``VISIBLE``); the registry carries
its layout and its click, which selects a head and a query position."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from interp_app.core.selection import as_int
from interp_app.panels.base import Panel, Raw, on_click
from interp_app.panels.figures3d import DEFAULT_THRESHOLD, EMBEDDING_SETS
from interp_app.ui import ids
from interp_app.ui.components import card, graph

FORWARD_TITLE = (
    "The forward pass in 3D: each vector a stack of boxes (4 numbers a box), attention as "
    "lines; click a line to select its head and query"
)


def _controls() -> dbc.Row:
    threshold = dcc.Slider(
        id=ids.ATTENTION_THRESHOLD,
        min=0.05,
        max=0.95,
        step=0.05,
        value=DEFAULT_THRESHOLD,
        marks={v / 10: f"{v / 10:.1f}" for v in range(1, 10, 2)},
        updatemode="mouseup",
    )
    export = dbc.Button(
        "⤓ Export 3D view as HTML",
        id=ids.EXPORT_3D,
        size="sm",
        color="secondary",
        outline=True,
        n_clicks=0,
    )
    label = dbc.Label("Attention lines above weight", className="small mb-0")
    return dbc.Row(
        [
            dbc.Col(label, width="auto"),
            dbc.Col(threshold, md=5),
            dbc.Col(export, width="auto"),
            dcc.Download(id=ids.EXPORT_3D_FILE),
            dcc.Store(id=ids.FORWARD_KEY),
        ],
        className="g-2 align-items-center mb-1",
    )


def _embeddings() -> dbc.Card:
    which = dbc.RadioItems(
        id=ids.EMBEDDING_SET,
        options=[{"label": name, "value": name} for name in EMBEDDING_SETS],
        value="fruits",
        inline=True,
        className="small",
    )
    body = [which, graph(ids.EMBEDDING_STACKS, 360), dcc.Store(id=ids.EMBEDDING_KEY)]
    return card("Token embeddings at the selected checkpoint", body)


SECTION = ids.SECTION_3D  # the 3D section's element, watched by assets/visible.js
VISIBLE = ids.SECTION_3D_VISIBLE  # whether it is on screen (or near): the 3D callbacks draw then


def layout() -> dbc.Col:
    views = dbc.Row(
        [
            dbc.Col(graph(ids.FORWARD_3D, 560), md=8),
            dbc.Col(graph(ids.NEAREST_TOKENS, 560), md=4),
        ],
        className="g-2",
    )
    stores = [dcc.Store(id=VISIBLE), dcc.Store(id=ids.SELECTION_3D)]
    body = [card(FORWARD_TITLE, [_controls(), views]), _embeddings(), *stores]
    return dbc.Col(html.Div(body, id=SECTION), md=12)


def click(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    """An attention line carries [head name, query position]."""
    data = point.get("customdata")
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str)):
        return None
    pos = as_int(data[1])
    return None if pos is None else {**raw, "head": data[0], "pos": pos}


PANEL = Panel(
    name="forward_3d",
    layout=layout,
    outputs=(),
    depends=frozenset(),
    draw=lambda ctx: {},
    events={"click": on_click(click, ids.FORWARD_3D)},
    needs_view=False,
)
