"""Pure figure builders: numbers and the selection in, a Plotly figure out.

A selected head is named ``L{layer}H{head}`` in every title and hover, and drawn with the
same highlight colour in every panel. Figures are Plotly figure specs (``{"data",
"layout"}``, what ``go.Figure.to_dict`` gives and ``dcc.Graph`` takes). Building
``go.Figure`` objects and serialising them with their template took three quarters of a
callback's time and payload, so the objects are built only to validate, when
``INTERP_VALIDATE_FIGURES=1`` (the test suite sets it).
"""

from __future__ import annotations

import functools
import os
import textwrap
from typing import Any

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from interp_app.core.analysis import METRICS, head_name
from interp_app.core.causal import ablated_as
from interp_app.core.selection import Selection
from interp_app.core.view import View

HIGHLIGHT = "#e8590c"
MUTED = "#adb5bd"
BASE = "#4c6ef5"
Figure = dict[str, Any]  # a Plotly figure spec: {"data": [...], "layout": {...}}
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


@functools.cache
def _scale(name: str) -> tuple:
    """Colour scales as explicit stops: plotly.js orders some named scales the other way.

    Cached: Plotly looks a name up by inspecting its colour modules, half a render's time.
    """
    return tuple(tuple(stop) for stop in plotly.colors.get_colorscale(name))


def _validate() -> bool:
    return os.environ.get("INTERP_VALIDATE_FIGURES") == "1"


def _figure(data: list[dict], title: str, height: int, **layout: Any) -> Figure:
    base = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "height": height,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "font": FONT,
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "uirevision": "keep",
    }
    base.update(layout)
    base.setdefault("xaxis", {})
    base.setdefault("yaxis", {})
    for key, axis in base.items():  # plotly.js defaults, without plotly.py's template
        if key.startswith(("xaxis", "yaxis")):
            axis.setdefault("automargin", True)
            axis.setdefault("zeroline", False)
            axis.setdefault("gridcolor", "#eef0f3")
            if any(t.get("type") == "heatmap" for t in data):
                axis.setdefault("showgrid", False)
    return checked({"data": data, "layout": base})


def checked(figure: Figure) -> Figure:
    """Under tests, build the ``go.Figure``: it raises on any property Plotly does not know."""
    if _validate():
        go.Figure(figure)
    return figure


def _frame(x0: float, x1: float, y0: float, y1: float, xref="x", yref="y", width=3) -> dict:
    return {
        "type": "rect",
        "x0": x0,
        "x1": x1,
        "y0": y0,
        "y1": y1,
        "xref": xref,
        "yref": yref,
        "line": {"color": HIGHLIGHT, "width": width},
        "fillcolor": "rgba(0,0,0,0)",
    }


def position_labels(words: list[str]) -> list[str]:
    """Unique axis labels (``2:spicy``) so repeated words keep their own row."""
    return [f"{i}:{w}" for i, w in enumerate(words)]


