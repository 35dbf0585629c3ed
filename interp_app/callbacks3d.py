"""Callbacks of the 3D section: forward view + nearest tokens, embeddings, HTML export.

Separate requests from the 2D panels' render, so the browser fetches both at once and a 3D
redraw never delays the rest. Clicks on attention lines go through ``select`` like every
other click (``event_to_raw`` reads their head and query position).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from dash import Dash, Input, Output, State, no_update

from interp_app import figures, figures3d
from interp_app.callbacks import recheck
from interp_app.runs import RunStore
from interp_app.view import compute_forward
from training.checkpoint import CheckpointError

DEFAULT_THRESHOLD = 0.3


def threshold_of(value) -> float:
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else DEFAULT_THRESHOLD


def forward_panels(store: RunStore, data, threshold) -> tuple[dict, dict]:
    sel, _ = recheck(store, data)
    if sel is None:
        empty = figures.message_figure("Nothing to show", 560)
        return empty, empty
    try:
        fwd = compute_forward(store, sel)
    except CheckpointError as err:
        msg = figures.message_figure(f"Step {sel.step} cannot be read: {err}", 560)
        return msg, msg
    return (
        figures3d.forward_figure(fwd, sel, threshold_of(threshold)),
        figures3d.nearest_figure(fwd, sel),
    )


def embedding_panel(store: RunStore, data, which: str) -> tuple[dict | None, list | None]:
    """(figure, key); the figure only depends on run, step and the token set."""
    sel, _ = recheck(store, data)
    if sel is None:
        return figures.message_figure("Nothing to show", 360), None
    names = figures3d.EMBEDDING_SETS.get(which, figures3d.FRUITS)
    vocab = store.info(sel.run).tokenizer.vocab
    present = [n for n in names if n in vocab]
    if not present:
        return figures.message_figure(f"None of {', '.join(names)} is in this run's vocabulary"), [
            sel.run,
            sel.step,
            which,
        ]
    try:
        wte = store.params(sel.run, sel.step)["wte"]
    except CheckpointError as err:
        return figures.message_figure(f"Step {sel.step} cannot be read: {err}", 360), None
    vectors = np.stack([wte[vocab.index(n)] for n in present])
    return figures3d.embedding_figure(present, vectors, sel.step), [sel.run, sel.step, which]


def register_3d(app: Dash, store: RunStore) -> None:
    @app.callback(
        Output("forward-3d", "figure"),
        Output("nearest-tokens", "figure"),
        Input("selection", "data"),
        Input("attention-threshold", "value"),
    )
    def forward(data, threshold):
        return forward_panels(store, data, threshold)

    @app.callback(
        Output("embedding-stacks", "figure"),
        Output("embedding-key", "data"),
        Input("selection", "data"),
        Input("embedding-set", "value"),
        State("embedding-key", "data"),
    )
    def embeddings(data, which, shown):
        figure, key = embedding_panel(store, data, which)
        if key is not None and key == shown:
            return no_update, no_update  # another head or position: the same embeddings
        return figure, key

    @app.callback(
        Output("export-3d-file", "data"),
        Input("export-3d", "n_clicks"),
        State("selection", "data"),
        State("attention-threshold", "value"),
        prevent_initial_call=True,
    )
    def export(n_clicks, data, threshold):
        """A standalone HTML file with Plotly's JavaScript inside: opens with no network."""
        if not n_clicks:
            return no_update
        sel, _ = recheck(store, data)
        figure, _ = forward_panels(store, data, threshold)
        # the page's look (plotly.js defaults, no plotly.py template), Plotly's JS inside
        page = pio.to_html(go.Figure(figure).update_layout(template="none"), include_plotlyjs=True)
        name = f"forward-{sel.run}-step{sel.step}-{sel.head_name}.html" if sel else "forward.html"
        return {"content": page, "filename": name, "type": "text/html"}
