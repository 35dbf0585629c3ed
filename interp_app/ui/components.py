"""Small page components every panel uses, so that every panel looks the same."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc

GRAPH_CONFIG: Any = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def graph(component_id: str, height: int = 300) -> dcc.Loading:
    return dcc.Loading(
        dcc.Graph(id=component_id, config=GRAPH_CONFIG, style={"height": f"{height}px"}),
        type="dot",
        delay_show=300,
    )


def card(title: str, body: Any, **kw: Any) -> dbc.Card:
    return dbc.Card(
        [
            dbc.CardHeader(title, className="py-1 fw-semibold small"),
            dbc.CardBody(body, className="p-2"),
        ],
        className="mb-3 shadow-sm",
        **kw,
    )


def column(title: str, body: Any, md: int = 12) -> dbc.Col:
    """A titled card in a column of the page's grid (12 columns wide)."""
    return dbc.Col(card(title, body), md=md)


def hint(text: str) -> Any:
    from dash import html

    return html.Div(text, className="text-muted small mt-1")


def notices(notes: list[str]) -> list:
    return [
        dbc.Alert(n, color="warning", className="py-1 px-2 mb-2 small", dismissable=True)
        for n in notes
    ]
