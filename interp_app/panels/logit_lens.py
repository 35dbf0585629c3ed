"""The logit lens: every residual read through the final LayerNorm and the unembedding.

Drawn from ``Context.lens``, computed only when this panel draws (it sits at the bottom of
the page: off screen on a first paint, it is drawn when scrolled to)."""

from __future__ import annotations

from typing import Any

from interp_app.core.selection import Selection
from interp_app.panels.base import Context, Panel
from interp_app.panels.plotting import Figure, figure, frame, position_labels, scale
from interp_app.ui import ids
from interp_app.ui.components import column, graph

FIGURE = (ids.LOGIT_LENS, "figure")


def logit_lens_figure(lens: Any, sel: Selection) -> Figure:
    """The lens (``lens.Lens``) at the positions it read: the whole prompt, or the
    ``LENS_POSITIONS`` ending at the query (the title says which)."""
    n_rows, width = lens.top.shape
    start = lens.start
    labels = position_labels(lens.words)[start : start + width]
    title = "Logit lens: top token of each residual through the final LayerNorm"
    if width < lens.length:
        title += f" (positions {start}–{start + width - 1} of {lens.length}, up to the query)"
    heat = {
        "type": "heatmap",
        "z": lens.prob,
        "x": labels,
        "y": ["embeddings"] + [f"after L{i}" for i in range(n_rows - 1)],
        "text": [list(row) for row in lens.top_words],
        "texttemplate": "%{text}",
        "colorscale": scale("Greens"),
        "zmin": 0,
        "zmax": 1,
        "colorbar": {"thickness": 10},
        "hovertemplate": "%{y}, %{x}<br>top: %{text} (%{z:.1%})<extra></extra>",
        "xgap": 2,
        "ygap": 2,
    }
    x = sel.pos - start  # the window ends at the query
    return figure(
        [heat],
        title,
        260,
        shapes=[frame(x - 0.5, x + 0.5, -0.5, n_rows - 0.5)],
        yaxis={"autorange": "reversed"},
        xaxis={"tickangle": -30},
    )


def draw(ctx: Context) -> dict[Any, Figure]:
    return {FIGURE: logit_lens_figure(ctx.lens, ctx.sel)}


PANEL = Panel(
    name="logit_lens",
    layout=lambda: column("Logit lens", graph(ids.LOGIT_LENS, 260), md=5),
    outputs=(FIGURE,),
    depends=frozenset({"run", "step", "prompt", "pos", "ablate", "mode"}),
    draw=draw,
)
