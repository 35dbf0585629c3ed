"""The only Dash-aware logic: turn events into a selection, and a selection into panels.

Two callbacks. ``select`` reads whichever control fired, resolves the new selection (bad
values fall back, with notices) and mirrors it into the URL. ``render`` draws every panel
from the selection in one round trip, skipping panels whose inputs did not change.
"""

from __future__ import annotations

import json
from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, ctx, html, no_update

from interp_app import figures
from interp_app.runs import RunStore
from interp_app.selection import Selection, parse_query
from interp_app.view import compute_view, resolve
from training.checkpoint import CheckpointError

PANELS = (
    "loss-curve",
    "prediction",
    "head-grid",
    "attention-pattern",
    "head-multiples",
    "token-attributions",
    "residual-contributions",
    "logit-lens",
)


def _raw(sel: dict[str, Any] | None) -> dict[str, Any]:
    if not sel:
        return {}
    s = Selection.from_dict(sel)
    return {**parse_query(s.to_query()), "step": s.step, "pos": s.pos}


def event_to_raw(trigger: Any, value: Any, current: dict | None, store: RunStore) -> dict | None:
    """The raw selection an event asks for, or None when the event changes nothing."""
    raw = _raw(current)
    if trigger == "run-picker":
        return {**raw, "run": value, "step": None, "pos": None, "target": None}
    if trigger == "step-slider":
        steps = store.steps(raw["run"]) if raw else []
        return {**raw, "step": steps[value]} if steps and 0 <= value < len(steps) else None
    if trigger == "prompt-input":
        return {**raw, "prompt": value or "", "pos": None, "target": None}
    if isinstance(trigger, dict) and trigger.get("type") == "chip":
        return {**raw, "pos": trigger["index"]}
    points = (value or {}).get("points") or []
    if not points:
        return None
    point = points[0]
    if trigger == "prediction":
        return {**raw, "target": point.get("customdata")}
    if trigger in ("head-grid", "head-multiples", "residual-contributions"):
        name = point.get("customdata")
        if not isinstance(name, str) or not name.startswith("L") or " " in name:
            return None
        return {**raw, "head": name}
    if trigger == "loss-curve":
        steps = store.steps(raw["run"]) if raw else []
        if not steps or point.get("x") is None:
            return None
        return {**raw, "step": min(steps, key=lambda s: abs(s - float(point["x"])))}
    return None


def notices_children(notes: list[str]) -> list:
    return [
        dbc.Alert(n, color="warning", className="py-1 px-2 mb-2 small", dismissable=True)
        for n in notes
    ]


def slider_marks(steps: list[int], bad: set[int], max_labels: int = 11) -> dict:
    """Real step numbers as labels, only where they fit (checkpoints are dense early)."""
    n = len(steps)
    show = {0, n - 1} | {round(i * (n - 1) / (max_labels - 1)) for i in range(max_labels)}
    marks: dict[int, Any] = {}
    for i, step in enumerate(steps):
        if step in bad:
            marks[i] = {"label": f"⚠{step}", "style": {"color": "#c92a2a"}}
        elif i in show:
            marks[i] = {"label": str(step)}
    return marks


def chips(words: list[str], pos: int) -> list:
    out = []
    for i, w in enumerate(words):
        color = "warning" if w == "UNKNOWN" else "primary"
        out.append(
            dbc.Button(
                f"{i}:{w}",
                id={"type": "chip", "index": i},
                size="sm",
                className="me-1 mb-1",
                color=color,
                outline=i != pos,
                n_clicks=0,
            )
        )
    return [
        html.Span(
            "Tokens (click one to pick the query position): ", className="small text-muted me-2"
        ),
        *out,
    ]


