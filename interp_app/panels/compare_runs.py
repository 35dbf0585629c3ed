"""Compare runs: one head's held-out metric over training for several induction runs (the
seeds ``interp-train --seeds`` writes, by default), each run's phase change marked.

The phase change of a run is the step by which its repeated-part loss made half its total
drop (``HeldOut.phase_change``). Heads are interchangeable between seeds (seed 1's
induction head may be L1H1 where seed 0's is L1H0), so the chart can also follow each
run's best head of the selected layer. A click on a curve selects that run and step.
Hidden for runs not trained with ``--task induction``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
from dash import dcc

from interp_app.core.heads import head_name
from interp_app.core.induction_views import INDUCTION_METRICS, heldout, is_induction_run
from interp_app.panels.base import Context, Option, Overlay, Panel, Raw, on_click, one_of
from interp_app.panels.induction import NOTHING, lab_column, shown
from interp_app.panels.plotting import Figure, figure, message_figure, vertical_line
from interp_app.ui import ids
from interp_app.ui.components import graph, hint
from training.checkpoint import CheckpointError

COMPARE_RUNS = ids.COMPARE_RUNS
COMPARE_RUNS_PICKER = ids.COMPARE_RUNS_PICKER
COMPARE_RUNS_HEAD = ids.COMPARE_RUNS_HEAD
COMPARE_RUNS_COLUMN = ids.COMPARE_RUNS_COLUMN
HEAD_CHOICES = {"same": "the selected head", "best": "each run's best head of its layer"}
MAX_RUNS = 12
COLOURS = ("#4c6ef5", "#12b886", "#e64980", "#fab005", "#7950f2", "#15aabf", "#868e96")
SEED = re.compile(r"^(.*)-s\d+$")


@dataclass(frozen=True)
class Curve:
    """One run's series: the head drawn, its metric at each saved step, the phase change."""

    run: str
    head: str
    steps: list[int]
    values: np.ndarray
    phase: int | None


def default_runs(run: str, candidates: list[str]) -> list[str]:
    """The selected run's seed siblings (``ind-s0`` -> every ``ind-s<k>``), else itself."""
    match = SEED.match(run)
    if match is None:
        return [run]
    return [r for r in candidates if (m := SEED.match(r)) and m.group(1) == match.group(1)]


def clean_runs(value: Any, context: int, steps: list[int]) -> list[str]:
    """The picker's run names (at most ``MAX_RUNS``; anything else: none, the default)."""
    names = value if isinstance(value, list) else []
    return list(dict.fromkeys(v for v in names if isinstance(v, str)))[:MAX_RUNS]


def _phase_value(curve: Curve) -> float | None:
    if curve.phase is None or curve.phase not in curve.steps:
        return None
    return float(curve.values[curve.steps.index(curve.phase)])


def compare_overlay(curves: list[Curve], selected: str, step: int, what: str):
    """Title and marks: each run's phase change (dashed, its colour), the selected step."""
    shapes = [
        vertical_line(c.phase, COLOURS[i % len(COLOURS)], 1.5, "dash")
        for i, c in enumerate(curves)
        if c.phase is not None
    ]
    shapes.append(vertical_line(step))
    title = f"Compare runs: {what} — {selected} at step {step} (dashed: each run's phase change)"
    return title, shapes


def compare_runs_figure(curves: list[Curve], selected: str, step: int, what: str) -> Figure:
    """Each run's curve over real steps (runs may save different steps), the phase change
    of each marked by a dashed line and a ring on its curve, the selected step by a line."""
    data: list[dict[str, Any]] = []
    for i, c in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        phase = f"phase change at {c.phase}" if c.phase is not None else "no phase change"
        data.append(
            {
                "type": "scatter",
                "x": c.steps,
                "y": c.values,
                "name": f"{c.run} {c.head} ({phase})",
                "mode": "lines",
                "line": {"color": colour, "width": 3 if c.run == selected else 1.5},
                "customdata": [[c.run, s] for s in c.steps],
                "hovertemplate": f"{c.run} {c.head} at step %{{x}}: %{{y:.3f}}<extra></extra>",
            }
        )
        y = _phase_value(c)
        if y is not None:
            data.append(
                {
                    "type": "scatter",
                    "x": [c.phase],
                    "y": [y],
                    "mode": "markers",
                    "marker": {"size": 11, "color": "white", "line": {"color": colour, "width": 2}},
                    "showlegend": False,
                    "customdata": [[c.run, c.phase]],
                    "hovertemplate": f"{c.run}: phase change at step %{{x}}<extra></extra>",
                }
            )
    title, shapes = compare_overlay(curves, selected, step, what)
    return figure(
        data,
        title,
        340,
        shapes=shapes,
        xaxis={"title": {"text": "step"}},
        yaxis={"title": {"text": "score"}},
        legend={"orientation": "h", "y": -0.25},
    )


