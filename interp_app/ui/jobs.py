"""The page's background work: timelines and patching too big to compute in a request,
with a progress bar, partial results drawn as they arrive, Cancel and Resume.

The main callback draws the panels of background work from whatever parts are in the shared
result cache and, when some are missing, writes the selection and the kinds of work it
lacks (``KINDS``: patching at this step, the timelines over training) to the
``job-request`` store. That starts :func:`background_job` as a Dash background callback (in
a spawned process, or on a Celery worker); each part it finishes goes to the cache and to
the ``job-progress`` store, which makes the main callback draw that kind's panels again
from the cache. The page stays usable: the job computes elsewhere, and only those panels
are redrawn.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from interp_app.core.analyzer import Analyzer
from interp_app.core.selection import Selection
from interp_app.core.store import RunStore
from interp_app.panels import REGISTRY
from interp_app.panels.head_grid import clean_source
from interp_app.panels.plotting import message_figure
from interp_app.ui import ids
from interp_app.ui.job_kinds import (
    KINDS,
    PATCHING,
    JobKind,
    job_request,
    kind_key,
    request_jobs,
)
from training.checkpoint import CheckpointError

JOB_PARAM_CACHE = 2  # steps of parameters a job process keeps (a GPT-2-small step: 0.5 GB)
JOB_NICENESS = 10  # jobs yield the CPU to the app's requests: the page answers meanwhile
POLL_MS = 1000  # how often the page asks a running job for progress
HOLD_ENV = "INTERP_JOB_HOLD"  # tests only: a file naming how many parts a job may compute


def layout() -> html.Div:
    """A line above the panels, empty until a job runs: its status, bar, Cancel (while it
    runs) and Resume (once stopped)."""
    bar = dbc.Progress(
        id=ids.JOB_BAR, value=0, label="", striped=True, animated=True, style={"display": "none"}
    )
    buttons = [
        dbc.Button(
            "Cancel",
            id=ids.JOB_CANCEL,
            size="sm",
            color="secondary",
            disabled=True,
            style={"display": "none"},
        ),
        dbc.Button(
            "Resume", id=ids.JOB_RESUME, size="sm", color="primary", style={"display": "none"}
        ),
    ]
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(html.Div(id=ids.JOB_STATUS, className="small"), md=6),
                    dbc.Col(bar, md=4),
                    dbc.Col(buttons, md=2, className="d-flex gap-1"),
                ],
                className="g-2 align-items-center mb-2",
            ),
        ],
        id=ids.JOB_BOX,
    )


def stores() -> list:
    from dash import dcc

    return [
        dcc.Store(id=ids.JOB_REQUEST),
        dcc.Store(id=ids.JOB_PROGRESS),
        dcc.Store(id=ids.JOB_DONE),
        dcc.Store(id=ids.JOB_RUNNING, data=False),
    ]


_ANALYZERS: dict[str, Analyzer] = {}


def job_analyzer(root: str) -> Analyzer:
    """One analyzer per root and job process (a Celery worker keeps its compilations); the
    process's first job lowers its CPU priority."""
    if not _ANALYZERS:
        os.nice(JOB_NICENESS)
    if root not in _ANALYZERS:
        _ANALYZERS[root] = Analyzer(RunStore(root, param_cache=JOB_PARAM_CACHE))
    return _ANALYZERS[root]


def percent(done: int, total: int) -> int:
    return round(100 * done / total) if total else 100


def hold(computed: int) -> None:
    """Tests only: while the file ``INTERP_JOB_HOLD`` names exists and holds a number not
    above ``computed`` (the parts this job computed), wait. A browser test keeps a job
    provably running while it uses the page, then lets it go on, without timing races."""
    path = os.environ.get(HOLD_ENV)
    while path:
        try:
            allowed = int(Path(path).read_text().strip() or 0)
        except (OSError, ValueError):  # removed (or being written): go on
            return
        if computed < allowed:
            return
        time.sleep(0.05)


def background_job(set_progress, request: Any, resume: Any, place: dict[str, Any]) -> dict:
    """The background callback: for each kind the request names, fill the shared cache with
    its missing parts, reporting after each part and at the end. ``place`` (root, result
    cache) comes from the server. Everything the page shows comes through
    ``set_progress``: a callback that depends on a running job's output waits until it
    ends, and the page must not."""
    from interp_app.server.background import results_at

    del resume  # a click only restarts the job: the parts already done are skipped
    started = time.monotonic()
    analyzer = job_analyzer(place["root"])
    jobs, problem = request_jobs(analyzer, request)
    key = request.get("key") if isinstance(request, dict) else None
    parts: dict[str, list[int]] = {}
    computed = [0]  # parts computed by this job, of every kind

    def report(kind: JobKind, state: str = "running", **more: Any) -> Callable[..., dict]:
        def each(done: int, total: int) -> dict:
            before = parts.get(kind.name)
            parts[kind.name] = [done, total]
            value = {"key": key, "kind": kind.name, "parts": dict(parts), "state": state, **more}
            shares = [percent(*p) for p in parts.values()]
            label = ", ".join(f"{d} of {t} {KINDS[n].unit}" for n, (d, t) in parts.items())
            set_progress([round(sum(shares) / len(shares)), label, value])
            if state == "running" and before is not None and done > before[0]:
                computed[0] += 1
                hold(computed[0])
            return value

        return each

    if not jobs:
        return report(PATCHING, state="error", message=problem or "nothing to compute")(0, 0)
    results = results_at(place["results"])
    done = total = 0
    for kind, query in jobs:
        done, total = kind.fill(analyzer, results, query, report(kind), place)
    seconds = round(time.monotonic() - started, 1)
    return report(jobs[-1][0], state="finished", seconds=seconds)(done, total)


