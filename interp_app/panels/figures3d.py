"""The seed article's 3D pictures as Plotly specs: embedding stacks, the forward pass with
attention lines, and what the selected position's vector resembles.

Pure functions of numbers (a ``Forward``, embedding vectors) and the selection. Layout of the
forward view: x is the token's column, y the row (embeddings, then after each layer), z is up.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from interp_app.core.heads import head_name
from interp_app.core.selection import Selection
from interp_app.core.view import Forward
from interp_app.panels.boxes import Scale, scale_for, stack_height, stack_trace
from interp_app.panels.plotting import checked

COLUMN = 1.6  # distance between token columns
ROW = 3.0  # distance between rows (layers)
HEAD_COLOURS = ("#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599")
FADED = 0.12
DEFAULT_THRESHOLD = 0.3  # attention lines above this weight, until the slider moves
FRUITS = ("apple", "chili", "lemon", "orange")
TASTES = ("juicy", "sour", "spicy", "sweet")
EMBEDDING_SETS = {"fruits": FRUITS, "tastes": TASTES}
# A wide or long model would draw tens of thousands of boxes and lines (GPT-2: 768 numbers
# a vector, 13 rows, up to 128 positions, 144 heads) and freeze the page: past these, the
# figure draws a part and its title says which.
MAX_DIMS = 64  # the first 64 numbers of each vector
MAX_COLUMNS = 16  # positions, the last ones up to the query
MAX_LINES = 300  # the strongest attention lines above the threshold


def dims(vectors: np.ndarray) -> np.ndarray:
    """The numbers drawn of each vector: the first ``MAX_DIMS``."""
    return np.asarray(vectors)[..., :MAX_DIMS]


def columns(n: int, pos: int) -> range:
    """The positions drawn: every one of a short prompt, else ``MAX_COLUMNS`` of them ending
    at the query (attention only looks back)."""
    start = max(0, min(pos + 1, n) - MAX_COLUMNS)
    return range(start, min(n, start + MAX_COLUMNS))


def part_note(fwd: Forward, sel: Selection, threshold: float) -> str:
    """What the forward view leaves out, in a phrase ("" when it draws everything)."""
    width, n = fwd.rows.shape[-1], fwd.rows.shape[1]
    cols = columns(n, sel.pos)
    parts = []
    if width > MAX_DIMS:
        parts.append(f"dims 0–{MAX_DIMS - 1} of {width}")
    if len(cols) < n:
        parts.append(f"positions {cols.start}–{cols.stop - 1} of {n}")
    total = sum(1 for _ in _edges(fwd, threshold, cols))
    if total > MAX_LINES:
        parts.append(f"the {MAX_LINES} strongest of {total:,} lines")
    return f" — drawn: {', '.join(parts)}" if parts else ""


def row_name(row: int) -> str:
    return "embedding" if row == 0 else f"after layer {row - 1}"


def _label(x: float, y: float, z: float, text: str, meta: str = "label", size: int = 11) -> dict:
    return {
        "type": "scatter3d",
        "mode": "text",
        "x": [x],
        "y": [y],
        "z": [z],
        "text": [text],
        "textfont": {"size": size},
        "hoverinfo": "skip",
        "showlegend": False,
        "meta": meta,
    }


def _scene(title: str, height: int, eye: dict, extra: dict | None = None) -> dict:
    axis = {"visible": False, "showspikes": False}
    return {
        "title": {"text": title, "font": {"size": 14}},
        "height": height,
        "margin": {"l": 0, "r": 0, "t": 40, "b": 0},
        "showlegend": False,
        "uirevision": "keep-camera",  # the camera stays where the user turned it
        "scene": {
            "xaxis": axis,
            "yaxis": axis,
            "zaxis": axis,
            "aspectmode": "data",
            "camera": {"eye": eye},
            **(extra or {}),
        },
    }


def embedding_figure(names: list[str], vectors: np.ndarray, step: int) -> dict:
    """The chosen tokens' embeddings side by side, scaled together."""
    vectors = dims(vectors)
    scale = scale_for(vectors)
    data = []
    for i, (name, vec) in enumerate(zip(names, vectors, strict=True)):
        data.append(stack_trace(vec, scale, i * COLUMN, 0.0, f"'{name}' embedding"))
        data.append(_label(i * COLUMN, 0.0, -0.5, name))
    title = f"Token embeddings at step {step}: {', '.join(names)}"
    return checked({"data": data, "layout": _scene(title, 360, {"x": 0.2, "y": -2.0, "z": 0.9})})


