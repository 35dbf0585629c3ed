"""The only Dash-aware logic: turn events into a selection, and a selection into panels.

Two callbacks. ``select`` reads whichever control fired, resolves the new selection (bad
values fall back, with notices) and mirrors it into the URL. ``render`` draws every panel
from the selection in one round trip, skipping panels whose inputs did not change.
"""

from __future__ import annotations

import json
from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, ClientsideFunction, Dash, Input, Output, Patch, State, ctx, html, no_update

from interp_app.core.analysis import METRICS, parse_head
from interp_app.core.selection import Selection, as_float, as_int, parse_query
from interp_app.core.store import RunStore, encode_prompt
from interp_app.core.view import compute_patching, compute_view, resolve
from interp_app.panels import figures
from interp_app.ui import ids
from training.checkpoint import CheckpointError

PANELS = (
    ids.PATCHING,
    ids.HEAD_TIMELINE,
    ids.PREDICTION_TIMELINE,
    ids.LOSS_CURVE,
    ids.PREDICTION,
    ids.HEAD_GRID,
    ids.ATTENTION_PATTERN,
    ids.HEAD_MULTIPLES,
    ids.TOKEN_ATTRIBUTIONS,
    ids.RESIDUAL_CONTRIBUTIONS,
    ids.LOGIT_LENS,
)


SELECT_EVENTS: dict[str, tuple[Any, str]] = {  # every event that can change the selection
    "run": (ids.RUN_PICKER, "value"),
    "slider": (ids.STEP_SLIDER, "value"),
    "prompt": (ids.PROMPT_INPUT, "value"),
    "chips": ({"type": ids.CHIP, "index": ALL}, "n_clicks"),
    "prediction": (ids.PREDICTION, "clickData"),
    "grid": (ids.GRID_CLICK, "data"),
    "multiples": (ids.HEAD_MULTIPLES, "clickData"),
    "residual": (ids.RESIDUAL_CONTRIBUTIONS, "clickData"),
    "loss": (ids.LOSS_CURVE, "clickData"),
    "head_timeline": (ids.HEAD_TIMELINE, "clickData"),
    "prediction_timeline": (ids.PREDICTION_TIMELINE, "clickData"),
    "play": (ids.PLAY_INTERVAL, "n_intervals"),
    "ablate": (ids.ABLATE_BUTTON, "n_clicks"),
    "ablate_mode": (ids.ABLATE_MODE, "value"),
    "corrupt": (ids.CORRUPT_INPUT, "value"),
    "patching": (ids.PATCHING, "clickData"),
    "forward_3d": (ids.FORWARD_3D, "clickData"),
}


def _raw(sel: Any) -> dict[str, Any]:
    """A stored selection as raw URL-like values; {} when it is not a whole selection."""
    s = Selection.parse(sel)
    if s is None:
        return {}
    # the mode too: the URL leaves it out while nothing is ablated, a picked mode is kept
    return {**parse_query(s.to_query()), "step": s.step, "pos": s.pos, "ablate_mode": s.mode}


def control_values(metric: Any, src: Any, context: int) -> tuple[str, int]:
    """The metric and source position pickers' values, or their defaults if forged."""
    metric = metric if isinstance(metric, str) and metric in METRICS else "dla"
    src = as_int(src)
    return metric, (src if src is not None and 0 <= src < context else 0)


def recheck(store: RunStore, data: Any) -> tuple[Selection | None, list[str]]:
    """The selection store is client data: resolve it again, as a URL would be, and report
    what had to be replaced (nothing, for a selection this server wrote)."""
    raw = _raw(data)
    try:
        sel, notes = resolve(store, raw)
    except CheckpointError as err:
        return None, [str(err)]
    if sel is None:
        return None, notes or [f"No runs in {store.root}"]
    same = json.loads(json.dumps(sel.to_dict())) == data  # as the browser stores it
    return sel, ([] if same else notes or ["the selection was replaced"])


def first_point(click: Any) -> dict[str, Any] | None:
    """The first clicked point of a Plotly click event, if the event is one."""
    points = click.get("points") if isinstance(click, dict) else None
    if isinstance(points, list) and points and isinstance(points[0], dict):
        return points[0]
    return None


