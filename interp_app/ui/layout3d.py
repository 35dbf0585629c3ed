"""The 3D section of the page: forward pass, nearest tokens, embeddings, export."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc

from interp_app.panels.figures3d import DEFAULT_THRESHOLD, EMBEDDING_SETS
from interp_app.ui import ids


def views_3d(graph, panel) -> list:
    """``graph`` and ``panel`` are the page's own builders, so the section looks the same."""
    controls = dbc.Row(
        [
            dbc.Col(
                dbc.Label("Attention lines above weight", className="small mb-0"),
                width="auto",
            ),
            dbc.Col(
                dcc.Slider(
                    id=ids.ATTENTION_THRESHOLD,
                    min=0.05,
                    max=0.95,
                    step=0.05,
                    value=DEFAULT_THRESHOLD,
                    marks={v / 10: f"{v / 10:.1f}" for v in range(1, 10, 2)},
                    updatemode="mouseup",
                ),
                md=5,
            ),
            dbc.Col(
                dbc.Button(
                    "⤓ Export 3D view as HTML",
                    id=ids.EXPORT_3D,
                    size="sm",
                    color="secondary",
                    outline=True,
                    n_clicks=0,
                ),
                width="auto",
            ),
            dcc.Download(id=ids.EXPORT_3D_FILE),
            dcc.Store(id=ids.FORWARD_KEY),
        ],
        className="g-2 align-items-center mb-1",
    )
    return [
        panel(
            "The forward pass in 3D: each vector a stack of boxes (4 numbers a box), attention "
            "as lines; click a line to select its head and query",
            [
                controls,
                dbc.Row(
                    [
                        dbc.Col(graph(ids.FORWARD_3D, 560), md=8),
                        dbc.Col(graph(ids.NEAREST_TOKENS, 560), md=4),
                    ],
                    className="g-2",
                ),
            ],
        ),
        panel(
            "Token embeddings at the selected checkpoint",
            [
                dbc.RadioItems(
                    id=ids.EMBEDDING_SET,
                    options=[{"label": name, "value": name} for name in EMBEDDING_SETS],
                    value="fruits",
                    inline=True,
                    className="small",
                ),
                graph(ids.EMBEDDING_STACKS, 360),
                dcc.Store(id=ids.EMBEDDING_KEY),
            ],
        ),
    ]
