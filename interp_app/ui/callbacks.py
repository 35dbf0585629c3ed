"""Every callback of the page but the 3D section's: ``select`` and ``render`` loop over the
panel registry; ``play`` runs the step timer; ``sparkline`` follows the hovered head."""

from __future__ import annotations

from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, ctx

from interp_app.core.heads import parse_head
from interp_app.core.selection import as_int
from interp_app.panels import REGISTRY
from interp_app.panels.base import Context, first_point
from interp_app.panels.multiples import sparkline_figure
from interp_app.panels.plotting import message_figure
from interp_app.ui import ids
from interp_app.ui.render import OPTIONS, OUTPUTS, Renderer
from interp_app.ui.select import event_inputs, recheck, select


def register(app: Dash, analyzer: Any) -> None:
    for panel in REGISTRY:
        for hop in panel.clientside:
            app.clientside_callback(
                ClientsideFunction(namespace="interp", function_name=hop.function),
                Output(*hop.output),
                Input(*hop.input),
                prevent_initial_call=True,
            )
    register_select(app, analyzer)
    register_render(app, analyzer)
    register_play(app)
    register_sparkline(app, analyzer)


def register_select(app: Dash, analyzer: Any) -> None:
    @app.callback(
        output=dict(
            selection=Output(ids.SELECTION, "data"),
            search=Output(ids.URL, "search"),
            notices=Output(ids.NOTICES, "children"),
        ),
        inputs=dict(search=Input(ids.URL, "search"), events=event_inputs()),
        state=dict(current=State(ids.SELECTION, "data")),
    )
    def on_select(search: Any, events: dict[str, Any], current: Any) -> dict[str, Any]:
        del events  # the trigger and its value come from ``ctx``
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        return select(analyzer, ctx.triggered_id, value, search, current)


def register_render(app: Dash, analyzer: Any) -> None:
    renderer = Renderer(analyzer)
    slots = [*OUTPUTS, (ids.RENDERED, "data"), (ids.NOTICES, "children")]

    @app.callback(
        output=[Output(cid, prop, allow_duplicate=cid == ids.NOTICES) for cid, prop in slots],
        inputs=dict(
            data=Input(ids.SELECTION, "data"),
            options={name: Input(*option.slot) for name, option in OPTIONS.items()},
            poll=Input(ids.LIVE_POLL, "n_intervals"),
        ),
        state=dict(rendered=State(ids.RENDERED, "data")),
        prevent_initial_call=True,
    )
    def render(data: Any, options: dict[str, Any], poll: Any, rendered: Any) -> list:
        from dash import no_update

        out = renderer(data, options, rendered)
        return [out.get(slot, no_update) for slot in slots]


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
    @app.callback(
        Output(ids.HEAD_SPARKLINE, "figure"),
        Input(ids.HEAD_MULTIPLES, "hoverData"),
        Input(ids.SELECTION, "data"),
        Input(ids.METRIC_PICKER, "value"),
        State(ids.SOURCE_PICKER, "value"),
    )
    def sparkline(hover, data, metric, src):
        sel, _ = recheck(analyzer, data) if data else (None, [])
        if sel is None:
            return message_figure("", 150)
        store = analyzer.store
        model, steps = store.info(sel.run).model, store.steps(sel.run)
        options = {"metric": metric, "src": src}
        options = {k: OPTIONS[k].clean(v, model.context, steps) for k, v in options.items()}
        point = first_point(hover)
        name = point["customdata"] if point and isinstance(point.get("customdata"), str) else None
        parsed = parse_head(name or sel.head_name, model.n_layers, model.n_heads)
        t_steps, values = Context(analyzer, sel, steps, set(), options, set()).timeline
        if not t_steps or parsed is None:
            return message_figure("", 150)
        series = values[options["metric"]][:, parsed[0], parsed[1]]
        return sparkline_figure(t_steps, series, name or sel.head_name, options["metric"])