def job_status(trigger: Any, running: Any, progress: Any, request: Any) -> tuple[str, dict]:
    """(status line, Resume button style) from what the stores say."""
    hidden: dict[str, str] = {"display": "none"}
    shown: dict[str, str] = {}
    if not isinstance(request, dict):
        return "", hidden
    ours = (
        progress if isinstance(progress, dict) and progress.get("key") == request.get("key") else {}
    )
    asked, told = request.get("parts"), ours.get("parts")
    parts = {
        **(asked if isinstance(asked, dict) else {}),
        **(told if isinstance(told, dict) else {}),
    }
    kinds = [kind for kind in KINDS.values() if kind.name in parts]
    what = " and ".join(kind.what for kind in kinds) or "nothing"
    counts = "; ".join(
        f"{parts[k.name][0]} of {parts[k.name][1]} {k.unit}" for k in kinds if _pair(parts[k.name])
    )
    if ours.get("state") == "finished":
        return f"Computed {what} ({counts}) in {ours.get('seconds')} s.", hidden
    if ours.get("state") == "error":
        return f"The background job stopped: {ours.get('message')}", hidden
    if trigger == ids.JOB_CANCEL or running is False:
        why = "cancelled" if trigger == ids.JOB_CANCEL else "cancelled, or its worker was lost"
        return (
            f"The background job stopped after {counts} ({why}): the panels show those; "
            "Resume computes the rest.",
            shown,
        )
    where = f"run {request.get('run')!r}, prompt {request.get('prompt')!r}"
    return (
        f"Computing {what} in the background ({where}): {counts} so far; the other views "
        "work meanwhile.",
        hidden,
    )


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2


def current_key(analyzer: Any, kind: JobKind, current: Any, raw_options: dict) -> str | None:
    """The key of ``kind``'s result for the selection on the page (None: no valid one)."""
    sel = Selection.parse(current)
    if sel is None:
        return None
    try:
        context = analyzer.store.info(sel.run).model.context
        src = clean_source(raw_options.get("src"), context, analyzer.store.steps(sel.run))
        query = kind.query(analyzer, sel, src)
        return None if query is None else kind_key(analyzer, kind, query)
    except (CheckpointError, KeyError):
        return None


def job_panels(analyzer: Any, value: Any, current: Any, raw_options: dict) -> set[str]:
    """The panels a job's progress ``value`` has new parts for on this page: those of every
    kind it reports on (the browser sees one progress a poll, so several parts, maybe of
    two kinds, arrive at once) whose result is the one on the page."""
    key = value.get("key") if isinstance(value, dict) else None
    parts = value.get("parts") if isinstance(value, dict) else None
    if not isinstance(key, str) or not isinstance(parts, dict):
        return set()
    keys = key.split("+")
    kinds = [kind for kind in KINDS.values() if kind.name in parts]
    return {
        panel
        for kind in kinds
        if current_key(analyzer, kind, current, raw_options) in keys
        for panel in kind.panels
    }


def redraw_from_job(analyzer: Any, value: Any, current: Any, raw_options: dict, rendered: Any):
    """A job's parts arrived: the ``rendered`` memory without their panels, so that
    drawing again draws them from the cache; None when they are of another result than
    the one on the page (nothing to redraw)."""
    wanted = job_panels(analyzer, value, current, raw_options)
    if not wanted:
        return None
    if not isinstance(rendered, dict):
        return {}
    panels = {k: v for k, v in rendered.get("panels", {}).items() if k not in wanted}
    return {**rendered, "panels": panels}


