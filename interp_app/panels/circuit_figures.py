"""Figures of the circuit panel, pure functions of a :class:`Circuits` record: the graph at
one step, the strongest edges over training, the faithfulness curve at one step."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp_app.core.circuits_graph import EMBED, LOGITS, QKV
from interp_app.core.circuits_record import KEEP_SHARE, METHOD_LABELS, Circuits
from interp_app.panels.plotting import BASE, HIGHLIGHT, MUTED, Figure, figure, scale, step_axis

NEGATIVE, POSITIVE = "#c0392b", "#2e6fb0"  # corrupting the edge lowers / raises the metric
PORT = {"q": 0.22, "k": 0.0, "v": -0.22}  # where each input of a head enters its node
TIMELINE_EDGES = 12  # edges in the timeline: the strongest over training
TITLE_PATHS = 3  # the selected head's strongest drawn edges named in the graph's title


def node_positions(c: Circuits) -> dict[str, tuple[float, float]]:
    """(x, y) of every node: embeddings left, a column per layer's heads and per MLP, the
    logits right; heads stacked by index."""
    pos: dict[str, tuple[float, float]] = {EMBED: (0.0, 0.0)}
    x = 0.0
    layer = -1
    for name in c.senders[1:]:
        if name.startswith("L") and "H" in name and "MLP" not in name:
            this = int(name[1 : name.index("H")])
            if this != layer:
                x, layer = x + 1.0, this
            h = int(name[name.index("H") + 1 :])
            n_heads = sum(1 for s in c.senders if s.startswith(f"L{this}H"))
            pos[name] = (x, h - (n_heads - 1) / 2)
        else:  # an MLP: its own column after its layer's heads
            x += 1.0
            pos[name] = (x, 0.0)
    pos[LOGITS] = (x + 1.0, 0.0)
    return pos


def _ends(c: Circuits, e: int, pos: dict[str, tuple[float, float]]) -> tuple[float, ...]:
    sender, receiver = c.senders[c.edge_sender[e]], c.receivers[c.edge_receiver[e]]
    x0, y0 = pos[sender]
    node, _, port = receiver.partition(".")
    x1, y1 = pos[node]
    return x0 + 0.08, y0, x1 - (0.12 if port else 0.08), y1 + PORT.get(port, 0.0)


def shown_edges(scores: np.ndarray, top_k: int) -> np.ndarray:
    """The ``top_k`` edges of largest |score| (ties by index), strongest first."""
    order = np.argsort(-np.abs(scores), kind="stable")
    return order[: max(0, min(top_k, len(order)))]


def touching(c: Circuits, edges: np.ndarray, head: str) -> list[int]:
    """The edges among ``edges`` into (any input of) or out of ``head``."""
    return [
        int(e)
        for e in edges
        if c.senders[c.edge_sender[e]] == head
        or c.receivers[c.edge_receiver[e]].split(".", 1)[0] == head
    ]


def graph_title(c: Circuits, i: int, method: str, top_k: int, head: str) -> str:
    """What is drawn, and on a second line the selected head's drawn edges with their
    scores: the contribution of each path into and out of it (a click on an edge selects
    the head it runs into)."""
    scores = c.scores(method)[i]
    mine = touching(c, shown_edges(scores, top_k), head)
    paths = "; ".join(f"{c.edges[e]} {scores[e]:+.2f}" for e in mine[:TITLE_PATHS])
    paths += f" and {len(mine) - TITLE_PATHS} more" if len(mine) > TITLE_PATHS else ""
    return (
        f"Circuit at step {int(c.steps[i])} — top {top_k} of {len(c.edges)} edges by "
        f"|{METHOD_LABELS[method]}|, {c.description}<br>"
        + (f"{head}: {paths}" if mine else f"{head}: none of its edges in the top {top_k}")
    )


def graph_marks(
    c: Circuits, step: int, method: str, top_k: int, head: str
) -> tuple[str, list[str], list[float]]:
    """(title, node colours, edge opacities in trace order): everything of the graph that
    depends on the selected head, so a head click moves only these (``Overlay``)."""
    i = c.index(step)
    scores = c.scores(method)[i]
    edges = shown_edges(scores, top_k)[::-1]  # trace order: the strongest drawn last
    mine = set(touching(c, edges, head))
    opacity = [(0.95 if int(e) in mine else 0.3) if mine else 0.75 for e in edges]
    names = list(node_positions(c))
    colours = [HIGHLIGHT if n == head else (BASE if _is_head(n) else MUTED) for n in names]
    return graph_title(c, i, method, top_k, head), colours, opacity


def _is_head(name: str) -> bool:
    return "H" in name and "MLP" not in name


def _edge_trace(
    c: Circuits, e: int, score: float, biggest: float, pos, opacity: float
) -> dict[str, Any]:
    x0, y0, x1, y1 = _ends(c, e, pos)
    width = 1.0 + 7.0 * abs(score) / biggest if biggest > 0 else 1.0
    return {
        "type": "scatter",
        "x": [x0, (x0 + x1) / 2, x1],
        "y": [y0, (y0 + y1) / 2, y1],
        "mode": "lines",
        "line": {"color": NEGATIVE if score < 0 else POSITIVE, "width": width},
        "opacity": opacity,
        "customdata": [c.edges[e]] * 3,
        "hovertemplate": f"{c.edges[e]}: {score:+.3f}<extra></extra>",
        "showlegend": False,
    }


def _node_trace(pos: dict[str, tuple[float, float]], colours: list[str]) -> dict[str, Any]:
    names = list(pos)
    is_head = [_is_head(n) for n in names]
    return {
        "type": "scatter",
        "x": [pos[n][0] for n in names],
        "y": [pos[n][1] for n in names],
        "mode": "markers+text",
        "text": names,
        "textposition": "top center",
        "customdata": names,
        "marker": {
            "size": [22 if h else 16 for h in is_head],
            "symbol": ["circle" if h else "square" for h in is_head],
            "color": colours,
            "line": {"color": "white", "width": 1},
        },
        "hovertemplate": "%{customdata}<extra></extra>",
        "showlegend": False,
    }


def circuit_graph_figure(c: Circuits, step: int, method: str, top_k: int, selected: str) -> Figure:
    """The graph at ``step``: the ``top_k`` strongest edges by ``method``, width by |score|,
    red where corrupting the edge lowers the metric, blue where it raises it; a head's q, k
    and v inputs enter it from above, the middle and below."""
    i = c.index(step)
    scores = c.scores(method)[i]
    pos = node_positions(c)
    edges = shown_edges(scores, top_k)[::-1]
    title, colours, opacity = graph_marks(c, step, method, top_k, selected)
    biggest = float(np.abs(scores).max()) if scores.size else 0.0
    data = [
        _edge_trace(c, int(e), float(scores[e]), biggest, pos, a)
        for e, a in zip(edges, opacity, strict=True)
    ]
    data.append(_node_trace(pos, colours))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ports = [
        {"x": max(xs) + 0.5, "y": PORT[p], "text": p, "showarrow": False, "font": {"size": 10}}
        for p in QKV
    ]
    return figure(
        data,
        title,
        360,
        margin={"l": 20, "r": 20, "t": 60, "b": 20},
        xaxis={"visible": False, "range": [min(xs) - 0.5, max(xs) + 0.7]},
        yaxis={"visible": False, "range": [min(ys) - 0.8, max(ys) + 0.8]},
        annotations=ports,
        hovermode="closest",
    )


def strongest_over_training(c: Circuits, method: str, n: int = TIMELINE_EDGES) -> np.ndarray:
    """The ``n`` edges whose largest |score| over the steps is largest, strongest first."""
    peak = np.nanmax(np.abs(c.scores(method)), axis=0)
    return np.argsort(-peak, kind="stable")[:n]


def circuit_timeline_figure(c: Circuits, step: int, method: str) -> Figure:
    """Edges x checkpoints: the strongest edges' scores at every step (a click picks it)."""
    edges = strongest_over_training(c, method)
    steps = [int(s) for s in c.steps]
    z = c.scores(method)[:, edges].T  # [n, S]
    bound = float(np.nanmax(np.abs(z))) if z.size else 1.0
    heat = {
        "type": "heatmap",
        "x": list(range(len(steps))),
        "y": [c.edges[e] for e in edges],
        "z": z,
        "zmid": 0,
        "zmin": -bound,
        "zmax": bound,
        "colorscale": scale("RdBu"),
        "customdata": np.tile(np.asarray(steps, np.int64), (len(edges), 1)),
        "hovertemplate": "%{y} at step %{customdata}: %{z:.3f}<extra></extra>",
        "colorbar": {"thickness": 10},
    }
    shapes = timeline_marker(steps, step)
    title = f"Strongest edges over training ({METHOD_LABELS[method]}) — selected step {step}"
    return figure(
        [heat],
        title,
        40 + 22 * len(edges) + 60,
        shapes=shapes,
        xaxis=step_axis(steps),
        yaxis={"autorange": "reversed", "automargin": True},
    )


