"""The one ``select`` callback: whichever control fired becomes a new selection.

Each registered panel names its events (``Panel.events``); this module finds the one that
fired, lets it edit the raw selection, resolves that (bad values fall back, with notices)
and mirrors it into the URL.
"""

from __future__ import annotations

import json
from typing import Any

from dash import Input, no_update

from interp_app.core.selection import Selection, parse_query
from interp_app.core.view import resolve
from interp_app.panels import REGISTRY
from interp_app.panels.base import Event, Raw
from interp_app.ui import ids
from interp_app.ui.components import notices
from training.checkpoint import CheckpointError

EVENTS: dict[str, Event] = {
    f"{panel.name}_{name}": event for panel in REGISTRY for name, event in panel.events.items()
}


def event_inputs() -> dict[str, Input]:
    return {name: Input(e.component, e.prop) for name, e in EVENTS.items()}


def raw_of(sel: Any) -> Raw:
    """A stored selection as raw URL-like values; {} when it is not a whole selection."""
    s = Selection.parse(sel)
    if s is None:
        return {}
    # the mode too: the URL leaves it out while nothing is ablated, a picked mode is kept
    return {**parse_query(s.to_query()), "step": s.step, "pos": s.pos, "ablate_mode": s.mode}


def event_for(trigger: Any) -> Event | None:
    """The registered event a trigger id belongs to (pattern ids match on their type)."""
    for event in EVENTS.values():
        if event.component == trigger:
            return event
        pattern = isinstance(trigger, dict) and isinstance(event.component, dict)
        if pattern and event.component.get("type") == trigger.get("type"):
            return event
    return None


def event_to_raw(trigger: Any, value: Any, current: Any, analyzer: Any) -> Raw | None:
    """The raw selection an event asks for, or None when the event changes nothing (or is
    not an event any control of this page can send)."""
    event = event_for(trigger)
    raw = raw_of(current)
    if event is None or (event.needs_selection and not raw):
        return None
    try:
        steps = analyzer.store.steps(raw["run"]) if raw else []
    except CheckpointError:  # a forged stored selection naming no run of this root
        return None
    return event.handle(trigger, value, raw, steps)


def recheck(analyzer: Any, data: Any) -> tuple[Selection | None, list[str]]:
    """The selection store is client data: resolve it again, as a URL would be, and report
    what had to be replaced (nothing, for a selection this server wrote)."""
    try:
        sel, notes = resolve(analyzer, raw_of(data))
    except CheckpointError as err:
        return None, [str(err)]
    if sel is None:
        return None, notes or [f"No runs in {analyzer.store.root}"]
    same = json.loads(json.dumps(sel.to_dict())) == data  # as the browser stores it
    return sel, ([] if same else notes or ["the selection was replaced"])


def select(analyzer: Any, trigger: Any, value: Any, search: Any, current: Any) -> dict[str, Any]:
    """New (selection, URL search, notices); ``no_update`` where nothing changes."""
    nothing = {"selection": no_update, "search": no_update, "notices": no_update}
    known = Selection.parse(current)
    search = search if isinstance(search, str) else ""
    raw: Raw | None
    page_load = trigger is None or trigger == ids.URL
    if page_load or known is None:
        if known is not None and search == known.to_query():
            return nothing
        raw = parse_query(search)
    else:
        if isinstance(trigger, dict) and not value:
            return nothing  # chips re-rendered, not clicked
        raw = event_to_raw(trigger, value, current, analyzer)
        if raw is None:
            return nothing
    try:
        sel, notes = resolve(analyzer, raw)
    except CheckpointError as err:
        return {**nothing, "notices": notices([str(err)])}
    store = analyzer.store
    if page_load:  # a page (re)load: say what cannot be read
        notes = [*store.problems(), *notes]
    if sel is None:
        msg = notes or [f"No runs in {store.root}. Train one: interp-train --root {store.root}"]
        return {**nothing, "selection": None, "notices": notices(msg)}
    data = sel.to_dict()
    if data == current and trigger != ids.URL:
        return {**nothing, "notices": notices(notes) if notes else no_update}
    query = sel.to_query()
    return {
        "selection": data,
        "search": query if query != search else no_update,
        "notices": notices(notes),
    }
