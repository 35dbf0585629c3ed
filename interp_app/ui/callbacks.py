"""Every callback of the page but the 3D section's: the main one (``ui.update``: select,
then render, looping over the panel registry); ``play`` runs the step timer; ``sparkline``
follows the hovered head."""

from __future__ import annotations

from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from interp_app.core.selection import Selection, as_int
from interp_app.panels import REGISTRY
from interp_app.panels.base import Context
from interp_app.panels.multiples import hovered_sparkline
from interp_app.panels.plotting import message_figure
from interp_app.ui import ids
from interp_app.ui.jobs import job_outputs, register_jobs
from interp_app.ui.render import OPTIONS, OUTPUTS, Renderer, clean_options, listing_print
from interp_app.ui.select import event_inputs, recheck
from interp_app.ui.update import update
from training.checkpoint import CheckpointError


def register(app: Dash, analyzer: Any, manager: Any = None) -> None:
    """``manager``: the background-callback manager of the timeline jobs (None: none)."""
    for panel in REGISTRY:
        for hop in panel.clientside:
            app.clientside_callback(
                ClientsideFunction(namespace="interp", function_name=hop.function),
                Output(*hop.output),
                Input(*hop.input),
                prevent_initial_call=True,
            )
    register_update(app, analyzer)
    if manager is not None:
        register_jobs(app, manager)
    register_poll(app, analyzer)
    register_play(app)
    register_sparkline(app, analyzer)


def register_update(app: Dash, analyzer: Any) -> None:
    """The page's main callback: see ``ui.update``."""
    renderer = Renderer(analyzer)
    slots = [
        (ids.SELECTION, "data"),
        (ids.URL, "search"),
        *OUTPUTS,
        (ids.RENDERED, "data"),
        (ids.NOTICES, "children"),
        (ids.JOB_REQUEST, "data"),
    ]

    @app.callback(
        output=[Output(cid, prop) for cid, prop in slots],
        inputs=dict(
            search=Input(ids.URL, "search"),
            events=event_inputs(),
            options={name: Input(*option.slot) for name, option in OPTIONS.items()},
            listing=Input(ids.LISTING, "data"),
        ),
        state=dict(
            current=State(ids.SELECTION, "data"),
            rendered=State(ids.RENDERED, "data"),
            request=State(ids.JOB_REQUEST, "data"),
        ),
    )
    def on_update(search, events, options, listing, current, rendered, request) -> list:
        del events, listing  # the trigger and its value come from ``ctx``
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        trigger = ctx.triggered_id
        out = update(renderer, trigger, value, search, current, options, rendered)
        out.update(job_outputs(analyzer, out, current, options, request))
        if not out:
            raise PreventUpdate
        return [out.get(slot, no_update) for slot in slots]


def register_poll(app: Dash, analyzer: Any) -> None:
    """New runs or steps on disk: a callback of its own that writes what it found only when
    the listing changed, and a clientside hop (``assets/idle.js``) that passes it to the main
    callback once the page is idle (a newer request supersedes one in flight, and would drop
    a click with it)."""

    @app.callback(
        Output(ids.LISTING_FOUND, "data"),
        Input(ids.LIVE_POLL, "n_intervals"),
        State(ids.LISTING, "data"),
        State(ids.SELECTION, "data"),
        prevent_initial_call=True,
    )
    def poll(n_intervals: Any, shown: Any, current: Any) -> str:
        store = analyzer.store
        runs = store.runs()
        sel = Selection.parse(current)
        try:
            steps = store.steps(sel.run) if sel is not None and sel.run in runs else []
        except CheckpointError:  # unreadable now: the main callback says so
            steps = []
        now = listing_print(runs, steps)
        if now == shown:
            raise PreventUpdate
        return now  # a new or removed run or step: the main callback draws (or reselects)

    app.clientside_callback(
        ClientsideFunction(namespace="interp", function_name="listing"),
        Output(ids.LISTING, "data", allow_duplicate=True),
        Input(ids.LISTING_FOUND, "data"),
        prevent_initial_call=True,
    )


def register_play(app: Dash) -> None:
    @app.callback(
        Output(ids.PLAY_INTERVAL, "disabled"),
        Output(ids.PLAY_BUTTON, "children"),
        Output(ids.PLAY_INTERVAL, "interval"),
        Input(ids.PLAY_BUTTON, "n_clicks"),
        Input(ids.PLAY_SPEED, "value"),
        State(ids.PLAY_INTERVAL, "disabled"),
    )
    def play(n_clicks, speed, disabled):
        clicks, speed = as_int(n_clicks), as_int(speed)
        playing = clicks is not None and clicks % 2 == 1
        speed = speed if speed is not None and 100 <= speed <= 60_000 else 700
        return not playing, ("⏸ Pause" if playing else "▶ Play"), speed


def register_sparkline(app: Dash, analyzer: Any) -> None:
    """The hovered head's sparkline (the main callback draws the selected head's)."""

    @app.callback(
        Output(ids.HEAD_SPARKLINE, "figure", allow_duplicate=True),
        Input(ids.HEAD_MULTIPLES, "hoverData"),
        State(ids.SELECTION, "data"),
        State(ids.METRIC_PICKER, "value"),
        State(ids.SOURCE_PICKER, "value"),
        prevent_initial_call=True,
    )
    def sparkline(hover, data, metric, src):
        sel, _ = recheck(analyzer, data) if data else (None, [])
        if sel is None:
            return message_figure("", 150)
        store = analyzer.store
        model, steps = store.info(sel.run).model, store.steps(sel.run)
        options = clean_options({"metric": metric, "src": src}, model.context, steps)
        return hovered_sparkline(Context(analyzer, sel, steps, set(), options, set()), hover)
