"""The top card: run, checkpoint (slider, play, compare-with) and prompt, and the prompt's
token chips. Two panels: the run's controls draw without reading a step; the chips need
the selected step's view (the words as the model sees them)."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, dcc, html

from interp_app.core.selection import as_int
from interp_app.panels.base import Context, Event, Option, Panel, Raw, nearest_step
from interp_app.ui import ids
from interp_app.ui.components import card

SPEEDS = {"slow": 1500, "normal": 700, "fast": 300}


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
    out = [
        dbc.Button(
            f"{i}:{w}",
            id=ids.chip(i),
            size="sm",
            className="me-1 mb-1",
            color="warning" if w == "UNKNOWN" else "primary",
            outline=i != pos,
            n_clicks=0,
        )
        for i, w in enumerate(words)
    ]
    note = "Tokens (click one to pick the query position): "
    return [html.Span(note, className="small text-muted me-2"), *out]


def draw_run(ctx: Context) -> dict[Any, Any]:
    sel, steps = ctx.sel, ctx.steps
    out: dict[Any, Any] = {}
    if "runs" in ctx.changed:
        runs = ctx.analyzer.store.runs()
        out[(ids.RUN_PICKER, "options")] = [{"label": r, "value": r} for r in runs]
    if "run" in ctx.changed:
        out[(ids.RUN_PICKER, "value")] = sel.run
    if ctx.changed & {"listing", "step"}:
        out[(ids.STEP_SLIDER, "max")] = len(steps) - 1
        out[(ids.STEP_SLIDER, "marks")] = slider_marks(steps, ctx.unreadable)
        if sel.step in steps:
            out[(ids.STEP_SLIDER, "value")] = steps.index(sel.step)
        out[(ids.STEP_LABEL, "children")] = f"step {sel.step}"
    if "listing" in ctx.changed:
        out[(ids.COMPARE_STEP, "options")] = [{"label": f"step {s}", "value": s} for s in steps]
    return out


def draw_prompt(ctx: Context) -> dict[Any, Any]:
    return {
        (ids.PROMPT_INPUT, "value"): ctx.sel.prompt,
        (ids.TOKEN_CHIPS, "children"): chips(ctx.view.words, ctx.sel.pos),
    }


# The run picker and the prompt box are also written when the page draws; a value equal to
# the selection's is no choice (it would reset the step, position and target of a deep link).
def pick_run(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    if not isinstance(value, str) or (raw and value == raw.get("run")):
        return None
    return {**raw, "run": value, "step": None, "pos": None, "target": None}


def pick_prompt(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    if not (value is None or isinstance(value, str)) or (raw and value == raw.get("prompt")):
        return None
    return {**raw, "prompt": value or "", "pos": None, "target": None}


def pick_step(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    step = nearest_step(steps, value)
    return None if step is None else {**raw, "step": step}


def pick_chip(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    pos = as_int(trigger.get("index")) if isinstance(trigger, dict) else None
    return None if pos is None else {**raw, "pos": pos}


def play(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
    """The next checkpoint, looping to the first after the last."""
    later = [s for s in steps if s > int(raw["step"])]
    return {**raw, "step": later[0] if later else steps[0]} if steps else None


def clean_compare(value: Any, context: int, steps: list[int]) -> int | None:
    return value if type(value) is int and value in steps else None


def _checkpoint() -> dbc.Col:
    buttons = html.Div(
        [
            dbc.Label("Checkpoint", className="small mb-0 me-2"),
            html.Span(id=ids.STEP_LABEL, className="badge bg-secondary me-3"),
            dbc.Button(
                "▶ Play",
                id=ids.PLAY_BUTTON,
                size="sm",
                color="success",
                className="me-1 py-0",
                n_clicks=0,
            ),
            dcc.Dropdown(
                id=ids.PLAY_SPEED,
                options=[{"label": k, "value": v} for k, v in SPEEDS.items()],
                value=SPEEDS["normal"],
                clearable=False,
                searchable=False,
                style={"width": "6.5rem", "display": "inline-block"},
                className="me-3 align-middle small",
            ),
            dcc.Dropdown(
                id=ids.COMPARE_STEP,
                placeholder="compare with step…",
                style={"width": "11rem", "display": "inline-block"},
                className="align-middle small",
            ),
        ],
        className="d-flex align-items-center flex-wrap",
    )
    slider = dcc.Slider(
        id=ids.STEP_SLIDER, min=0, max=0, step=1, value=0, marks={}, updatemode="mouseup"
    )
    return dbc.Col([buttons, slider], md=6)


def layout() -> dbc.Col:
    run = dbc.Col(
        [
            dbc.Label("Run", html_for=ids.RUN_PICKER, className="small mb-0"),
            dcc.Dropdown(id=ids.RUN_PICKER, clearable=False),
        ],
        md=2,
    )
    prompt = dbc.Col(
        [
            dbc.Label(
                "Prompt (Enter to analyse)", html_for=ids.PROMPT_INPUT, className="small mb-0"
            ),
            dbc.Input(
                id=ids.PROMPT_INPUT,
                type="text",
                debounce=True,
                placeholder="i like spicy so i like",
            ),
        ],
        md=4,
    )
    row = dbc.Row([run, _checkpoint(), prompt], className="g-3 align-items-end")
    # chips wrap; a long prompt's (128 tokens) scroll inside a few rows, not down the page
    chips_row = html.Div(
        id=ids.TOKEN_CHIPS,
        className="mt-2 d-flex flex-wrap",
        style={"maxHeight": "7.5rem", "overflowY": "auto"},
    )
    return dbc.Col(card("Run, checkpoint and prompt", [row, chips_row]), md=12)


RUN = Panel(
    name="run_controls",
    layout=layout,
    outputs=(
        (ids.RUN_PICKER, "options"),
        (ids.RUN_PICKER, "value"),
        (ids.STEP_SLIDER, "max"),
        (ids.STEP_SLIDER, "marks"),
        (ids.STEP_SLIDER, "value"),
        (ids.STEP_LABEL, "children"),
        (ids.COMPARE_STEP, "options"),
    ),
    depends=frozenset({"runs", "run", "listing", "step"}),
    draw=draw_run,
    events={
        "run": Event(ids.RUN_PICKER, "value", pick_run, needs_selection=False),
        "slider": Event(ids.STEP_SLIDER, "value", pick_step, needs_selection=False),
        "play": Event(ids.PLAY_INTERVAL, "n_intervals", play),
    },
    options={"compare": Option((ids.COMPARE_STEP, "value"), clean_compare)},
    needs_view=False,
)

PROMPT = Panel(
    name="prompt_controls",
    layout=lambda: None,  # part of the run's card
    outputs=((ids.PROMPT_INPUT, "value"), (ids.TOKEN_CHIPS, "children")),
    depends=frozenset({"run", "prompt", "pos"}),
    draw=draw_prompt,
    events={
        "prompt": Event(ids.PROMPT_INPUT, "value", pick_prompt, needs_selection=False),
        "chips": Event({"type": ids.CHIP, "index": ALL}, "n_clicks", pick_chip, False),
    },
    placeholders=lambda: [dbc.Button(id=ids.chip(0))],
)
