"""Pure figure builders: numbers and the selection in, ``go.Figure`` out.

A selected head is named ``L{layer}H{head}`` in every title and hover, and drawn with the
same highlight colour in every panel.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp_app.analysis import METRICS, head_name
from interp_app.selection import Selection
from interp_app.view import View

HIGHLIGHT = "#e8590c"
MUTED = "#adb5bd"
BASE = "#4c6ef5"
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def _layout(fig: go.Figure, title: str, height: int = 300) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        font=FONT,
        plot_bgcolor="white",
        paper_bgcolor="white",
        uirevision="keep",
    )
    return fig


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


def message_figure(text: str, height: int = 200) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", height)


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
    fig = go.Figure()
    if len(t_steps):
        sm = smooth(t_loss, max(len(t_loss) // 200, 1))
        keep = np.unique(
            np.linspace(0, len(t_steps) - 1, min(max_points, len(t_steps))).astype(int)
        )
        fig.add_trace(
            go.Scatter(
                x=t_steps[keep],
                y=np.round(sm[keep], 4),
                name="train (smoothed)",
                mode="lines",
                line={"color": MUTED},
                hoverinfo="skip",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=v_steps,
            y=np.round(v_loss, 4),
            name="validation (checkpoints)",
            mode="lines+markers",
            marker={"size": 5, "color": BASE},
            line={"color": BASE},
            hovertemplate="step %{x}<br>validation loss %{y:.3f}<extra></extra>",
        )
    )
    fig.add_vline(x=step, line={"color": HIGHLIGHT, "width": 2})
    if bad_steps:
        fig.add_trace(
            go.Scatter(
                x=sorted(bad_steps),
                y=[0] * len(bad_steps),
                mode="markers",
                name="unreadable",
                marker={"symbol": "x", "color": "red", "size": 10},
            )
        )
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="loss", rangemode="tozero")
    fig.update_layout(legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right"})
    return _layout(fig, f"Loss — selected step {step} (click to pick a checkpoint)", 260)


def prediction_figure(view: View, sel: Selection) -> go.Figure:
    words = [view.vocab[i] for i in view.pred_ids][::-1]
    probs = view.pred_probs[::-1]
    colors = [HIGHLIGHT if w == sel.target else BASE for w in words]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=words,
            orientation="h",
            marker_color=colors,
            customdata=words,
            text=[f"{p:.1%}" for p in probs],
            textposition="auto",
            hovertemplate="%{y}: %{x:.2%}<extra>click: make target</extra>",
        )
    )
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    word = view.words[sel.pos] if sel.pos < len(view.words) else "?"
    return _layout(fig, f"Next token after {sel.pos}:{word!s} — target {sel.target!r}", 300)


def head_grid_figure(view: View, sel: Selection, metric: str) -> go.Figure:
    values = view.metrics[metric]
    n_layers, n_heads = values.shape
    names = [[head_name(layer, h) for h in range(n_heads)] for layer in range(n_layers)]
    diverging = metric == "dla"
    zmax = float(np.abs(values).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[f"H{h}" for h in range(n_heads)],
            y=[f"L{layer}" for layer in range(n_layers)],
            customdata=names,
            text=[
                [f"{n}<br>{v:.2f}" for n, v in zip(nr, row, strict=True)]
                for nr, row in zip(names, values, strict=True)
            ],
            texttemplate="%{text}",
            colorscale="RdBu" if diverging else "Blues",
            zmid=0 if diverging else None,
            zmin=None if diverging else 0,
            zmax=zmax if not diverging else None,
            hovertemplate="%{customdata}: %{z:.3f}<extra></extra>",
            colorbar={"thickness": 10},
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.add_shape(_frame(sel.head - 0.5, sel.head + 0.5, sel.layer - 0.5, sel.layer + 0.5))
    return _layout(fig, f"Heads: {METRICS[metric]} — selected {sel.head_name}", 300)


def attention_figure(view: View, sel: Selection) -> go.Figure:
    labels = position_labels(view.words)
    pattern = view.patterns[sel.layer, sel.head]
    masked = np.where(np.tril(np.ones_like(pattern)) > 0, pattern, np.nan)
    fig = go.Figure(
        go.Heatmap(
            z=masked,
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra>"
            + sel.head_name
            + "</extra>",
            colorbar={"thickness": 10},
        )
    )
    fig.update_yaxes(autorange="reversed", title="query")
    fig.update_xaxes(title="key", tickangle=-45)
    fig.add_shape(_frame(-0.5, len(labels) - 0.5, sel.pos - 0.5, sel.pos + 0.5))
    return _layout(fig, f"Attention pattern of {sel.head_name} (query row {sel.pos} framed)", 380)


def multiples_figure(view: View, sel: Selection) -> go.Figure:
    n_layers, n_heads = view.patterns.shape[:2]
    titles = [head_name(layer, h) for layer in range(n_layers) for h in range(n_heads)]
    fig = make_subplots(
        rows=n_layers,
        cols=n_heads,
        subplot_titles=titles,
        horizontal_spacing=0.06,
        vertical_spacing=0.12,
    )
    n = view.length
    tri = np.tril(np.ones((n, n))) > 0
    for layer in range(n_layers):
        for h in range(n_heads):
            name = head_name(layer, h)
            z = np.where(tri, view.patterns[layer, h], np.nan)
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    colorscale="Blues",
                    zmin=0,
                    zmax=1,
                    showscale=False,
                    name=name,
                    customdata=np.full((n, n), name),
                    hovertemplate=name + " q%{y} k%{x}: %{z:.2f}<extra></extra>",
                ),
                row=layer + 1,
                col=h + 1,
            )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    index = sel.layer * n_heads + sel.head + 1
    xd = fig.layout[f"xaxis{index if index > 1 else ''}"].domain
    yd = fig.layout[f"yaxis{index if index > 1 else ''}"].domain
    fig.add_shape(_frame(xd[0] - 0.01, xd[1] + 0.01, yd[0] - 0.02, yd[1] + 0.02, "paper", "paper"))
    for ann in fig.layout.annotations:
        if ann.text == sel.head_name:
            ann.font = {"color": HIGHLIGHT, "size": 13}
    return _layout(fig, f"Every head's pattern (selected {sel.head_name}; click to select)", 380)


def token_attribution_figure(view: View, sel: Selection) -> go.Figure:
    n = view.length
    weights = view.patterns[sel.layer, sel.head, sel.pos, :n]
    values = view.source_attr
    labels = position_labels(view.words)
    zmax = float(np.abs(values).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=[values],
            x=labels,
            y=[sel.head_name],
            text=[
                [
                    f"<b>{w}</b><br>{v:+.3f}<br>attn {a:.0%}"
                    for w, v, a in zip(view.words, values, weights, strict=True)
                ]
            ],
            customdata=[weights],
            texttemplate="%{text}",
            colorscale="RdBu",
            zmid=0,
            zmin=-zmax,
            zmax=zmax,
            colorbar={"thickness": 10},
            hovertemplate="%{x}<br>attribution %{z:.4f}<br>attention %{customdata:.3f}"
            "<extra>" + sel.head_name + "</extra>",
            xgap=2,
        )
    )
    total = float(values.sum())
    title = (
        f"Token attributions through {sel.head_name} to {sel.target!r} at {sel.pos}: "
        f"sum {total:.3f} (= {sel.head_name}'s bar)"
    )
    fig.update_xaxes(tickangle=-30)
    return _layout(fig, title, 200)


def residual_figure(view: View, sel: Selection) -> go.Figure:
    names = list(view.comp_names)
    colors = [
        HIGHLIGHT if name == sel.head_name else (BASE if kind == "head" else MUTED)
        for name, kind in zip(names, view.comp_kinds, strict=True)
    ]
    widths = [3 if name == sel.head_name else 0 for name in names]
    total = float(view.comp_attr.sum())
    fig = go.Figure(
        go.Bar(
            x=names,
            y=view.comp_attr,
            marker={"color": colors, "line": {"width": widths, "color": "black"}},
            customdata=names,
            hovertemplate="%{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line={"color": "#868e96", "width": 1})
    fig.update_xaxes(tickangle=-35)
    title = (
        f"Direct logit attribution to {sel.target!r} at {sel.pos} — sum {total:.4f}, "
        f"logit {view.logit:.4f} — selected {sel.head_name}"
    )
    return _layout(fig, title, 320)


def logit_lens_figure(view: View, sel: Selection) -> go.Figure:
    n_rows = view.lens_top.shape[0]
    rows = ["embeddings"] + [f"after L{i}" for i in range(n_rows - 1)]
    labels = position_labels(view.words)
    text = [[view.vocab[i] for i in row] for row in view.lens_top]
    fig = go.Figure(
        go.Heatmap(
            z=view.lens_prob,
            x=labels,
            y=rows,
            text=text,
            texttemplate="%{text}",
            colorscale="Greens",
            zmin=0,
            zmax=1,
            colorbar={"thickness": 10},
            hovertemplate="%{y}, %{x}<br>top: %{text} (%{z:.1%})<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-30)
    fig.add_shape(_frame(sel.pos - 0.5, sel.pos + 0.5, -0.5, n_rows - 0.5))
    return _layout(fig, "Logit lens: top token of each residual through the final LayerNorm", 260)