def message_figure(text: str, height: int = 200, width: int = 100) -> Figure:
    """A figure that only says ``text``, wrapped at ``width`` characters (Plotly does not
    wrap an annotation: a long sentence would run off the panel)."""
    text = "<br>".join(textwrap.wrap(text, width, break_long_words=False)) if text else text
    note = {"text": text, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper"}
    return _figure(
        [], "", height, annotations=[note], xaxis={"visible": False}, yaxis={"visible": False}
    )


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average what exists so far."""
    if len(values) == 0:
        return values
    c = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def loss_figure(history, step: int, bad_steps: set[int] | None = None, max_points: int = 800):
    """Train loss (smoothed, thinned to ``max_points``) and validation loss per checkpoint."""
    t_steps, t_loss, v_steps, v_loss = history
    data = []
    if len(t_steps):
        sm = smooth(t_loss, max(len(t_loss) // 200, 1))
        keep = np.unique(
            np.linspace(0, len(t_steps) - 1, min(max_points, len(t_steps))).astype(int)
        )
        data.append(
            {
                "type": "scatter",
                "x": t_steps[keep],
                "y": np.round(sm[keep], 4),
                "name": "train (smoothed)",
                "mode": "lines",
                "line": {"color": MUTED},
                "hoverinfo": "skip",
            }
        )
    data.append(
        {
            "type": "scatter",
            "x": v_steps,
            "y": np.round(v_loss, 4),
            "name": "validation (checkpoints)",
            "mode": "lines+markers",
            "marker": {"size": 5, "color": BASE},
            "line": {"color": BASE},
            "hovertemplate": "step %{x}<br>validation loss %{y:.3f}<extra></extra>",
        }
    )
    if bad_steps:
        data.append(
            {
                "type": "scatter",
                "x": sorted(bad_steps),
                "y": [0] * len(bad_steps),
                "mode": "markers",
                "name": "unreadable",
                "marker": {"symbol": "x", "color": "red", "size": 10},
            }
        )
    return _figure(
        data,
        loss_title(step),
        260,
        shapes=[loss_marker(step)],
        xaxis={"title": {"text": "step"}},
        yaxis={"title": {"text": "loss"}, "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right"},
    )


def loss_title(step: int) -> str:
    return f"Loss — selected step {step} (click to pick a checkpoint)"


def loss_marker(step: int) -> dict:
    return {
        "type": "line",
        "x0": step,
        "x1": step,
        "y0": 0,
        "y1": 1,
        "xref": "x",
        "yref": "paper",
        "line": {"color": HIGHLIGHT, "width": 2},
    }


def prediction_figure(view: View, sel: Selection) -> Figure:
    """Top-k next tokens; with heads ablated, the probabilities before ablation beside them."""
    words = [view.vocab[i] for i in view.pred_ids][::-1]
    probs = view.pred_probs[::-1]
    bar = {
        "type": "bar",
        "x": probs,
        "y": words,
        "orientation": "h",
        "name": "ablated" if sel.ablate else "model",
        "marker": {"color": [HIGHLIGHT if w == sel.target else BASE for w in words]},
        "customdata": words,
        "text": [f"{p:.1%}" for p in probs],
        "textposition": "auto",
        "hovertemplate": "%{y}: %{x:.2%}<extra>click: make target</extra>",
    }
    data = [bar]
    word = view.words[sel.pos] if sel.pos < len(view.words) else "?"
    title = f"Next token after {sel.pos}:{word} — target {sel.target!r}"
    if view.clean_probs is not None:
        before = view.clean_probs[view.pred_ids][::-1]
        data.insert(
            0,
            {
                "type": "bar",
                "x": before,
                "y": words,
                "orientation": "h",
                "name": "before ablation",
                "marker": {"color": MUTED},
                "customdata": words,
                "hovertemplate": "%{y} before ablation: %{x:.2%}<extra></extra>",
            },
        )
        p_before = float(view.clean_probs[view.target_id])
        after = view.target_prob
        title = (
            f"P({sel.target!r}) {p_before:.0%} → {after:.0%} with "
            f"{', '.join(sel.ablate)} {ablated_as(sel.mode)}"
        )
    return _figure(
        data,
        title,
        300,
        xaxis={"range": [0, 1], "tickformat": ".0%"},
        barmode="group",
        legend={"orientation": "h", "y": -0.15},
    )


def head_grid_figure(
    view: View, sel: Selection, metric: str, base: View | None = None, base_step: int | None = None
) -> Figure:
    """Per-head scores; with ``base``, their change from ``base_step`` to the selected step."""
    values = view.metrics[metric] - (base.metrics[metric] if base is not None else 0)
    n_layers, n_heads = values.shape
    names = [[head_name(layer, h) for h in range(n_heads)] for layer in range(n_layers)]
    text = [
        [f"{n}{' ✕' if n in sel.ablate else ''}<br>{v:.2f}" for n, v in zip(nr, row, strict=True)]
        for nr, row in zip(names, values, strict=True)
    ]
    heat = {
        "type": "heatmap",
        "z": values,
        "x": [f"H{h}" for h in range(n_heads)],
        "y": [f"L{layer}" for layer in range(n_layers)],
        "customdata": names,
        "text": text,
        "texttemplate": "%{text}",
        "hovertemplate": "%{customdata}: %{z:.3f}<extra></extra>",
        "colorbar": {"thickness": 10},
    }
    if metric == "share" and base is None:  # a share is in [-1, 1]: one scale at every step
        heat.update(colorscale=_scale("RdBu"), zmid=0, zmin=-1, zmax=1)
    elif metric in ("dla", "share") or base is not None:
        heat.update(colorscale=_scale("RdBu"), zmid=0)
    else:
        heat.update(colorscale=_scale("Blues"), zmin=0, zmax=float(np.abs(values).max()) or 1.0)
    frame = _frame(sel.head - 0.5, sel.head + 0.5, sel.layer - 0.5, sel.layer + 0.5)
    what = METRICS[metric]
    if base is not None:
        what = f"change in {what}, step {base_step} → {sel.step}"
    return _figure(
        [heat],
        f"Heads: {what} — selected {sel.head_name}",
        300,
        shapes=[frame],
        yaxis={"autorange": "reversed"},
    )


def _causal(matrix: np.ndarray) -> list:
    """Lower triangle as numbers, the masked future as gaps (JSON null)."""
    n = matrix.shape[0]
    return [[float(matrix[i, j]) if j <= i else None for j in range(n)] for i in range(n)]


def attention_figure(view: View, sel: Selection) -> Figure:
    labels = position_labels(view.words)
    heat = {
        "type": "heatmap",
        "z": _causal(view.patterns[sel.layer, sel.head]),
        "x": labels,
        "y": labels,
        "colorscale": _scale("Blues"),
        "zmin": 0,
        "zmax": 1,
        "hovertemplate": "query %{y}<br>key %{x}<br>weight %{z:.3f}<extra>"
        + sel.head_name
        + "</extra>",
        "colorbar": {"thickness": 10},
    }
    return _figure(
        [heat],
        f"Attention pattern of {sel.head_name} (query row {sel.pos} framed)",
        380,
        shapes=[_frame(-0.5, len(labels) - 0.5, sel.pos - 0.5, sel.pos + 0.5)],
        yaxis={"autorange": "reversed", "title": {"text": "query"}},
        xaxis={"title": {"text": "key"}, "tickangle": -45},
    )


def _domains(n: int, gap: float) -> list[tuple[float, float]]:
    width = (1 - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def multiples_figure(
    view: View, sel: Selection, base: View | None = None, base_step: int | None = None
) -> Figure:
    """Small multiples on a layers x heads grid of axes; the selected head is framed.

    With ``base`` each multiple shows the change of its pattern since ``base_step``.
    """
    n_layers, n_heads = view.patterns.shape[:2]
    n = view.length
    xdom, ydom = _domains(n_heads, 0.06), _domains(n_layers, 0.14)[::-1]
    data, layout, notes = [], {}, []
    for layer in range(n_layers):
        for h in range(n_heads):
            i = layer * n_heads + h + 1
            suffix = "" if i == 1 else str(i)
            name = head_name(layer, h)
            pattern = view.patterns[layer, h]
            if base is not None:
                pattern = pattern - base.patterns[layer, h]
            data.append(
                {
                    "type": "heatmap",
                    "z": _causal(pattern),
                    "colorscale": _scale("Blues" if base is None else "RdBu"),
                    "zmin": 0 if base is None else -1,
                    "zmax": 1,
                    "showscale": False,
                    "name": name,
                    "customdata": [[name] * n] * n,
                    "hovertemplate": name + " q%{y} k%{x}: %{z:.2f}<extra></extra>",
                    "xaxis": f"x{suffix}",
                    "yaxis": f"y{suffix}",
                }
            )
            layout[f"xaxis{suffix}"] = {
                "domain": xdom[h],
                "anchor": f"y{suffix}",
                "showticklabels": False,
            }
            layout[f"yaxis{suffix}"] = {
                "domain": ydom[layer],
                "anchor": f"x{suffix}",
                "showticklabels": False,
                "autorange": "reversed",
            }
            selected = (layer, h) == (sel.layer, sel.head)
            notes.append(
                {
                    "text": f"<b>{name}</b>" if selected else name,
                    "x": sum(xdom[h]) / 2,
                    "y": ydom[layer][1],
                    "xref": "paper",
                    "yref": "paper",
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"color": HIGHLIGHT if selected else "#212529", "size": 13},
                }
            )
    x0, x1 = xdom[sel.head]
    y0, y1 = ydom[sel.layer]
    frame = _frame(x0 - 0.01, x1 + 0.01, y0 - 0.02, y1 + 0.02, "paper", "paper")
    what = "Every head's pattern" if base is None else f"Change since step {base_step}"
    return _figure(
        data,
        f"{what} (selected {sel.head_name}; click to select)",
        380,
        shapes=[frame],
        annotations=notes,
        margin={"l": 20, "r": 20, "t": 60, "b": 20},
        **layout,
    )


def token_attribution_figure(view: View, sel: Selection) -> Figure:
    n = view.length
    weights = view.patterns[sel.layer, sel.head, sel.pos, :n]
    values = view.source_attr
    zmax = float(np.abs(values).max()) or 1.0
    text = [
        f"<b>{w}</b><br>{v:+.3f}<br>attn {a:.0%}"
        for w, v, a in zip(view.words, values, weights, strict=True)
    ]
    heat = {
        "type": "heatmap",
        "z": [values],
        "x": position_labels(view.words),
        "y": [sel.head_name],
        "text": [text],
        "customdata": [weights],
        "texttemplate": "%{text}",
        "colorscale": _scale("RdBu"),
        "zmid": 0,
        "zmin": -zmax,
        "zmax": zmax,
        "colorbar": {"thickness": 10},
        "hovertemplate": "%{x}<br>attribution %{z:.4f}<br>attention %{customdata:.3f}"
        "<extra>" + sel.head_name + "</extra>",
        "xgap": 2,
    }
    title = (
        f"Token attributions through {sel.head_name} to {sel.target!r} at {sel.pos}: "
        f"sum {float(values.sum()):.3f} (= {sel.head_name}'s bar)"
    )
    if sel.head_name in sel.ablate:
        title = (
            f"Token attributions through {sel.head_name}: none, the head is {ablated_as(sel.mode)}"
        )
    return _figure([heat], title, 200, xaxis={"tickangle": -30})


def residual_figure(
    view: View, sel: Selection, base: View | None = None, base_step: int | None = None
) -> Figure:
    """Direct logit attributions; with ``base``, their change from ``base_step``."""
    names = list(view.comp_names)
    values = view.comp_attr - (base.comp_attr if base is not None else 0)
    colors = [
        HIGHLIGHT if name == sel.head_name else (BASE if kind == "head" else MUTED)
        for name, kind in zip(names, view.comp_kinds, strict=True)
    ]
    bar = {
        "type": "bar",
        "x": names,
        "y": values,
        "marker": {
            "color": colors,
            "line": {"width": [3 if n == sel.head_name else 0 for n in names], "color": "black"},
        },
        "customdata": names,
        "hovertemplate": "%{x}: %{y:.4f}<extra></extra>",
    }
    title = (
        f"Direct logit attribution to {sel.target!r} at {sel.pos} — "
        f"sum {float(view.comp_attr.sum()):.4f}, logit {view.logit:.4f} — "
        f"selected {sel.head_name}"
    )
    if base is not None:
        title = (
            f"Change in direct logit attribution to {sel.target!r} at {sel.pos}, "
            f"step {base_step} → {sel.step} (logit {base.logit:.3f} → {view.logit:.3f}) — "
            f"selected {sel.head_name}"
        )
    return _figure([bar], title, 320, xaxis={"tickangle": -35})


def logit_lens_figure(view: View, sel: Selection) -> Figure:
    n_rows = view.lens_top.shape[0]
    heat = {
        "type": "heatmap",
        "z": view.lens_prob,
        "x": position_labels(view.words),
        "y": ["embeddings"] + [f"after L{i}" for i in range(n_rows - 1)],
        "text": [[view.vocab[i] for i in row] for row in view.lens_top],
        "texttemplate": "%{text}",
        "colorscale": _scale("Greens"),
        "zmin": 0,
        "zmax": 1,
        "colorbar": {"thickness": 10},
        "hovertemplate": "%{y}, %{x}<br>top: %{text} (%{z:.1%})<extra></extra>",
        "xgap": 2,
        "ygap": 2,
    }
    return _figure(
        [heat],
        "Logit lens: top token of each residual through the final LayerNorm",
        260,
        shapes=[_frame(sel.pos - 0.5, sel.pos + 0.5, -0.5, n_rows - 0.5)],
        yaxis={"autorange": "reversed"},
        xaxis={"tickangle": -30},
    )


def step_axis(steps: list[int], max_labels: int = 12) -> dict:
    """Checkpoints by index, labelled with real steps: dense early steps stay readable."""
    n = len(steps)
    idx = sorted(
        {round(i * (n - 1) / (max_labels - 1)) for i in range(max_labels)} if n > 1 else {0}
    )
    return {
        "tickmode": "array",
        "tickvals": idx,
        "ticktext": [str(steps[i]) for i in idx],
        "title": {"text": "checkpoint step"},
        "range": [-0.5, n - 0.5],
    }


def step_marker(steps: list[int], step: int) -> list[dict]:
    if step not in steps:
        return []
    i = steps.index(step)
    line = {"color": HIGHLIGHT, "width": 2}
    return [
        {
            "type": "line",
            "x0": i,
            "x1": i,
            "y0": 0,
            "y1": 1,
            "xref": "x",
            "yref": "paper",
            "line": line,
        }
    ]


def head_timeline_overlay(
    steps: list[int], names: list[str], sel: Selection, metric: str
) -> tuple[str, list[dict]]:
    """Title and marks (selected step, framed head row): all a step or head change alters."""
    row = names.index(sel.head_name) if sel.head_name in names else 0
    shapes = [_frame(-0.5, len(steps) - 0.5, row - 0.5, row + 0.5), *step_marker(steps, sel.step)]
    title = (
        f"Head timeline: {METRICS[metric]} for {sel.target!r} at {sel.pos} — "
        f"selected {sel.head_name} at step {sel.step}"
    )
    return title, shapes


def head_timeline_figure(
    steps: list[int], values: np.ndarray, sel: Selection, metric: str
) -> Figure:
    """One row per head, one column per checkpoint; click a cell to go to that step and head."""
    n_layers, n_heads = values.shape[1:]
    names = [head_name(layer, h) for layer in range(n_layers) for h in range(n_heads)]
    z = values.reshape(len(steps), -1).T  # [heads, S]
    heat = {
        "type": "heatmap",
        "z": z,
        "x": list(range(len(steps))),
        "y": names,
        "customdata": np.tile(np.asarray(steps, np.int32), (len(names), 1)),
        "hovertemplate": "%{y} at step %{customdata}: %{z:.3f}<extra></extra>",
        "colorbar": {"thickness": 10},
    }
    if metric in ("dla", "share"):
        zmax = 1.0 if metric == "share" else float(np.nanmax(np.abs(z))) if z.size else 1.0
        heat.update(colorscale=_scale("RdBu"), zmid=0, zmin=-zmax, zmax=zmax)
    else:
        heat.update(colorscale=_scale("Blues"), zmin=0)
    title, shapes = head_timeline_overlay(steps, names, sel, metric)
    return _figure(
        [heat],
        title,
        max(220, 60 + 26 * len(names)),
        shapes=shapes,
        xaxis=step_axis(steps),
        yaxis={"autorange": "reversed"},
    )


def prediction_timeline_title(sel: Selection) -> str:
    return f"P({sel.target!r}) at {sel.pos} over training (click to pick a step)"


def prediction_timeline_figure(
    steps: list[int], probs: np.ndarray, vocab: tuple[str, ...], sel: Selection, others: int = 3
) -> Figure:
    """The target's probability over training, and the runners-up at the last step."""
    target = vocab.index(sel.target)
    last = probs[-1]
    rivals = [int(i) for i in np.argsort(-last) if int(i) != target][:others]
    x = list(range(len(steps)))
    data = [
        {
            "type": "scatter",
            "x": x,
            "y": probs[:, target],
            "name": sel.target,
            "mode": "lines+markers",
            "line": {"color": HIGHLIGHT, "width": 3},
            "marker": {"size": 4},
            "customdata": steps,
            "hovertemplate": sel.target + " at step %{customdata}: %{y:.1%}<extra></extra>",
        }
    ]
    for i, tok in enumerate(rivals):
        data.append(
            {
                "type": "scatter",
                "x": x,
                "y": probs[:, tok],
                "name": vocab[tok],
                "mode": "lines",
                "line": {"width": 1.5, "color": ["#4c6ef5", "#12b886", "#868e96"][i % 3]},
                "customdata": steps,
                "hovertemplate": vocab[tok] + " at step %{customdata}: %{y:.1%}<extra></extra>",
            }
        )
    return _figure(
        data,
        prediction_timeline_title(sel),
        300,
        shapes=step_marker(steps, sel.step),
        xaxis=step_axis(steps, 6),
        yaxis={"range": [0, 1], "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.35},
    )


def sparkline_figure(steps: list[int], values: np.ndarray, name: str, metric: str) -> Figure:
    line = {
        "type": "scatter",
        "x": [str(s) for s in steps],
        "y": values,
        "mode": "lines",
        "line": {"color": HIGHLIGHT},
        "hovertemplate": "step %{x}: %{y:.3f}<extra></extra>",
    }
    return _figure(
        [line],
        f"{name}: {METRICS[metric]} over training",
        150,
        margin={"l": 40, "r": 10, "t": 30, "b": 20},
        xaxis={"showticklabels": False},
    )


def patching_overlay(sel: Selection, n_layers: int, answer: str) -> tuple[str, list[dict]]:
    """Title and frames (selected head, selected position): all a head change alters."""
    frame_head = _frame(sel.head - 0.5, sel.head + 0.5, sel.layer - 0.5, sel.layer + 0.5)
    frame_pos = _frame(sel.pos - 0.5, sel.pos + 0.5, -0.5, n_layers + 0.5, "x2", "y2")
    title = (
        f"Activation patching clean → corrupted, without ablation: ({sel.target!r} − "
        f"{answer!r}) logit difference, clean = 1, corrupted = 0 — selected {sel.head_name}"
    )
    return title, [frame_head, frame_pos]


def patching_figure(
    heads: np.ndarray,
    resid: np.ndarray,
    words: list[str],
    sel: Selection,
    answer: str,
) -> Figure:
    """Two heatmaps of the normalised logit difference after patching clean -> corrupted:
    each head's output (layers x heads) and each residual vector (boundary x position)."""
    n_layers, n_heads = heads.shape
    names = [[head_name(layer, h) for h in range(n_heads)] for layer in range(n_layers)]
    rows = ["embeddings"] + [f"after L{i}" for i in range(n_layers)]
    scale = _scale("RdBu")
    common = {"zmid": 0, "zmin": -1, "zmax": 1, "colorscale": scale, "texttemplate": "%{text}"}
    data = [
        {
            "type": "heatmap",
            "z": heads,
            "x": [f"H{h}" for h in range(n_heads)],
            "y": [f"L{layer}" for layer in range(n_layers)],
            "customdata": names,
            "text": [
                [f"{n}<br>{v:.2f}" for n, v in zip(nr, row, strict=True)]
                for nr, row in zip(names, heads, strict=True)
            ],
            "hovertemplate": "patch %{customdata}: %{z:.3f}<extra></extra>",
            "showscale": False,
            "xaxis": "x",
            "yaxis": "y",
            **common,
        },
        {
            "type": "heatmap",
            "z": resid,
            "x": list(range(len(words))),
            "y": rows,
            "text": [[f"{v:.2f}" for v in row] for row in resid],
            "hovertemplate": "patch %{y} at position %{x}: %{z:.3f}<extra></extra>",
            "xaxis": "x2",
            "yaxis": "y2",
            "colorbar": {"thickness": 10},
            "xgap": 2,
            "ygap": 2,
            **common,
        },
    ]
    title, shapes = patching_overlay(sel, n_layers, answer)
    return _figure(
        data,
        title,
        300,
        shapes=shapes,
        xaxis={"domain": [0, 0.28], "title": {"text": "head"}},
        yaxis={"autorange": "reversed"},
        xaxis2={
            "domain": [0.38, 1],
            "anchor": "y2",
            "tickmode": "array",
            "tickvals": list(range(len(words))),
            "ticktext": position_labels(words),
            "title": {"text": "position (residual stream)"},
        },
        yaxis2={"anchor": "x2", "autorange": "reversed"},
    )
