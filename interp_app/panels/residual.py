"""Direct logit attribution of every write to the residual stream; a bar click selects a head."""

from __future__ import annotations

from typing import Any

from interp_app.core.selection import Selection
from interp_app.panels.base import Context, Overlay, Panel, Raw, on_click
from interp_app.panels.plotting import BASE, HIGHLIGHT, MUTED, Figure, figure
from interp_app.ui import ids
from interp_app.ui.components import column, graph


def residual_figure(
    view: Any, sel: Selection, base: Any | None = None, base_step: int | None = None
) -> Figure:
    """Direct logit attributions; with ``base``, their change from ``base_step``."""
    names = list(view.comp_names)
    values = view.comp_attr - (base.comp_attr if base is not None else 0)
    colors, widths = bar_marks(view, sel)
    bar = {
        "type": "bar",
        "x": names,
        "y": values,
        "marker": {"color": colors, "line": {"width": widths, "color": "black"}},
        "customdata": names,
        "hovertemplate": "%{x}: %{y:.4f}<extra></extra>",
    }
    title = residual_title(view, sel, base, base_step)
    return figure([bar], title, 320, xaxis={"tickangle": -35})


def bar_marks(view: Any, sel: Selection) -> tuple[list[str], list[int]]:
    """Each bar's colour and outline width: the selected head's stands out."""
    names, kinds = view.comp_names, view.comp_kinds
    colors = [
        HIGHLIGHT if name == sel.head_name else (BASE if kind == "head" else MUTED)
        for name, kind in zip(names, kinds, strict=True)
    ]
    return colors, [3 if n == sel.head_name else 0 for n in names]


def residual_title(view: Any, sel: Selection, base: Any | None, base_step: int | None) -> str:
    if base is not None:
        return (
            f"Change in direct logit attribution to {sel.target!r} at {sel.pos}, "
            f"step {base_step} → {sel.step} (logit {base.logit:.3f} → {view.logit:.3f}) — "
            f"selected {sel.head_name}"
        )
    return (
        f"Direct logit attribution to {sel.target!r} at {sel.pos} — "
        f"sum {float(view.comp_attr.sum()):.4f}, logit {view.logit:.4f} — "
        f"selected {sel.head_name}"
    )


def _base(ctx: Context) -> tuple[Any | None, int | None]:
    compare = ctx.options["compare"]
    base = ctx.view_at(compare) if compare is not None and compare != ctx.sel.step else None
    return base, (compare if base is not None else None)


def draw(ctx: Context) -> dict[Any, Figure]:
    return {PANEL.figure: residual_figure(ctx.view, ctx.sel, *_base(ctx))}


def overlay(ctx: Context) -> Overlay:
    """Another head: the bars' colours and outlines and the title (the values stay)."""
    colors, widths = bar_marks(ctx.view, ctx.sel)
    sets = (
        (("data", 0, "marker", "color"), colors),
        (("data", 0, "marker", "line", "width"), widths),
    )
    return Overlay(residual_title(ctx.view, ctx.sel, *_base(ctx)), [], sets)


def click_head(point: dict[str, Any], raw: Raw, steps: list[int]) -> Raw | None:
    """A bar (or multiple) named like a head selects it; other components do nothing."""
    name = point.get("customdata")
    if not isinstance(name, str) or not name.startswith("L") or " " in name:
        return None
    return {**raw, "head": name}


PANEL = Panel(
    name="residual",
    layout=lambda: column(
        "Residual-stream contributions", graph(ids.RESIDUAL_CONTRIBUTIONS, 320), md=7
    ),
    outputs=((ids.RESIDUAL_CONTRIBUTIONS, "figure"),),
    depends=frozenset(
        {"run", "step", "prompt", "pos", "target", "ablate", "mode"} | {"compare", "listing"}
    ),
    draw=draw,
    overlay=overlay,
    overlay_on=frozenset({"layer", "head"}),
    events={"click": on_click(click_head, ids.RESIDUAL_CONTRIBUTIONS)},
)
