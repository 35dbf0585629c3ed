"""The page's background work: a timeline too big to compute in a request, with a progress
bar, partial results drawn as they arrive, Cancel and Resume.

The main callback draws the timelines from whatever steps are in the shared result cache
and, when some are missing, writes the query to the ``job-request`` store. That starts
:func:`timeline_job` as a Dash background callback (in a spawned process, or on a Celery
worker); each part it finishes goes to the cache and to the ``job-progress`` store, which
makes the main callback draw the timelines again from the cache. The page stays usable:
the job computes elsewhere, and only the two timeline panels are redrawn.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, ctx, html

from interp_app.core.analyzer import Analyzer
from interp_app.core.jobs import JobAnalyzer, Query, fill_timeline
from interp_app.core.selection import Selection
from interp_app.core.store import RunStore
from interp_app.core.view import resolve
from interp_app.panels import REGISTRY
from interp_app.panels.head_grid import clean_source
from interp_app.panels.plotting import message_figure
from interp_app.ui import ids
from training.checkpoint import CheckpointError

# Panels drawn from the timeline: redrawn (from the cache) as a job's parts arrive.
TIMELINE_PANELS = ("head_timeline", "prediction_timeline")
JOB_PARAM_CACHE = 2  # steps of parameters a job process keeps (a GPT-2-small step: 0.5 GB)
JOB_NICENESS = 10  # jobs yield the CPU to the app's requests: the page answers meanwhile
POLL_MS = 1000  # how often the page asks a running job for progress


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
        dcc.Store(id=ids.JOB_TICK),
    ]


def query_of(analyzer: Analyzer, sel: Selection, src: int) -> Query:
    """The timeline query of a (valid) selection, as the timeline panels ask for it."""
    prompt = analyzer.encode(sel.run, sel.prompt)
    target = analyzer.store.info(sel.run).tokenizer.index[sel.target]
    return Query(sel.run, prompt, sel.pos, target, src, tuple(sel.ablate), sel.mode)


def query_key(analyzer: Analyzer, query: Query) -> str:
    """Names one timeline of one listing of the run: a new step is a new key."""
    steps = analyzer.store.steps(query.run)
    text = json.dumps(
        [
            analyzer.store.generation(query.run),
            steps,
            list(query.prompt.padded),
            [query.pos, query.target, query.src, list(query.ablate), query.mode],
        ]
    )
    return hashlib.blake2s(text.encode(), digest_size=8).hexdigest()


def timeline_request(analyzer: Any, sel: Selection, src: int) -> dict[str, Any] | None:
    """What the job needs to compute this selection's timeline, or None when nothing is
    missing (or it is cheap enough for the request itself)."""
    if not isinstance(analyzer, JobAnalyzer):
        return None
    query = query_of(analyzer, sel, src)
    progress = analyzer.progress(query)
    if progress is None:
        return None
    return {
        "key": query_key(analyzer, query),
        "run": sel.run,
        "prompt": sel.prompt,
        "pos": sel.pos,
        "target": sel.target,
        "ablate": ",".join(sel.ablate),
        "ablate_mode": sel.mode,
        "src": src,
        "done": progress[0],
        "total": progress[1],
    }


def request_query(analyzer: Analyzer, request: Any) -> tuple[Query | None, str]:
    """The query of a request from the browser, every value checked (``resolve``)."""
    if not isinstance(request, dict):
        return None, "nothing to compute"
    wanted = ("run", "prompt", "pos", "target", "ablate", "ablate_mode")
    raw = {k: request.get(k) for k in wanted if isinstance(request.get(k), str | int)}
    sel, notes = resolve(analyzer, raw)
    if sel is None:
        return None, "; ".join(notes) or "no run to compute"
    steps = analyzer.store.steps(sel.run)
    src = clean_source(request.get("src"), analyzer.store.info(sel.run).model.context, steps)
    return query_of(analyzer, sel, src), ""


def needs_job(analyzer: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a background request is worth a job: a request for a timeline this server
    would draw from the background and that still lacks steps (forged or stale requests,
    and ones for cheap or finished timelines, start nothing)."""
    if not isinstance(analyzer, JobAnalyzer):
        return False
    try:
        query, _ = request_query(analyzer, kwargs.get("request"))
        return query is not None and analyzer.progress(query) is not None
    except (CheckpointError, KeyError, ValueError):
        return False


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


def timeline_job(set_progress, request: Any, resume: Any, place: dict[str, Any]) -> dict:
    """The background callback: fill the shared cache with the request's missing steps,
    reporting after each part and at the end. ``place`` (root, result cache) comes from
    the server. Everything the page shows comes through ``set_progress``: a callback that
    depends on a running job's output waits until it ends, and the page must not."""
    from interp_app.server.background import results_at

    del resume  # a click only restarts the job: the steps already done are skipped
    started = time.monotonic()
    analyzer = job_analyzer(place["root"])
    query, problem = request_query(analyzer, request)
    key = request.get("key") if isinstance(request, dict) else None

    def report(done: int, total: int, **more: Any) -> dict:
        state = {"key": key, "done": done, "total": total, "state": "running", **more}
        set_progress([percent(done, total), f"{done} of {total} steps", state])
        return state

    if query is None:
        return report(0, 0, state="error", message=problem)
    results = results_at(place["results"])
    done, total = fill_timeline(analyzer, results, query, report, place["part_steps"])
    seconds = round(time.monotonic() - started, 1)
    return report(done, total, state="finished", seconds=seconds)


