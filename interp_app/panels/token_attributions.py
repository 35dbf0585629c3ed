"""How much each source token adds to the target's logit through the selected head."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp_app.core.causal import ablated_as
from interp_app.core.selection import Selection
from interp_app.panels.base import Context, Panel
from interp_app.panels.plotting import Figure, figure, position_labels, scale
from interp_app.ui import ids
from interp_app.ui.components import column, graph

FIGURE = (ids.TOKEN_ATTRIBUTIONS, "figure")
TEXT_TOKENS = 24  # cells labelled up to this many tokens


def token_attribution_figure(view: Any, sel: Selection) -> Figure:
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
        "customdata": [weights],
        "colorscale": scale("RdBu"),
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
    if n <= TEXT_TOKENS:  # a longer prompt's cells are too narrow for text: hover says it
        heat.update(text=[text], texttemplate="%{text}")
    return figure([heat], title, 200, xaxis={"tickangle": -30})


def draw(ctx: Context) -> dict[Any, Figure]:
    return {FIGURE: token_attribution_figure(ctx.view, ctx.sel)}


PANEL = Panel(
    name="token_attributions",
    layout=lambda: column("Token attributions", graph(ids.TOKEN_ATTRIBUTIONS, 200)),
    outputs=(FIGURE,),
    depends=frozenset(
        {"run", "step", "prompt", "pos", "target", "ablate", "mode", "layer", "head"}
    ),
    draw=draw,
)