def job_outputs(analyzer: Any, out: dict, current: Any, raw_options: dict, request: Any) -> dict:
    """After the main callback drew: a new ``job-request`` when the drawn selection lacks
    background work (not the work already asked for), and a "computing" figure in the
    panels that have nothing to draw meanwhile."""
    sel = Selection.parse(out.get((ids.SELECTION, "data"), current))
    if sel is None:
        return {}
    try:
        context = analyzer.store.info(sel.run).model.context
        src = clean_source(raw_options.get("src"), context, analyzer.store.steps(sel.run))
        asked = job_request(analyzer, sel, src)
    except (CheckpointError, KeyError):
        return {}
    extra: dict[Any, Any] = {}
    if asked is None:
        return extra
    asked_for = request.get("key") if isinstance(request, dict) else None
    covered = isinstance(asked_for, str) and set(asked["key"].split("+")) <= set(
        asked_for.split("+")
    )
    if not covered:  # a kind finishing leaves the rest to the running job: no restart
        extra[(ids.JOB_REQUEST, "data")] = asked
    drawn = out.get((ids.RENDERED, "data"))
    if isinstance(drawn, dict):
        for name, (done, total) in asked["parts"].items():
            kind = KINDS[name]
            text = (
                f"Computing {kind.what} in the background: {done} of {total} {kind.unit} so "
                "far (progress above)."
            )
            for panel in REGISTRY:
                if panel.name in kind.panels and panel.name not in drawn.get("panels", {}):
                    extra[panel.figure] = message_figure(text, 220)
    return extra


def register_jobs(app: Dash, manager: Any) -> None:
    """The background callback, the redraw of its panels as parts arrive, the status line."""
    app.callback(
        output=Output(ids.JOB_DONE, "data"),  # nothing depends on it (see ``background_job``)
        inputs=dict(
            request=Input(ids.JOB_REQUEST, "data"),
            resume=Input(ids.JOB_RESUME, "n_clicks"),
        ),
        background=True,
        manager=manager,
        progress=[
            Output(ids.JOB_BAR, "value"),
            Output(ids.JOB_BAR, "label"),
            Output(ids.JOB_PROGRESS, "data"),
        ],
        running=[
            (Output(ids.JOB_CANCEL, "disabled"), False, True),
            (Output(ids.JOB_CANCEL, "style"), {}, {"display": "none"}),
            (Output(ids.JOB_BAR, "style"), {}, {"display": "none"}),
            (Output(ids.JOB_RUNNING, "data"), True, False),
        ],
        cancel=[Input(ids.JOB_CANCEL, "n_clicks")],
        interval=POLL_MS,
        prevent_initial_call=True,
    )(background_job)

    register_redraw(app)

    @app.callback(
        Output(ids.JOB_STATUS, "children"),
        Output(ids.JOB_RESUME, "style"),
        Input(ids.JOB_RUNNING, "data"),
        Input(ids.JOB_PROGRESS, "data"),
        Input(ids.JOB_CANCEL, "n_clicks"),
        State(ids.JOB_REQUEST, "data"),
        prevent_initial_call=True,
    )
    def status(running, progress, cancel, request):
        del cancel  # the trigger says it
        return job_status(ctx.triggered_id, running, progress, request)


def register_redraw(app: Dash) -> None:
    """A job's part arrived: redraw that kind's panels from the shared cache, in a callback
    of their own. Not through the main callback: dash-renderer drops the answer of a
    callback still executing when the same callback is requested again, so a part arriving
    while a click's request ran dropped the click (the page never answered it: the browser
    test's 180 s "unanswered" query-row click). This callback writes only the job's panels
    (never the rendered memory or the job request), so it cannot supersede a click."""
    from flask import current_app

    from interp_app.ui.render import OPTIONS, Renderer

    panels = [p for p in REGISTRY if any(p.name in k.panels for k in KINDS.values())]
    renderers: dict[int, Renderer] = {}

    @app.callback(
        output=[Output(*p.figure, allow_duplicate=True) for p in panels],
        inputs=dict(progress=Input(ids.JOB_PROGRESS, "data")),
        state=dict(
            current=State(ids.SELECTION, "data"),
            rendered=State(ids.RENDERED, "data"),
            options={name: State(*option.slot) for name, option in OPTIONS.items()},
        ),
        prevent_initial_call=True,
    )
    def redraw(progress, current, rendered, options) -> list:
        analyzer = current_app.config["ANALYZER"]
        wanted = job_panels(analyzer, progress, current, options)
        memory = redraw_from_job(analyzer, progress, current, options, rendered)
        if memory is None:
            raise PreventUpdate
        renderer = renderers.setdefault(id(analyzer), Renderer(analyzer, prefetch=False))
        # drawn even when off screen: the page's memory still holds what the main callback
        # drew, so a panel skipped here would stay stale once scrolled to
        ours = {p.figure[0] for p in panels if p.name in wanted}
        hidden = options.get("hidden")
        if isinstance(hidden, list):
            options = {**options, "hidden": [h for h in hidden if h not in ours]}
        out = renderer(current, options, memory)
        figures = [out.get(p.figure, no_update) if p.name in wanted else no_update for p in panels]
        if all(f is no_update for f in figures):
            raise PreventUpdate
        return figures
