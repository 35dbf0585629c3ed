"""What background work the page can ask for, and which requests start it: the kinds of
work (``KINDS``: patching at the step on screen, then the timelines over training), their
queries and keys, the ``job-request`` a selection lacking parts writes, and the checks a
request from the browser gets before any job starts (``needs_job``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interp_app.core.analyzer import Analyzer
from interp_app.core.jobs import (
    JobAnalyzer,
    PatchQuery,
    Query,
    Report,
    fill_patching,
    fill_timeline,
    patch_key,
    patch_query,
)
from interp_app.core.results import ResultCache
from interp_app.core.selection import Selection
from interp_app.core.view import resolve
from interp_app.panels.head_grid import clean_source
from training.checkpoint import CheckpointError


@dataclass(frozen=True)
class JobKind:
    """One kind of background work. A selection's job runs every kind whose work it lacks,
    in ``KINDS`` order, through the same background callback, progress bar and Cancel."""

    name: str
    what: str  # the status line's noun
    unit: str  # what a part counts
    panels: tuple[str, ...]  # redrawn (from the shared cache) as its parts arrive
    query: Callable[[Analyzer, Selection, int], Any]  # None: nothing of this kind here
    progress: Callable[[Any, Any], tuple[int, int] | None]  # (done, total) while incomplete
    fill: Callable[[Analyzer, ResultCache, Any, Report, dict], tuple[int, int]]
    identity: Callable[[Analyzer, Any], list]  # what names its result (hashed to a key)


def _patching_query(analyzer: Analyzer, sel: Selection, src: int) -> PatchQuery | None:
    del src
    query = patch_query(analyzer, sel)
    return query if isinstance(query, PatchQuery) else None


def _patching_progress(analyzer: Any, query: PatchQuery) -> tuple[int, int] | None:
    return analyzer.patching_progress(query) if isinstance(analyzer, JobAnalyzer) else None


def _timeline_progress(analyzer: Any, query: Query) -> tuple[int, int] | None:
    return analyzer.progress(query) if isinstance(analyzer, JobAnalyzer) else None


def _patching_identity(analyzer: Analyzer, query: PatchQuery) -> list:
    return [patch_key(analyzer.store.generation(query.run), query, "all")]


def _timeline_identity(analyzer: Analyzer, query: Query) -> list:
    return [
        analyzer.store.generation(query.run),
        analyzer.store.steps(query.run),  # a new step is a new key
        list(query.prompt.padded),
        [query.pos, query.target, query.src, list(query.ablate), query.mode],
    ]


PATCHING = JobKind(
    "patching",
    "activation patching at this step",
    "layer parts",
    ("patching",),
    _patching_query,
    _patching_progress,
    lambda analyzer, results, query, report, place: fill_patching(analyzer, results, query, report),
    _patching_identity,
)
TIMELINE = JobKind(
    "timeline",
    "the timelines over training",
    "steps",
    ("head_timeline", "prediction_timeline"),
    lambda analyzer, sel, src: query_of(analyzer, sel, src),
    _timeline_progress,
    lambda analyzer, results, query, report, place: fill_timeline(
        analyzer, results, query, report, place["part_steps"]
    ),
    _timeline_identity,
)
KINDS = {kind.name: kind for kind in (PATCHING, TIMELINE)}  # the step at hand first


def query_of(analyzer: Analyzer, sel: Selection, src: int) -> Query:
    """The timeline query of a (valid) selection, as the timeline panels ask for it."""
    prompt = analyzer.encode(sel.run, sel.prompt)
    target = analyzer.store.info(sel.run).tokenizer.index[sel.target]
    return Query(sel.run, prompt, sel.pos, target, src, tuple(sel.ablate), sel.mode)


def kind_key(analyzer: Analyzer, kind: JobKind, query: Any) -> str:
    """Names one result of one kind: what its parts are stored under."""
    text = json.dumps([kind.name, *kind.identity(analyzer, query)])
    return hashlib.blake2s(text.encode(), digest_size=8).hexdigest()


def wanted(analyzer: Any, sel: Selection, src: int) -> list[tuple[JobKind, Any, str, tuple]]:
    """(kind, query, key, (done, total)) of each kind whose work this selection lacks and
    this server computes in the background."""
    found = []
    for kind in KINDS.values():
        query = kind.query(analyzer, sel, src)
        progress = None if query is None else kind.progress(analyzer, query)
        if progress is not None:
            found.append((kind, query, kind_key(analyzer, kind, query), progress))
    return found


def job_request(analyzer: Any, sel: Selection, src: int) -> dict[str, Any] | None:
    """What the job needs to compute this selection's missing work (its selection, and the
    kinds to run), or None when nothing is missing or all is cheap enough for requests."""
    if not isinstance(analyzer, JobAnalyzer):
        return None
    jobs = wanted(analyzer, sel, src)
    if not jobs:
        return None
    return {
        "key": "+".join(key for _, _, key, _ in jobs),
        "run": sel.run,
        "step": sel.step,
        "prompt": sel.prompt,
        "corrupt": sel.corrupt,
        "pos": sel.pos,
        "target": sel.target,
        "ablate": ",".join(sel.ablate),
        "ablate_mode": sel.mode,
        "src": src,
        "kinds": [kind.name for kind, _, _, _ in jobs],
        "parts": {kind.name: list(progress) for kind, _, _, progress in jobs},
    }


def request_selection(analyzer: Analyzer, request: Any) -> tuple[Selection | None, int, str]:
    """(selection, timeline source, problem) of a request from the browser, every value
    checked (``resolve``)."""
    if not isinstance(request, dict):
        return None, 0, "nothing to compute"
    names = ("run", "step", "prompt", "corrupt", "pos", "target", "ablate", "ablate_mode")
    raw = {k: request.get(k) for k in names if isinstance(request.get(k), str | int)}
    sel, notes = resolve(analyzer, raw)
    if sel is None:
        return None, 0, "; ".join(notes) or "no run to compute"
    steps = analyzer.store.steps(sel.run)
    src = clean_source(request.get("src"), analyzer.store.info(sel.run).model.context, steps)
    return sel, src, ""


def request_jobs(analyzer: Analyzer, request: Any) -> tuple[list[tuple[JobKind, Any]], str]:
    """The (kind, query) pairs a request asks for, in ``KINDS`` order (only known kinds)."""
    sel, src, problem = request_selection(analyzer, request)
    if sel is None:
        return [], problem
    kinds = request.get("kinds") if isinstance(request, dict) else None
    names = kinds if isinstance(kinds, list) else list(KINDS)
    jobs = [(k, k.query(analyzer, sel, src)) for k in KINDS.values() if k.name in names]
    return [(k, q) for k, q in jobs if q is not None], ""


def request_query(analyzer: Analyzer, request: Any) -> tuple[Query | None, str]:
    """The timeline query of a request (None, and why, when it names none)."""
    sel, src, problem = request_selection(analyzer, request)
    return (None, problem) if sel is None else (query_of(analyzer, sel, src), "")


def needs_job(analyzer: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a background request is worth a job: one for work this server computes in
    the background and still lacks (forged or stale requests, and ones for cheap or
    finished work, start nothing)."""
    if not isinstance(analyzer, JobAnalyzer):
        return False
    try:
        jobs, _ = request_jobs(analyzer, kwargs.get("request"))
        return any(kind.progress(analyzer, query) is not None for kind, query in jobs)
    except (CheckpointError, KeyError, ValueError):
        return False