def timeline_marker(steps: list[int], step: int) -> list[dict]:
    if step not in steps:
        return []
    i = steps.index(step)
    line = {"color": HIGHLIGHT, "width": 2}
    box = {"type": "rect", "x0": i - 0.5, "x1": i + 0.5, "y0": 0, "y1": 1, "yref": "paper"}
    return [{**box, "xref": "x", "line": line}]


def faithfulness_figure(c: Circuits, step: int) -> Figure:
    """Share of the clean-minus-corrupted difference recovered keeping the top k edges (in
    exact and in EAP-IG order), at ``step``."""
    i = c.index(step)
    k = list(range(len(c.edges) + 1))
    data = []
    for order, colour in (("exact", BASE), ("eap_ig", HIGHLIGHT)):
        rec = c.recovered(order)[i]
        data.append(
            {
                "type": "scatter",
                "x": k,
                "y": [None if np.isnan(v) else float(v) for v in rec],
                "mode": "lines+markers",
                "marker": {"size": 4},
                "line": {"color": colour},
                "name": f"{METHOD_LABELS[order]} order",
                "hovertemplate": "top %{x} edges: %{y:.1%} recovered<extra></extra>",
            }
        )
    line = {"type": "line", "x0": 0, "x1": 1, "xref": "paper", "y0": KEEP_SHARE}
    shapes = [{**line, "y1": KEEP_SHARE, "line": {"color": MUTED, "dash": "dot"}}]
    gap = c.gap[i]
    note = "" if c.normalisable()[i] else " (the prompts barely differ here: not normalised)"
    return figure(
        data,
        f"Faithfulness at step {int(c.steps[i])}: share of the difference {gap:+.3f} recovered"
        + note,
        280,
        shapes=shapes,
        xaxis={"title": {"text": "edges kept (the rest corrupted)"}},
        yaxis={"title": {"text": "recovered"}, "tickformat": ".0%"},
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right"},
    )