def register(app: Dash, store: RunStore) -> None:
    bad_steps: dict[str, set[int]] = {}

    @app.callback(
        Output("selection", "data"),
        Output("url", "search"),
        Output("notices", "children"),
        Input("url", "search"),
        Input("run-picker", "value"),
        Input("step-slider", "value"),
        Input("prompt-input", "value"),
        Input({"type": "chip", "index": ALL}, "n_clicks"),
        Input("prediction", "clickData"),
        Input("head-grid", "clickData"),
        Input("head-multiples", "clickData"),
        Input("residual-contributions", "clickData"),
        Input("loss-curve", "clickData"),
        State("selection", "data"),
    )
    def select(search, *args):
        current = args[-1]
        trigger = ctx.triggered_id
        if trigger is None or trigger == "url" or not current:
            if current and search == Selection.from_dict(current).to_query():
                return no_update, no_update, no_update
            raw = parse_query(search)
        else:
            if isinstance(trigger, dict) and not ctx.triggered[0]["value"]:
                return no_update, no_update, no_update  # chips re-rendered, not clicked
            raw = event_to_raw(trigger, ctx.triggered[0]["value"], current, store)
            if raw is None:
                return no_update, no_update, no_update
        try:
            sel, notes = resolve(store, raw)
        except CheckpointError as err:
            return no_update, no_update, notices_children([str(err)])
        if sel is None:
            msg = notes or [f"No runs in {store.root}. Train one: interp-train --root {store.root}"]
            return None, no_update, notices_children(msg)
        data = sel.to_dict()
        if data == current and trigger != "url":
            return no_update, no_update, notices_children(notes) if notes else no_update
        query = sel.to_query()
        return data, (query if query != search else no_update), notices_children(notes)

    outputs = [Output(p, "figure") for p in PANELS]

    @app.callback(
        Output("run-picker", "options"),
        Output("run-picker", "value"),
        Output("step-slider", "max"),
        Output("step-slider", "marks"),
        Output("step-slider", "value"),
        Output("step-label", "children"),
        Output("prompt-input", "value"),
        Output("token-chips", "children"),
        Output("source-picker", "options"),
        Output("source-picker", "value"),
        *outputs,
        Output("rendered", "data"),
        Output("notices", "children", allow_duplicate=True),
        Input("selection", "data"),
        Input("metric-picker", "value"),
        Input("source-picker", "value"),
        State("rendered", "data"),
        prevent_initial_call=True,
    )
    def render(data, metric, src, rendered):
        rendered = rendered or {}
        n_out = 10 + len(PANELS) + 2
        if not data:
            empty = figures.message_figure(f"No runs in {store.root}")
            return (*([no_update] * 10), *([empty] * len(PANELS)), {}, no_update)
        sel = Selection.from_dict(data)
        steps = store.steps(sel.run)
        bad = bad_steps.setdefault(sel.run, set())
        keys = {
            "runs": json.dumps(store.runs()),
            "run": sel.run,
            "step": [sel.run, sel.step, len(steps), sorted(bad)],
            "prompt": [sel.run, sel.step, sel.prompt, sel.pos],
            "pred": [sel.run, sel.step, sel.prompt, sel.pos, sel.target],
            "src": src,
            "metric": metric,
        }
        changed = {k for k, v in keys.items() if rendered.get(k) != v}
        out: list[Any] = [no_update] * n_out
        if "runs" in changed:
            out[0] = [{"label": r, "value": r} for r in store.runs()]
        if "run" in changed:
            out[1] = sel.run
        notes = no_update
        try:
            view = compute_view(store, sel, src=src if isinstance(src, int) else 0)
        except CheckpointError as err:
            bad.add(sel.step)
            keys["step"] = [sel.run, sel.step, len(steps), sorted(bad)]
            msg = figures.message_figure(f"Step {sel.step} cannot be read: {err}")
            out[2:6] = [
                len(steps) - 1,
                slider_marks(steps, bad),
                steps.index(sel.step),
                f"step {sel.step}",
            ]
            out[10 : 10 + len(PANELS)] = [msg] * len(PANELS)
            out[10] = figures.loss_figure(store.loss_history(sel.run), sel.step, bad)
            out[-2] = {**keys, "prompt": None, "pred": None}
            out[-1] = notices_children(
                [f"step {sel.step} is unreadable ({err}); other steps still work"]
            )
            return tuple(out)
        if "step" in changed:
            out[2] = len(steps) - 1
            out[3] = slider_marks(steps, bad)
            out[4] = steps.index(sel.step) if sel.step in steps else no_update
            out[5] = f"step {sel.step}"
            out[10] = figures.loss_figure(store.loss_history(sel.run), sel.step, bad)
        if "prompt" in changed:
            out[6] = sel.prompt
            out[7] = chips(view.words, sel.pos)
            out[8] = [{"label": f"src {i}:{w}", "value": i} for i, w in enumerate(view.words)]
            if not isinstance(src, int) or src >= view.length:
                out[9] = 0
        if changed & {"prompt", "pred"}:
            out[11] = figures.prediction_figure(view, sel)
        out[12] = figures.head_grid_figure(view, sel, metric or "dla")
        out[13] = figures.attention_figure(view, sel)
        out[14] = figures.multiples_figure(view, sel)
        out[15] = figures.token_attribution_figure(view, sel)
        out[16] = figures.residual_figure(view, sel)
        if "prompt" in changed:
            out[17] = figures.logit_lens_figure(view, sel)
        out[-2] = keys
        out[-1] = notes
        return tuple(out)