def _edges(
    fwd: Forward, threshold: float, cols: range
) -> Iterator[tuple[int, int, int, int, float]]:
    n_layers, n_heads = fwd.patterns.shape[:2]
    for layer in range(n_layers):
        for h in range(n_heads):
            for q in cols:
                for key in range(cols.start, q + 1):
                    w = float(fwd.patterns[layer, h, q, key])
                    if w > threshold:
                        yield layer, h, q, key, w


def attention_edges(
    fwd: Forward, threshold: float, pos: int = 0
) -> list[tuple[int, int, int, int, float]]:
    """(layer, head, query, key, weight) above ``threshold`` between the drawn positions
    (``columns``), at most the ``MAX_LINES`` strongest, in drawing order."""
    edges = list(_edges(fwd, threshold, columns(fwd.patterns.shape[2], pos)))
    if len(edges) > MAX_LINES:
        keep = sorted(range(len(edges)), key=lambda i: -edges[i][4])[:MAX_LINES]
        edges = [edges[i] for i in sorted(keep)]
    return edges


def line_style(sel: Selection, layer: int, h: int, q: int, w: float) -> dict:
    """What a head change alters on a line: strong for the selected head, faded otherwise."""
    chosen = (layer, h) == (sel.layer, sel.head)
    marked = chosen and q == sel.pos
    return {
        "opacity": 1.0 if chosen else FADED,
        "width": (2 + 8 * w) * (1.6 if marked else 1.0),
        "meta": "attn-strong" if chosen else "attn",
    }


def line_styles(fwd: Forward, sel: Selection, threshold: float) -> list[dict]:
    return [
        line_style(sel, layer, h, q, w)
        for layer, h, q, _, w in attention_edges(fwd, threshold, sel.pos)
    ]


def attention_lines(fwd: Forward, sel: Selection, threshold: float, scale: Scale) -> list[dict]:
    """One ``scatter3d`` line per (layer, head, query, key) with weight above ``threshold``,
    from the query's stack after layer l down to the key's stack in the row below."""
    n_layers, n_heads, n, _ = fwd.patterns.shape
    cols = columns(n, sel.pos)
    rows = dims(fwd.rows)
    tops = {(r, t): stack_height(rows[r, t], scale) for r in range(n_layers + 1) for t in cols}
    lines = []
    for layer, h, q, key, w in attention_edges(fwd, threshold, sel.pos):
        offset = (h - (n_heads - 1) / 2) * 0.25
        name = head_name(layer, h)
        style = line_style(sel, layer, h, q, w)
        lines.append(
            {
                "type": "scatter3d",
                "mode": "lines",
                "x": [(q - cols.start) * COLUMN + offset, (key - cols.start) * COLUMN + offset],
                "y": [(layer + 1) * ROW, layer * ROW],
                "z": [tops[layer + 1, q] + 0.15, tops[layer, key] + 0.15],
                "line": {"color": HEAD_COLOURS[h % len(HEAD_COLOURS)], "width": style["width"]},
                "opacity": style["opacity"],
                "customdata": [[name, q], [name, q]],
                "hovertemplate": f"{name}: '{fwd.words[q]}'@{q} → "
                f"'{fwd.words[key]}'@{key}<br>weight {w:.3f}<extra></extra>",
                "showlegend": False,
                "meta": style["meta"],
            }
        )
    return lines


def forward_title(sel: Selection, threshold: float, note: str = "") -> str:
    """``note``: what is left out (:func:`part_note`)."""
    return (
        f"Forward pass at step {sel.step}: attention of {sel.head_name} strong, others faded"
        f" (weights > {threshold:.2f}){note}"
    )


