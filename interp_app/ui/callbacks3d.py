"""Callbacks of the 3D section: forward view + nearest tokens, embeddings, HTML export.

Separate requests from the 2D panels' render, so a 3D redraw never delays the rest; none at
all while the section is off screen: a clientside gate passes the selection on to them
(``SELECTION_3D``) only while ``VISIBLE``, so a click elsewhere sends no 3D request at all
(each used to cost a round trip after the panels were drawn, answered "no content").
Clicks on attention lines go through ``select`` like every other click
(``panels.forward3d.click`` reads their head and query position).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from dash import Dash, Input, Output, Patch, State, no_update
from dash.exceptions import PreventUpdate

from interp_app.core.analyzer import Analyzer
from interp_app.core.view import compute_forward
from interp_app.panels import figures3d
from interp_app.panels.forward3d import VISIBLE
from interp_app.panels.plotting import message_figure
from interp_app.ui import ids
from interp_app.ui.select import recheck
from training.checkpoint import CheckpointError


def threshold_of(value) -> float:
    return (
        float(value)
        if isinstance(value, int | float) and 0 <= value <= 1
        else figures3d.DEFAULT_THRESHOLD
    )


def forward_panels(analyzer: Analyzer, data, threshold, shown: dict | None = None):
    """(forward view, nearest tokens, what is shown). When only the head changed since
    ``shown``, the forward view is a ``Patch`` of its lines' styles and the title: the stacks
    and the table stay as they are in the browser."""
    sel, _ = recheck(analyzer, data)
    if sel is None:
        empty = message_figure("Nothing to show", 560)
        return empty, empty, None
    threshold = threshold_of(threshold)
    try:
        fwd = compute_forward(analyzer, sel)
    except CheckpointError as err:
        msg = message_figure(f"Step {sel.step} cannot be read: {err}", 560)
        return msg, msg, None
    key = [sel.run, sel.step, sel.prompt, sel.pos, list(sel.ablate), sel.mode, threshold]
    head = [sel.layer, sel.head]
    shown = shown if isinstance(shown, dict) and isinstance(shown.get("base"), int) else None
    if shown and shown.get("key") == key:  # same lines (the key fixes them): restyle them
        if shown.get("head") == head:
            return no_update, no_update, no_update
        patch = Patch()
        note = figures3d.part_note(fwd, sel, threshold)
        patch["layout"]["title"]["text"] = figures3d.forward_title(sel, threshold, note)
        for i, style in enumerate(figures3d.line_styles(fwd, sel, threshold)):
            line = patch["data"][shown["base"] + i]  # the lines are the figure's last traces
            line["opacity"] = style["opacity"]
            line["line"]["width"] = style["width"]
            line["meta"] = style["meta"]
        return patch, no_update, {"key": key, "head": head, "base": shown["base"]}
    forward = figures3d.forward_figure(fwd, sel, threshold)
    lines = sum(str(t.get("meta", "")).startswith("attn") for t in forward["data"])
    now = {"key": key, "head": head, "base": len(forward["data"]) - lines}
    return forward, figures3d.nearest_figure(fwd, sel), now


def embedding_panel(analyzer: Analyzer, data, which: str) -> tuple[dict | None, list | None]:
    """(figure, key); the figure only depends on run, step and the token set."""
    sel, _ = recheck(analyzer, data)
    if sel is None:
        return message_figure("Nothing to show", 360), None
    which = which if isinstance(which, str) and which in figures3d.EMBEDDING_SETS else "fruits"
    names = figures3d.EMBEDDING_SETS[which]
    key = [sel.run, sel.step, which]
    index = analyzer.store.info(sel.run).tokenizer.index
    present = [n for n in names if n in index]
    if not present:
        note = f"None of {', '.join(names)} is in this run's vocabulary"
        return message_figure(note, 360), key
    try:
        wte = analyzer.store.params(sel.run, sel.step)["wte"]
    except CheckpointError as err:
        return message_figure(f"Step {sel.step} cannot be read: {err}", 360), None
    vectors = np.stack([wte[index[n]] for n in present])
    return figures3d.embedding_figure(present, vectors, sel.step), key


def off_screen(visible) -> bool:
    """The browser said the section is off screen (None: not told, as a test client: draw)."""
    return visible is False


# The selection, for the 3D callbacks, only while the section is on screen (or not told).
GATE = """function(data, visible) {
  return visible === false ? window.dash_clientside.no_update : data;
}"""


def register_3d(app: Dash, analyzer: Analyzer) -> None:
    app.clientside_callback(
        GATE,
        Output(ids.SELECTION_3D, "data"),
        Input(ids.SELECTION, "data"),
        Input(VISIBLE, "data"),
    )

    @app.callback(
        Output(ids.FORWARD_3D, "figure"),
        Output(ids.NEAREST_TOKENS, "figure"),
        Output(ids.FORWARD_KEY, "data"),
        Input(ids.SELECTION_3D, "data"),
        Input(ids.ATTENTION_THRESHOLD, "value"),
        State(VISIBLE, "data"),
        State(ids.FORWARD_KEY, "data"),
    )
    def forward(data, threshold, visible, shown):
        if off_screen(visible):
            raise PreventUpdate  # drawn when scrolled to, for the selection then
        return forward_panels(analyzer, data, threshold, shown)

    @app.callback(
        Output(ids.EMBEDDING_STACKS, "figure"),
        Output(ids.EMBEDDING_KEY, "data"),
        Input(ids.SELECTION_3D, "data"),
        Input(ids.EMBEDDING_SET, "value"),
        State(VISIBLE, "data"),
        State(ids.EMBEDDING_KEY, "data"),
    )
    def embeddings(data, which, visible, shown):
        if off_screen(visible):
            raise PreventUpdate
        figure, key = embedding_panel(analyzer, data, which)
        if key is not None and key == shown:
            return no_update, no_update  # another head or position: the same embeddings
        return figure, key

    @app.callback(
        Output(ids.EXPORT_3D_FILE, "data"),
        Input(ids.EXPORT_3D, "n_clicks"),
        State(ids.SELECTION, "data"),
        State(ids.ATTENTION_THRESHOLD, "value"),
        prevent_initial_call=True,
    )
    def export(n_clicks, data, threshold):
        """A standalone HTML file with Plotly's JavaScript inside: opens with no network."""
        if not n_clicks:
            return no_update
        sel, _ = recheck(analyzer, data)
        figure, _, _ = forward_panels(analyzer, data, threshold)
        # the page's look (plotly.js defaults, no plotly.py template), Plotly's JS inside
        page = pio.to_html(go.Figure(figure).update_layout(template="none"), include_plotlyjs=True)
        name = f"forward-{sel.run}-step{sel.step}-{sel.head_name}.html" if sel else "forward.html"
        return {"content": page, "filename": name, "type": "text/html"}
