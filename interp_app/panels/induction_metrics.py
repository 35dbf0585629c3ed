"""The held-out head metrics of an induction run where the head grid, the head timeline and
the multiples' sparkline read head metrics: one place decides which metric a run can show
and where its numbers come from (the prompt's capture, or the run's held-out sequences).

A run not trained with ``--task induction`` has no held-out sequences: a held-out metric
picked for it (a choice left over from another run) falls back to DLA with a notice."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from interp_app.core.heads import METRICS
from interp_app.core.induction_views import INDUCTION_METRICS, HeldOut, heldout, is_induction_run
from interp_app.panels.base import Context


def run_heldout(ctx: Context) -> HeldOut | None:
    """The selected run's held-out numbers (None: not an induction run)."""
    return heldout(ctx.analyzer, ctx.sel.run)


def head_metric(ctx: Context) -> str:
    """The picked head metric, or DLA (with a notice) when the run has no held-out data."""
    metric = ctx.options["metric"]
    if metric in INDUCTION_METRICS and not is_induction_run(ctx.analyzer.store, ctx.sel.run):
        note = (
            f"run {ctx.sel.run!r} was not trained with --task induction, so it has no "
            f"held-out sequences for the {INDUCTION_METRICS[metric]}; showing "
            f"{METRICS['dla']}"
        )
        if note not in ctx.notes:
            ctx.notes.append(note)
        return "dla"
    return metric


def heldout_view(ctx: Context, view: Any, step: int) -> Any:
    """``view`` with the held-out head metrics of ``step`` added (an induction run's)."""
    if view is None or not is_induction_run(ctx.analyzer.store, ctx.sel.run):
        return view
    data = run_heldout(ctx)
    at = data.at(step) if data is not None else None
    if at is None:
        nan = {k: np.full_like(view.metrics["dla"], np.nan) for k in INDUCTION_METRICS}
        return dataclasses.replace(view, metrics={**view.metrics, **nan})
    return dataclasses.replace(view, metrics={**view.metrics, **at})


def metric_series(ctx: Context, metric: str) -> tuple[list[int], np.ndarray | None, str]:
    """(steps, [S, L, H] values, what they are measured on) of a head metric over training:
    the held-out ones from the run's sequences, the rest from the selection's prompt."""
    if metric in INDUCTION_METRICS:
        data = run_heldout(ctx)
        if data is None or not data.steps:
            return [], None, ""
        return data.steps, data.heads[metric], ""  # the metric's name says held-out
    steps, values = ctx.timeline
    if not steps:
        return [], None, ""
    return steps, values[metric], f"for {ctx.sel.target!r} at {ctx.sel.pos}"
