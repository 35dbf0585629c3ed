"""The page: the stores, the navigation bar, then every registered panel in order."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from interp_app.panels import REGISTRY
from interp_app.ui import ids, jobs

FOOTER = (
    "Click a head in the grid, the multiples or the residual bars; a token chip picks the "
    "position; a prediction bar picks the target. The URL mirrors the view."
)


def stores(live_ms: int) -> list:
    """What the callbacks keep in the browser: the selection (mirrored by the URL), what
    each panel last drew, the head grid's click (with Shift held or not), the listing of
    runs and steps last drawn and the one the live poll found (passed on when the page is
    idle, ``assets/idle.js``), the play and live-poll timers."""
    return [
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.SELECTION),
        dcc.Store(id=ids.RENDERED),
        dcc.Store(id=ids.GRID_CLICK),
        dcc.Store(id=ids.LISTING),
        dcc.Store(id=ids.LISTING_FOUND),
        dcc.Store(id=ids.PANELS_HIDDEN),
        dcc.Interval(id=ids.PLAY_INTERVAL, interval=700, disabled=True),
        dcc.Interval(id=ids.LIVE_POLL, interval=live_ms, disabled=live_ms <= 0),
        *jobs.stores(),
    ]


def navbar(root: str) -> dbc.Navbar:
    return dbc.Navbar(
        dbc.Container(
            [
                html.Span("Transformer explorer", className="navbar-brand fw-bold"),
                html.Span(f"checkpoints: {root}", className="text-light small"),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-3",
    )


def validation_layout(layout: html.Div) -> html.Div:
    """The page plus what exists only once drawn (the token chips): Dash checks every
    callback's ids against it instead of ignoring unknown ones."""
    extra = [c for p in REGISTRY if p.placeholders is not None for c in p.placeholders()]
    return html.Div([layout, *extra])


def build_layout(root: str, live_ms: int = 3000) -> html.Div:
    panels = [fragment for p in REGISTRY if (fragment := p.layout()) is not None]
    body = [
        html.Div(id=ids.NOTICES),
        jobs.layout(),
        dbc.Row(panels),
        html.Footer(FOOTER, className="text-muted small mb-4"),
    ]
    return html.Div([*stores(live_ms), navbar(root), dbc.Container(body, fluid=True)])