def toggled(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """The raw selection with one head added to or removed from the ablated set."""
    names = set(filter(None, raw.get("ablate", "").split(","))) ^ {name}
    return {**raw, "ablate": ",".join(sorted(names)), "ablate_mode": raw.get("ablate_mode")}


def nearest_step(steps: list[int], index: Any) -> int | None:
    """The checkpoint at a slider or heatmap index (an index, not a step number)."""
    i = as_int(index)
    return steps[i] if i is not None and 0 <= i < len(steps) else None


def event_to_raw(trigger: Any, value: Any, current: Any, store: RunStore) -> dict | None:
    """The raw selection an event asks for, or None when the event changes nothing (or is
    not an event any control of this page can send)."""
    raw = _raw(current)
    steps = store.steps(raw["run"]) if raw else []
    # The run picker and the prompt box are also written by ``render``; that echo must not
    # count as a user's choice (it would reset the step, position and target of a deep link).
    if trigger == ids.RUN_PICKER:
        if not isinstance(value, str) or (raw and value == raw.get("run")):
            return None
        return {**raw, "run": value, "step": None, "pos": None, "target": None}
    if trigger == ids.STEP_SLIDER:
        step = nearest_step(steps, value)
        return None if step is None else {**raw, "step": step}
    if trigger == ids.PROMPT_INPUT:
        if not (value is None or isinstance(value, str)) or (raw and value == raw.get("prompt")):
            return None
        return {**raw, "prompt": value or "", "pos": None, "target": None}
    if isinstance(trigger, dict) and trigger.get("type") == ids.CHIP:
        pos = as_int(trigger.get("index"))
        return None if pos is None else {**raw, "pos": pos}
    if not raw:
        return None  # every other event edits a selection this server already made
    if trigger == ids.ABLATE_BUTTON:
        return toggled(raw, raw["head"])
    if trigger == ids.GRID_CLICK:  # the head grid, through the shift-aware clientside hop
        name = value.get("head") if isinstance(value, dict) else None
        if not isinstance(name, str):
            return None
        return toggled(raw, name) if value.get("shift") is True else {**raw, "head": name}
    if trigger == ids.ABLATE_MODE:
        return {**raw, "ablate_mode": value} if isinstance(value, str) else None
    if trigger == ids.CORRUPT_INPUT:
        return {**raw, "corrupt": value or ""} if value is None or isinstance(value, str) else None
    if trigger == ids.PLAY_INTERVAL:
        later = [s for s in steps if s > int(raw["step"])]
        return {**raw, "step": later[0] if later else steps[0]} if steps else None  # loops
    point = first_point(value)
    return None if point is None else click_to_raw(trigger, point, raw, steps)


def click_to_raw(trigger: Any, point: dict[str, Any], raw: dict, steps: list[int]) -> dict | None:
    """What a click on one of the figures selects."""
    if trigger == ids.PREDICTION:
        target = point.get("customdata")
        return {**raw, "target": target} if isinstance(target, str) else None
    if trigger in (ids.HEAD_MULTIPLES, ids.RESIDUAL_CONTRIBUTIONS):  # the grid: grid-click
        name = point.get("customdata")
        if not isinstance(name, str) or not name.startswith("L") or " " in name:
            return None
        return {**raw, "head": name}
    if trigger == ids.FORWARD_3D:  # an attention line: [head name, query position]
        data = point.get("customdata")
        if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str)):
            return None
        pos = as_int(data[1])
        return None if pos is None else {**raw, "head": data[0], "pos": pos}
    if trigger == ids.PATCHING:
        curve, x, y = as_int(point.get("curveNumber")), point.get("x"), point.get("y")
        if curve == 0 and isinstance(y, str) and isinstance(x, str):
            return {**raw, "head": f"{y}{x}"}  # "L0" + "H1"
        if curve == 1 and as_int(x) is not None:
            return {**raw, "pos": as_int(x)}
        return None
    if trigger in (ids.HEAD_TIMELINE, ids.PREDICTION_TIMELINE):
        # x is the checkpoint's index (heatmap clicks carry no customdata); y the head's name
        step = nearest_step(steps, point.get("x"))
        if step is None:
            return None
        new = {**raw, "step": step}
        if trigger == ids.HEAD_TIMELINE and isinstance(point.get("y"), str):
            new["head"] = point["y"]
        return new
    if trigger == ids.LOSS_CURVE:
        x = as_float(point.get("x"))
        if not steps or x is None:
            return None
        return {**raw, "step": min(steps, key=lambda s: abs(s - x))}
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
                id=ids.chip(i),
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

    app.clientside_callback(
        ClientsideFunction(namespace="interp", function_name="gridClick"),
        Output(ids.GRID_CLICK, "data"),
        Input(ids.HEAD_GRID, "clickData"),
        prevent_initial_call=True,
    )

    @app.callback(
        output=dict(
            selection=Output(ids.SELECTION, "data"),
            search=Output(ids.URL, "search"),
            notices=Output(ids.NOTICES, "children"),
        ),
        inputs=dict(
            search=Input(ids.URL, "search"),
            events={name: Input(cid, prop) for name, (cid, prop) in SELECT_EVENTS.items()},
        ),
        state=dict(current=State(ids.SELECTION, "data")),
    )
    def select(search: Any, events: dict[str, Any], current: Any) -> dict[str, Any]:
        """Whichever control fired (``ctx.triggered_id``) becomes a new selection."""
        del events  # the trigger and its value come from ``ctx``
        nothing = {"selection": no_update, "search": no_update, "notices": no_update}
        trigger = ctx.triggered_id
        known = Selection.parse(current)
        search = search if isinstance(search, str) else ""
        raw: dict[str, Any] | None
        if trigger is None or trigger == ids.URL or known is None:
            if known is not None and search == known.to_query():
                return nothing
            raw = parse_query(search)
        else:
            if isinstance(trigger, dict) and not ctx.triggered[0]["value"]:
                return nothing  # chips re-rendered, not clicked
            raw = event_to_raw(trigger, ctx.triggered[0]["value"], current, store)
            if raw is None:
                return nothing
        try:
            sel, notes = resolve(store, raw)
        except CheckpointError as err:
            return {**nothing, "notices": notices_children([str(err)])}
        if trigger is None or trigger == ids.URL:  # a page (re)load: say what cannot be read
            notes = [*store.problems(), *notes]
        if sel is None:
            msg = notes or [f"No runs in {store.root}. Train one: interp-train --root {store.root}"]
            return {**nothing, "selection": None, "notices": notices_children(msg)}
        data = sel.to_dict()
        if data == current and trigger != ids.URL:
            return {**nothing, "notices": notices_children(notes) if notes else no_update}
        query = sel.to_query()
        return {
            "selection": data,
            "search": query if query != search else no_update,
            "notices": notices_children(notes),
        }

    controls = [
        (ids.RUN_PICKER, "options"),
        (ids.RUN_PICKER, "value"),
        (ids.STEP_SLIDER, "max"),
        (ids.STEP_SLIDER, "marks"),
        (ids.STEP_SLIDER, "value"),
        (ids.STEP_LABEL, "children"),
        (ids.PROMPT_INPUT, "value"),
        (ids.TOKEN_CHIPS, "children"),
        (ids.SOURCE_PICKER, "options"),
        (ids.SOURCE_PICKER, "value"),
        (ids.COMPARE_STEP, "options"),
        (ids.ABLATE_BUTTON, "children"),
        (ids.ABLATE_MODE, "value"),
        (ids.CORRUPT_INPUT, "value"),
    ]
    slots = [*controls, *((p, "figure") for p in PANELS), (ids.RENDERED, "data")]

    @app.callback(
        *(Output(cid, prop) for cid, prop in slots),
        Output(ids.NOTICES, "children", allow_duplicate=True),
        Input(ids.SELECTION, "data"),
        Input(ids.METRIC_PICKER, "value"),
        Input(ids.SOURCE_PICKER, "value"),
        Input(ids.COMPARE_STEP, "value"),
        Input(ids.MULTIPLES_MODE, "value"),
        Input(ids.LIVE_POLL, "n_intervals"),
        State(ids.RENDERED, "data"),
        prevent_initial_call=True,
    )
    def render(data, metric, src, compare, mode, _poll, rendered):
        out = {slot: no_update for slot in slots}
        result = lambda notes=no_update: (*(out[s] for s in slots), notes)  # noqa: E731
        rendered = rendered if isinstance(rendered, dict) else {}
        if not data:
            empty = figures.message_figure(f"No runs in {store.root}")
            out.update({(p, "figure"): empty for p in PANELS})
            out[(ids.RENDERED, "data")] = {}
            return result()
        sel, notes = recheck(store, data)
        if sel is None:
            out.update({(p, "figure"): figures.message_figure("Nothing to show") for p in PANELS})
            return result(notices_children(notes))
        forged = notices_children(notes) if notes else no_update  # not written by this server
        metric, src = control_values(metric, src, store.info(sel.run).model.context)
        runs, steps = store.runs(), store.steps(sel.run)
        bad = bad_steps.setdefault(sel.run, set())
        keys = {
            "runs": runs,
            "listing": [sel.run, steps[-1] if steps else None, len(steps), sorted(bad)],
            "run": sel.run,
            "step": [sel.run, sel.step],
            "words": [sel.run, sel.prompt, sel.pos],  # chips, source picker
            "query": [sel.run, sel.prompt, sel.pos, sel.target, sel.ablate, sel.mode],
            "prompt": [sel.run, sel.step, sel.prompt, sel.pos, sel.ablate, sel.mode],
            "pred": [sel.run, sel.step, sel.prompt, sel.pos, sel.target, sel.ablate, sel.mode],
            "patch": [sel.run, sel.step, sel.prompt, sel.pos, sel.target, sel.corrupt],
            "head": [sel.layer, sel.head],
            "view": [src, metric, compare, mode],
        }
        keys = json.loads(json.dumps(keys))  # compare as the browser stores them (lists)
        changed = {k for k, v in keys.items() if rendered.get(k) != v}
        if ctx.triggered_id == ids.LIVE_POLL and not changed:
            return result()  # nothing new on disk: the cheap, common case
        if "runs" in changed:
            out[(ids.RUN_PICKER, "options")] = [{"label": r, "value": r} for r in runs]
        if "run" in changed:
            out[(ids.RUN_PICKER, "value")] = sel.run
        if changed & {"listing", "step"}:
            out[(ids.STEP_SLIDER, "max")] = len(steps) - 1
            out[(ids.STEP_SLIDER, "marks")] = slider_marks(steps, bad)
            out[(ids.STEP_SLIDER, "value")] = (
                steps.index(sel.step) if sel.step in steps else no_update
            )
            out[(ids.STEP_LABEL, "children")] = f"step {sel.step}"
        if "listing" in changed:
            out[(ids.COMPARE_STEP, "options")] = [{"label": f"step {s}", "value": s} for s in steps]
        if changed & {"listing", "run"}:
            out[(ids.LOSS_CURVE, "figure")] = figures.loss_figure(
                store.loss_history(sel.run), sel.step, bad
            )
            skipped = store.metrics_notice(sel.run)
            if skipped:
                forged = notices_children([*notes, skipped])
        elif "step" in changed:  # only the marker moves: send a patch, not the curve
            out[(ids.LOSS_CURVE, "figure")] = patch(
                figures.loss_title(sel.step), [figures.loss_marker(sel.step)]
            )
        try:
            view = compute_view(store, sel, src=src)
        except CheckpointError as err:
            bad.add(sel.step)
            msg = figures.message_figure(f"Step {sel.step} cannot be read: {err}")
            out.update({(p, "figure"): msg for p in PANELS if p != ids.LOSS_CURVE})
            out[(ids.STEP_SLIDER, "marks")] = slider_marks(steps, bad)
            out[(ids.LOSS_CURVE, "figure")] = figures.loss_figure(
                store.loss_history(sel.run), sel.step, bad
            )
            out[(ids.RENDERED, "data")] = {**keys, "prompt": None, "pred": None, "words": None}
            note = f"step {sel.step} is unreadable ({err}); other steps still work"
            return result(notices_children([note]))
        out[(ids.ABLATE_BUTTON, "children")] = (
            f"Restore {sel.head_name}" if sel.head_name in sel.ablate else f"Ablate {sel.head_name}"
        )
        if "pred" in changed:
            out[(ids.ABLATE_MODE, "value")] = sel.mode
            out[(ids.CORRUPT_INPUT, "value")] = sel.corrupt
        if "patch" in changed or not rendered.get("patch_answer"):
            out[(ids.PATCHING, "figure")], keys["patch_answer"] = patching_panel(store, sel, view)
        else:  # same experiment, another head: move the frames, keep the heatmaps
            keys["patch_answer"] = rendered["patch_answer"]
            if "head" in changed:
                n_layers = store.info(sel.run).model.n_layers
                title, shapes = figures.patching_overlay(sel, n_layers, keys["patch_answer"])
                out[(ids.PATCHING, "figure")] = patch(title, shapes)
        if "words" in changed:
            out[(ids.PROMPT_INPUT, "value")] = sel.prompt
            out[(ids.TOKEN_CHIPS, "children")] = chips(view.words, sel.pos)
            out[(ids.SOURCE_PICKER, "options")] = [
                {"label": f"src {i}:{w}", "value": i} for i, w in enumerate(view.words)
            ]
            if src >= view.length:
                out[(ids.SOURCE_PICKER, "value")] = 0
        if "prompt" in changed:
            out[(ids.LOGIT_LENS, "figure")] = figures.logit_lens_figure(view, sel)
        if changed & {"prompt", "pred"}:
            out[(ids.PREDICTION, "figure")] = figures.prediction_figure(view, sel)
        base = base_step = None
        if isinstance(compare, int) and compare != sel.step and compare in steps:
            try:
                base, base_step = compute_view(store, sel.with_(step=compare), src=src), compare
            except CheckpointError:
                bad.add(compare)
        out[(ids.HEAD_GRID, "figure")] = figures.head_grid_figure(
            view, sel, metric, base, base_step
        )
        out[(ids.RESIDUAL_CONTRIBUTIONS, "figure")] = figures.residual_figure(
            view, sel, base, base_step
        )
        prev = previous_view(store, sel, steps, src) if mode == "change" else None
        out[(ids.HEAD_MULTIPLES, "figure")] = figures.multiples_figure(
            view, sel, *(prev or (None, None))
        )
        out[(ids.ATTENTION_PATTERN, "figure")] = figures.attention_figure(view, sel)
        out[(ids.TOKEN_ATTRIBUTIONS, "figure")] = figures.token_attribution_figure(view, sel)
        t_steps, t_values, t_bad = timeline(store, sel, src)
        bad.update(t_bad)
        data_changed = changed & {"listing", "query", "view"}
        if t_steps and data_changed:
            out[(ids.HEAD_TIMELINE, "figure")] = figures.head_timeline_figure(
                t_steps, t_values[metric], sel, metric
            )
            out[(ids.PREDICTION_TIMELINE, "figure")] = figures.prediction_timeline_figure(
                t_steps, t_values["probs"], view.vocab, sel
            )
        elif t_steps:  # a step or head change only moves the marks
            names = [
                figures.head_name(layer, h)
                for layer in range(t_values["dla"].shape[1])
                for h in range(t_values["dla"].shape[2])
            ]
            title, shapes = figures.head_timeline_overlay(t_steps, names, sel, metric)
            out[(ids.HEAD_TIMELINE, "figure")] = patch(title, shapes)
            if "step" in changed:
                out[(ids.PREDICTION_TIMELINE, "figure")] = patch(
                    figures.prediction_timeline_title(sel), figures.step_marker(t_steps, sel.step)
                )
        out[(ids.RENDERED, "data")] = keys
        return result(forged)

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

    @app.callback(
        Output(ids.HEAD_SPARKLINE, "figure"),
        Input(ids.HEAD_MULTIPLES, "hoverData"),
        Input(ids.SELECTION, "data"),
        Input(ids.METRIC_PICKER, "value"),
        State(ids.SOURCE_PICKER, "value"),
    )
    def sparkline(hover, data, metric, src):
        sel, _ = recheck(store, data) if data else (None, [])
        if sel is None:
            return figures.message_figure("", 150)
        metric, src = control_values(metric, src, store.info(sel.run).model.context)
        name = sel.head_name
        point = first_point(hover)
        if point is not None and isinstance(point.get("customdata"), str):
            name = point["customdata"]
        model = store.info(sel.run).model
        parsed = parse_head(name, model.n_layers, model.n_heads)
        steps, values, _ = timeline(store, sel, src)
        if not steps or parsed is None:
            return figures.message_figure("", 150)
        return figures.sparkline_figure(
            steps, values[metric][:, parsed[0], parsed[1]], name, metric
        )


