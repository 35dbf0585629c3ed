"""The next-token prediction at the query position; a click makes a word the target."""

from __future__ import annotations

from typing import Any

from interp_app.core.causal import ablated_as
from interp_app.core.selection import Selection
from interp_app.panels.base import Context, Panel, Raw, on_click
from interp_app.panels.plotting import BASE, HIGHLIGHT, MUTED, Figure, figure
from interp_app.ui import ids
from interp_app.ui.components import column, graph

DEPENDS = frozenset({"run", "step", "prompt", "pos", "target", "ablate", "mode"})

FIGURE = (ids.PREDICTION, "figure")


def _before_ablation(view: Any, words: list[str]) -> dict:
    return {
        "type": "bar",
        "x": view.clean_probs[view.pred_ids][::-1],
        "y": words,
        "orientation": "h",
        "name": "before ablation",
        "marker": {"color": MUTED},
        "customdata": words,
        "hovertemplate": "%{y} before ablation: %{x:.2%}<extra></extra>",
    }


def prediction_figure(view: Any, sel: Selection) -> Figure:
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
        data.insert(0, _before_ablation(view, words))
        p_before = float(view.clean_probs[view.target_id])
        title = (
            f"P({sel.target!r}) {p_before:.0%} → {view.target_prob:.0%} with "
            f"{', '.join(sel.ablate)} {ablated_as(sel.mode)}"
        )
    return figure(
        data,
        title,
        300,
        xaxis={"range": [0, 1], "tickformat": ".0%"},
        barmode="group",
        legend={"orientation": "h", "y": -0.15},
    )


def click(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    target = point.get("customdata")
    return {**raw, "target": target} if isinstance(target, str) else None


def draw(ctx: Context) -> dict[Any, Figure]:
    return {FIGURE: prediction_figure(ctx.view, ctx.sel)}


PANEL = Panel(
    name="prediction",
    layout=lambda: column("Prediction", graph(ids.PREDICTION, 300), md=3),
    outputs=(FIGURE,),
    depends=DEPENDS,
    draw=draw,
    events={"click": on_click(click, ids.PREDICTION)},
)
