"""One interaction, one round trip: the event that fired becomes a selection (``select``)
and the panels that depend on what changed are drawn from it (``render``) in the same
callback, instead of a second request chained on the selection store."""

from __future__ import annotations

from typing import Any

from dash import no_update

from interp_app.core.selection import Selection
from interp_app.panels.base import Slot
from interp_app.ui import ids
from interp_app.ui.render import OPTIONS, Renderer
from interp_app.ui.select import EVENTS, select

SELECTING = {ids.URL, *(e.component for e in EVENTS.values() if isinstance(e.component, str))}
PATTERNS = {e.component["type"] for e in EVENTS.values() if isinstance(e.component, dict)}
OPTION_IDS = {option.slot[0] for option in OPTIONS.values()}


def is_selecting(trigger: Any) -> bool:
    """A page load, the URL, or an event of a panel (not a view option or the live poll)."""
    if isinstance(trigger, dict):  # a pattern-matching id, such as a token chip's
        return trigger.get("type") in PATTERNS
    return trigger is None or trigger in SELECTING


def update(
    renderer: Renderer,
    trigger: Any,
    value: Any,
    search: Any,
    current: Any,
    options: dict[str, Any],
    rendered: Any,
) -> dict[Slot, Any]:
    """Every output of the page's main callback that changes (missing ones: no update)."""
    if not is_selecting(trigger):  # a view option or the poll: the same selection, redrawn
        if Selection.parse(current) is not None:
            return renderer(current, options, rendered)
        # no selection yet (the page's first request was superseded by this one, or there
        # were no runs when it came): make it from the URL, as a page load does
        trigger, value = None, None
    chosen = select(renderer.analyzer, trigger, value, search, current)
    out: dict[Slot, Any] = {}
    if chosen["search"] is not no_update:
        out[(ids.URL, "search")] = chosen["search"]
    if chosen["selection"] is not no_update:
        out[(ids.SELECTION, "data")] = chosen["selection"]
        sel = Selection.parse(chosen["selection"])  # just resolved here: no need to again
        if sel is None:
            out.update(renderer(None, options, rendered))
        else:
            out.update(renderer.draw(sel, options, rendered, []))
    said = chosen["notices"]
    if said is not no_update:
        out[(ids.NOTICES, "children")] = [*said, *out.get((ids.NOTICES, "children"), [])]
    return out
