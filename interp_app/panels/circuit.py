"""The circuit panel: the circuit graph at the selected step (exact path patching, EAP-IG or
EAP; top k edges), the strongest edges over training and the faithfulness curve.

The metric is the patching panel's (the selected target's logit difference, the prompt
against the corrupted prompt; the answer fixed at the latest step) or, on an induction
run, the repeated-part loss of its held-out sequences. Every step is scored in one
vectorised pass (``core.circuits``), cached per query: the first draw compiles and scores
every checkpoint (seconds on the default run), later steps and clicks read the cache.
A click on a head selects it everywhere, a click on an edge the head it runs into (the
selection holds one head); on the timeline, a click picks the checkpoint. Another head only
moves the graph's marks (:func:`overlay`): the timeline and the faithfulness curve do not
depend on it."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc

from interp_app.core.circuits_record import METHOD_LABELS, METHODS, Circuits
from interp_app.core.heads import parse_head
from interp_app.panels.base import Context, Option, Overlay, Panel, Raw, on_click, one_of
from interp_app.panels.circuit_figures import (
    circuit_graph_figure,
    circuit_timeline_figure,
    faithfulness_figure,
    graph_marks,
)
from interp_app.panels.plotting import message_figure
from interp_app.panels.timelines import clicked_step
from interp_app.ui import ids
from interp_app.ui.components import column, graph, hint

CIRCUIT_GRAPH = ids.CIRCUIT_GRAPH
CIRCUIT_TIMELINE = ids.CIRCUIT_TIMELINE
CIRCUIT_FAITHFULNESS = ids.CIRCUIT_FAITHFULNESS
CIRCUIT_METHOD = ids.CIRCUIT_METHOD
CIRCUIT_TOP_K = ids.CIRCUIT_TOP_K
CIRCUIT_SWITCH = ids.CIRCUIT_SWITCH
OFF = (
    "Circuits are off: switch them on to score every edge at every checkpoint (exact path "
    "patching, EAP, EAP-IG). The first query compiles and scores the whole run (10-20 s "
    "on the default run on a busy two-core machine); later steps and clicks read "
    "the cache."
)
ANY = 10**6  # layers and heads a click may name before the selection checks them
TOP_K = ("5", "10", "15", "20", "30", "all")
HINT = (
    "Edges run from a node's output to a node's input (a head's q, k and v apart). Each "
    "score is what corrupting that one edge does to the metric on the prompt: exact path "
    "patching (one patched pass per edge), EAP (Syed et al. 2023, one gradient) or EAP-IG "
    "(Hanna et al. 2024, gradients along the corrupted-to-clean path). Click a head, or an "
    "edge to select the head it runs into: the title gives that head's drawn edges and "
    "their scores. Faithfulness: keep the top k edges, corrupt the rest; the dotted line is "
    "80% recovered."
)


def compute(ctx: Context) -> Circuits | str:
    """The selection's circuits, or why there are none (one line)."""
    from interp_app.core.api import Run

    sel = ctx.sel
    run = Run(ctx.analyzer, sel.run)
    try:
        if isinstance(run.info.meta.get("induction"), dict):
            return run.circuits()
        return run.circuits(sel.prompt, sel.corrupt, target=sel.target, pos=sel.pos)
    except ValueError as err:  # CheckpointError included
        return f"No circuit: {err}"


def top_k(value: Any, n_edges: int) -> int:
    return n_edges if value == "all" else min(int(value), n_edges)


def _scored(ctx: Context) -> Circuits | str:
    """The circuits to draw at the selected step, or the one line the figures say."""
    found = compute(ctx) if ctx.options["circuit_on"] else OFF
    if isinstance(found, str) or ctx.sel.step not in set(int(s) for s in found.steps):
        return found if isinstance(found, str) else f"Step {ctx.sel.step} was not scored."
    return found


def draw(ctx: Context) -> dict[Any, Any]:
    found = _scored(ctx)
    if isinstance(found, str):
        return {
            PANEL.figure: message_figure(found, 360),
            (CIRCUIT_TIMELINE, "figure"): message_figure(found, 200),
            (CIRCUIT_FAITHFULNESS, "figure"): message_figure(found, 200),
        }
    method = ctx.options["circuit_method"]
    k = top_k(ctx.options["circuit_top_k"], len(found.edges))
    step, head = ctx.sel.step, ctx.sel.head_name
    return {
        PANEL.figure: circuit_graph_figure(found, step, method, k, head),
        (CIRCUIT_TIMELINE, "figure"): circuit_timeline_figure(found, step, method),
        (CIRCUIT_FAITHFULNESS, "figure"): faithfulness_figure(found, step),
    }