def patching_panel(store: RunStore, sel: Selection, view) -> tuple[dict, str | None]:
    """The patching figure and the answer it compares against (None: nothing to patch)."""
    result = compute_patching(store, sel)
    if isinstance(result, str):
        return figures.message_figure(result, 300), None
    heads, resid, answer = result
    return figures.patching_figure(heads, resid, view.words, sel, answer), answer


def patch(title: str, shapes: list[dict]) -> Patch:
    """Move a figure's marks without resending its data."""
    p = Patch()
    p["layout"]["title"]["text"] = title
    p["layout"]["shapes"] = shapes
    return p


def timeline(store: RunStore, sel: Selection, src: int):
    info = store.info(sel.run)
    prompt = encode_prompt(info.tokenizer, info.model.context, sel.prompt)
    target = info.tokenizer.vocab.index(sel.target)
    return store.timeline(sel.run, prompt, sel.pos, target, src, sel.ablate, sel.mode)


def previous_view(store: RunStore, sel: Selection, steps: list[int], src: int):
    """The view at the checkpoint before the selected one, for 'change since previous'."""
    earlier = [s for s in steps if s < sel.step]
    if not earlier:
        return None
    try:
        return compute_view(store, sel.with_(step=earlier[-1]), src=src), earlier[-1]
    except CheckpointError:
        return None