def _candidates(ctx: Context) -> list[str]:
    """Induction runs with the selected run's layers and heads."""
    store, model = ctx.analyzer.store, ctx.model
    out = []
    for run in store.runs():
        try:
            other = store.info(run).model
            if is_induction_run(store, run) and (other.n_layers, other.n_heads) == (
                model.n_layers,
                model.n_heads,
            ):
                out.append(run)
        except CheckpointError:
            continue
    return out


def _metric(ctx: Context) -> str:
    metric = ctx.options["metric"]
    return metric if metric in INDUCTION_METRICS else "induction"


def curves(ctx: Context, runs: list[str]) -> list[Curve]:
    """Each run's series of the selected layer's head (the same head, or its best)."""
    sel, metric = ctx.sel, _metric(ctx)
    out = []
    for run in runs:
        data = heldout(ctx.analyzer, run)
        if data is None or not data.steps:
            continue
        values = data.heads[metric][:, sel.layer]  # [S, H]
        head = sel.head if ctx.options["compare_head"] == "same" else int(np.nanargmax(values[-1]))
        name = head_name(sel.layer, head)
        out.append(Curve(run, name, data.steps, values[:, head], data.phase_change()))
    return out


def _shown(ctx: Context) -> tuple[list[Curve], str]:
    candidates = _candidates(ctx)
    chosen = [r for r in ctx.options["compare_runs"] if r in candidates]
    runs = chosen or default_runs(ctx.sel.run, candidates)
    head = ctx.sel.head_name if ctx.options["compare_head"] == "same" else f"best L{ctx.sel.layer}"
    return curves(ctx, runs), f"{INDUCTION_METRICS[_metric(ctx)]} of {head}"


def draw(ctx: Context) -> dict[Any, Any]:
    induction = is_induction_run(ctx.analyzer.store, ctx.sel.run)
    out: dict[Any, Any] = {(COMPARE_RUNS_COLUMN, "style"): shown(induction)}
    if not induction:  # the card is hidden; the figure says why all the same
        return {PANEL.figure: message_figure(NOTHING), **out}
    shown_curves, what = _shown(ctx)
    out[PANEL.figure] = compare_runs_figure(shown_curves, ctx.sel.run, ctx.sel.step, what)
    out[(COMPARE_RUNS_PICKER, "options")] = [{"label": r, "value": r} for r in _candidates(ctx)]
    return out


def overlay(ctx: Context) -> Overlay | None:
    if not is_induction_run(ctx.analyzer.store, ctx.sel.run):
        return None
    shown_curves, what = _shown(ctx)
    return Overlay(*compare_overlay(shown_curves, ctx.sel.run, ctx.sel.step, what))


def click(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    """A point: its run and step (another run opens as the run picker opens it)."""
    custom = point.get("customdata")
    if not (isinstance(custom, list) and len(custom) == 2 and isinstance(custom[0], str)):
        return None
    run, step = custom
    if run == raw.get("run"):
        return {**raw, "step": step}
    return {**raw, "run": run, "step": step, "pos": None, "target": None}


def layout() -> dbc.Col:
    picker = dcc.Dropdown(
        id=COMPARE_RUNS_PICKER, multi=True, placeholder="runs (default: this run's seeds)"
    )
    head = dbc.RadioItems(
        id=COMPARE_RUNS_HEAD,
        options=[{"label": label, "value": key} for key, label in HEAD_CHOICES.items()],
        value="same",
        inline=True,
        className="small",
    )
    controls = dbc.Row([dbc.Col(picker, md=7), dbc.Col(head, md=5)], className="g-1 mb-1")
    text = (
        "The metric picked in the head grid if it is a held-out one, else the induction "
        "score. A click on a curve selects that run and step."
    )
    body = [controls, graph(COMPARE_RUNS, 340), hint(text)]
    return lab_column(COMPARE_RUNS_COLUMN, "Induction lab: compare runs (seeds)", body, 12)


PANEL = Panel(
    name="compare_runs",
    layout=layout,
    outputs=(
        (COMPARE_RUNS, "figure"),
        (COMPARE_RUNS_COLUMN, "style"),
        (COMPARE_RUNS_PICKER, "options"),
    ),
    depends=frozenset({"run", "runs", "listing", "layer", "head", "metric"})
    | frozenset({"compare_runs", "compare_head"}),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"step"}),
    events={"click": on_click(click, COMPARE_RUNS)},
    options={
        "compare_runs": Option((COMPARE_RUNS_PICKER, "value"), clean_runs),
        "compare_head": Option((COMPARE_RUNS_HEAD, "value"), one_of(HEAD_CHOICES, "same")),
    },
    needs_view=False,
)