def job_status(trigger: Any, running: Any, progress: Any, request: Any) -> tuple[str, dict]:
    """(status line, Resume button style) from what the stores say."""
    hidden: dict[str, str] = {"display": "none"}
    shown: dict[str, str] = {}
    if not isinstance(request, dict):
        return "", hidden
    key = request.get("key")
    ours = progress if isinstance(progress, dict) and progress.get("key") == key else {}
    if ours.get("state") == "finished":
        return f"Timelines computed: {ours.get('done')} steps in {ours.get('seconds')} s.", hidden
    if ours.get("state") == "error":
        return f"The timeline job stopped: {ours.get('message')}", hidden
    n, total = ours.get("done", request.get("done", 0)), request.get("total", "?")
    if trigger == ids.JOB_CANCEL or running is False:
        why = "cancelled" if trigger == ids.JOB_CANCEL else "cancelled, or its worker was lost"
        return (
            f"The timeline job stopped after {n} of {total} steps ({why}): the timelines "
            "show those steps; Resume computes the rest.",
            shown,
        )
    what = f"run {request.get('run')!r}, prompt {request.get('prompt')!r}"
    return (
        f"Computing the timelines over training in the background ({what}): {n} of "
        f"{total} steps so far; the other views work meanwhile.",
        hidden,
    )


def current_key(analyzer: Any, current: Any, raw_options: dict[str, Any]) -> str | None:
    """The timeline key of the selection on the page (None: no valid one)."""
    sel = Selection.parse(current)
    if sel is None:
        return None
    try:
        context = analyzer.store.info(sel.run).model.context
        src = clean_source(raw_options.get("src"), context, analyzer.store.steps(sel.run))
        return query_key(analyzer, query_of(analyzer, sel, src))
    except (CheckpointError, KeyError):
        return None


def redraw_from_job(analyzer: Any, value: Any, current: Any, raw_options: dict, rendered: Any):
    """A job's part or end arrived: the ``rendered`` memory without the timeline panels, so
    the main callback draws them again from the cache; None when the job is of another
    timeline than the one on the page (nothing to redraw)."""
    key = value.get("key") if isinstance(value, dict) else None
    if key is None or key != current_key(analyzer, current, raw_options):
        return None
    if not isinstance(rendered, dict):
        return {}
    panels = {k: v for k, v in rendered.get("panels", {}).items() if k not in TIMELINE_PANELS}
    return {**rendered, "panels": panels}


def job_outputs(analyzer: Any, out: dict, current: Any, raw_options: dict, request: Any) -> dict:
    """After the main callback drew: a new ``job-request`` when the drawn selection's
    timeline has missing steps (not the one already asked for), and a "computing" figure in
    the timeline panels while they have nothing to draw."""
    sel = Selection.parse(out.get((ids.SELECTION, "data"), current))
    if sel is None:
        return {}
    try:
        context = analyzer.store.info(sel.run).model.context
        src = clean_source(raw_options.get("src"), context, analyzer.store.steps(sel.run))
        wanted = timeline_request(analyzer, sel, src)
    except (CheckpointError, KeyError):
        return {}
    extra: dict[Any, Any] = {}
    if wanted is None:
        return extra
    if not isinstance(request, dict) or request.get("key") != wanted["key"]:
        extra[(ids.JOB_REQUEST, "data")] = wanted
    drawn = out.get((ids.RENDERED, "data"))
    if isinstance(drawn, dict):
        text = (
            f"Computing this timeline in the background: {wanted['done']} of "
            f"{wanted['total']} checkpoints so far (progress above)."
        )
        for panel in REGISTRY:
            if panel.name in TIMELINE_PANELS and panel.name not in drawn.get("panels", {}):
                extra[panel.figure] = message_figure(text, 220)
    return extra


def register_jobs(app: Dash, manager: Any) -> None:
    """The background callback, the tick that redraws the timelines, the status line."""
    app.callback(
        output=Output(ids.JOB_DONE, "data"),  # nothing depends on it (see ``timeline_job``)
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
    )(timeline_job)

    # Each part, for the main callback: through a store of its own, so that no callback both
    # follows the job's progress and writes its request (Dash refuses that circle, which
    # could restart a job at every part; ``job_outputs`` asks only for new keys).
    app.clientside_callback(
        "function(progress) { return progress; }",
        Output(ids.JOB_TICK, "data"),
        Input(ids.JOB_PROGRESS, "data"),
        prevent_initial_call=True,
    )

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