def overlay(ctx: Context) -> Overlay:
    """Another head: the graph's title (the head's drawn edges and their scores), its node
    colours and its edges' opacities; nothing else is sent. A message stays as it is."""
    found = _scored(ctx)
    if isinstance(found, str):
        return Overlay("", [])  # a message figure has no title or shapes: nothing moves
    return head_marks(found, ctx.sel.step, ctx.options, ctx.sel.head_name)


def head_marks(found: Circuits, step: int, options: dict[str, Any], head: str) -> Overlay:
    """The graph's marks for ``head`` as an overlay: its title, the edges' opacities (trace
    ``j`` is the ``j``-th weakest drawn edge) and the nodes' colours (the last trace)."""
    k = top_k(options["circuit_top_k"], len(found.edges))
    title, colours, opacity = graph_marks(found, step, options["circuit_method"], k, head)
    sets: list[tuple[tuple[Any, ...], Any]] = [
        (("data", j, "opacity"), a) for j, a in enumerate(opacity)
    ]
    sets.append((("data", len(opacity), "marker", "color"), colours))
    return Overlay(title, [], tuple(sets))


def click_node(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    """A head's node selects that head; an edge selects the head it runs into (or from,
    for an edge into an MLP or the logits)."""
    name = point.get("customdata")
    if not isinstance(name, str):
        return None
    if " -> " in name:
        sender, receiver = name.split(" -> ", 1)
        name = receiver.split(".", 1)[0] if "." in receiver else sender
    if parse_head(name, ANY, ANY) is None:  # a head's name (the selection checks the range)
        return None
    return {**raw, "head": name}


def click_step(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    step = clicked_step(point, steps)
    return None if step is None else {**raw, "step": step}


def layout() -> dbc.Col:
    method = dbc.RadioItems(
        id=CIRCUIT_METHOD,
        options=[{"label": METHOD_LABELS[m], "value": m} for m in METHODS],
        value="exact",
        inline=True,
        className="small",
    )
    k = dbc.Select(
        id=CIRCUIT_TOP_K,
        options=[{"label": f"top {v}" if v != "all" else "all edges", "value": v} for v in TOP_K],
        value="10",
        size="sm",
    )
    switch = dbc.Switch(id=CIRCUIT_SWITCH, label="score every edge", value=False)
    controls = dbc.Row(
        [dbc.Col(switch, md=3), dbc.Col(method, md=6), dbc.Col(k, md=2)], className="g-1 mb-1"
    )
    figures = dbc.Row(
        [dbc.Col(graph(CIRCUIT_GRAPH, 360), md=7), dbc.Col(graph(CIRCUIT_FAITHFULNESS, 280), md=5)]
    )
    body = [controls, figures, graph(CIRCUIT_TIMELINE, 380), hint(HINT)]
    return column("Circuits over training", body)


PANEL = Panel(
    name="circuit",
    layout=layout,
    outputs=(
        (CIRCUIT_GRAPH, "figure"),
        (CIRCUIT_TIMELINE, "figure"),
        (CIRCUIT_FAITHFULNESS, "figure"),
    ),
    depends=frozenset({"run", "step", "prompt", "pos", "target", "corrupt", "listing"})
    | frozenset({"circuit_on", "circuit_method", "circuit_top_k"}),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"layer", "head"}),
    events={
        "click": on_click(click_node, CIRCUIT_GRAPH),
        "click_step": on_click(click_step, CIRCUIT_TIMELINE),
    },
    options={
        "circuit_on": Option(
            (CIRCUIT_SWITCH, "value"), lambda value, context, steps: value is True
        ),
        "circuit_method": Option((CIRCUIT_METHOD, "value"), one_of(METHODS, "exact")),
        "circuit_top_k": Option((CIRCUIT_TOP_K, "value"), one_of(TOP_K, "10")),
    },
    needs_view=False,
)