def forward_figure(fwd: Forward, sel: Selection, threshold: float) -> dict:
    """The forward pass as a grid of stacks with attention lines; beside the selected
    position's final vector, the embedding of the token it most resembles."""
    n_rows, n, _ = fwd.rows.shape
    cols = columns(n, sel.pos)
    top = int(fwd.near_ids[-2, 0])  # nearest to the selected position's last-layer vector
    rows, nearest = dims(fwd.rows), dims(fwd.wte[top])
    scale = scale_for([*rows[:, cols.start : cols.stop].reshape(-1, rows.shape[-1]), nearest])
    data = []
    for r in range(n_rows):
        for t in cols:
            label = f"'{fwd.words[t]}'@{t}, {row_name(r)}"
            x = (t - cols.start) * COLUMN
            data.append(stack_trace(rows[r, t], scale, x, r * ROW, label))
        data.append(_label(-1.2 * COLUMN, r * ROW, 0.0, row_name(r), size=10))
    for t in cols:
        word = fwd.words[t]
        bold = f"<b>{word}</b>" if t == sel.pos else word
        data.append(_label((t - cols.start) * COLUMN, -1.2, 0.0, bold))
    data.append(  # the query column: a bar along the rows under the selected position
        {
            "type": "scatter3d",
            "mode": "lines",
            "x": [(sel.pos - cols.start) * COLUMN] * 2,
            "y": [-0.6, (n_rows - 1) * ROW + 0.6],
            "z": [-0.1, -0.1],
            "line": {"color": "#fab005", "width": 14},
            "hoverinfo": "skip",
            "showlegend": False,
            "meta": "query",
        }
    )
    x_near, y_near = (len(cols) + 0.6) * COLUMN, (n_rows - 1) * ROW
    cos = float(fwd.near_cos[-2, 0])
    data.append(
        stack_trace(
            nearest,
            scale,
            x_near,
            y_near,
            f"'{fwd.vocab[top]}' embedding (nearest)",
            meta="nearest",
        )
    )
    data.append(_label(x_near, y_near - 1.2, 0.0, f"≈ '{fwd.vocab[top]}'<br>cos {cos:.2f}"))
    data.extend(attention_lines(fwd, sel, threshold, scale))
    title = forward_title(sel, threshold, part_note(fwd, sel, threshold))
    layout = _scene(title, 560, {"x": -0.8, "y": -1.45, "z": 0.95})
    return checked({"data": data, "layout": layout})


def nearest_figure(fwd: Forward, sel: Selection) -> dict:
    """A table: for the selected position, the tokens each layer's vector most resembles
    (cosine), and the prediction (dot product with the final LayerNorm's output)."""
    n_rows = fwd.rows.shape[0]
    labels = [row_name(r) for r in range(n_rows)] + ["final LayerNorm (cosine)"]
    labels.append("final LayerNorm · embedding (= logit)")

    def cell(ids, vals, fmt):
        return "<br>".join(
            f"{fwd.vocab[int(i)]} {fmt.format(v)}" for i, v in zip(ids, vals, strict=True)
        )

    ranked = [cell(fwd.near_ids[r], fwd.near_cos[r], "{:.2f}") for r in range(n_rows + 1)]
    ranked.append(cell(fwd.pred_ids, fwd.pred_dots, "{:+.2f}"))
    firsts = [fwd.vocab[int(fwd.near_ids[r, 0])] for r in range(n_rows + 1)]
    firsts.append(fwd.vocab[int(fwd.pred_ids[0])])
    return checked(
        {
            "data": [
                {
                    "type": "table",
                    "columnwidth": [1.3, 0.7, 1.3],
                    "header": {
                        "values": ["vector", "nearest", "ranking"],
                        "fill": {"color": "#e9ecef"},
                        "align": "left",
                    },
                    "cells": {
                        "values": [labels, firsts, ranked],
                        "align": "left",
                        "height": 24,
                    },
                }
            ],
            "layout": {
                "title": {
                    "text": f"What '{fwd.words[sel.pos]}'@{sel.pos} resembles, layer by layer",
                    "font": {"size": 14},
                },
                "height": 560,
                "margin": {"l": 5, "r": 5, "t": 40, "b": 5},
            },
        }
    )
