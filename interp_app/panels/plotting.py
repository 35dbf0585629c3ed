"""Shared figure helpers: Plotly figure specs without plotly.py's objects.

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

HIGHLIGHT = "#e8590c"
MUTED = "#adb5bd"
BASE = "#4c6ef5"
Figure = dict[str, Any]  # a Plotly figure spec: {"data": [...], "layout": {...}}
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


@functools.cache
def scale(name: str) -> tuple:
    """Colour scales as explicit stops: plotly.js orders some named scales the other way.

    Cached: Plotly looks a name up by inspecting its colour modules, half a render's time.
    """
    return tuple(tuple(stop) for stop in plotly.colors.get_colorscale(name))


def _validate() -> bool:
    return os.environ.get("INTERP_VALIDATE_FIGURES") == "1"


def figure(data: list[dict], title: str, height: int, **layout: Any) -> Figure:
    base: dict[str, Any] = {
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


def frame(x0: float, x1: float, y0: float, y1: float, xref="x", yref="y", width=3) -> dict:
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
    return figure(
        [], "", height, annotations=[note], xaxis={"visible": False}, yaxis={"visible": False}
    )


def causal(matrix: np.ndarray) -> list:
    """Lower triangle as numbers, the masked future as gaps (JSON null)."""
    n = matrix.shape[0]
    return [[float(matrix[i, j]) if j <= i else None for j in range(n)] for i in range(n)]


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


def vertical_line(x: float, color: str = HIGHLIGHT, width: float = 2, dash: str = "") -> dict:
    """A line at ``x`` across the plot's height (a step or phase-change mark on a curve)."""
    line: dict[str, Any] = {"color": color, "width": width}
    if dash:
        line["dash"] = dash
    return {
        "type": "line",
        "x0": x,
        "x1": x,
        "y0": 0,
        "y1": 1,
        "xref": "x",
        "yref": "paper",
        "line": line,
    }
