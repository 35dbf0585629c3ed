"""The one ``render`` callback: a selection in, every panel that changed out.

What each panel last drew is remembered in the browser (the ``rendered`` store) as short
fingerprints of the selection fields it depends on, so a panel is drawn again only when
one of its own fields changed, and a panel with an overlay only moves its marks when only
its overlay's fields did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from dash import Patch, ctx

from interp_app.core.heads import architecture_notes
from interp_app.core.prefetch import Prefetcher
from interp_app.core.selection import Selection
from interp_app.panels import REGISTRY
from interp_app.panels.base import Context, Option, Overlay, Panel, Slot
from interp_app.panels.plotting import message_figure
from interp_app.ui import ids
from interp_app.ui.components import notices
from training.checkpoint import CheckpointError

OUTPUTS: tuple[Slot, ...] = (
    *dict.fromkeys(s for p in REGISTRY for s in p.outputs),
    (ids.LISTING, "data"),
)


def clean_hidden(value: Any, context: int, steps: list[int]) -> list[str]:
    """The ids of the figures the browser said are off screen (anything else: none)."""
    if not isinstance(value, list):
        return []
    return sorted({v for v in value if isinstance(v, str)})


# What is off screen is drawn when scrolled to, not on every click: the browser's list of
# hidden figures is a view option of the page's (it never changes what is selected).
HIDDEN = Option((ids.PANELS_HIDDEN, "data"), clean_hidden)
OPTIONS = {
    **{name: option for p in REGISTRY for name, option in p.options.items()},
    "hidden": HIDDEN,
}


def fingerprint(values: Iterable[Any]) -> str:
    """A short digest of JSON-able values: what the browser keeps per field and panel."""
    text = json.dumps(list(values), sort_keys=True, default=str)
    return hashlib.blake2s(text.encode(), digest_size=6).hexdigest()


def clean_options(raw: dict[str, Any], context: int, steps: list[int]) -> dict[str, Any]:
    """Every panel's view option, valid whatever the browser sent (missing ones: defaults)."""
    return {name: o.clean(raw.get(name), context, steps) for name, o in OPTIONS.items()}


def listing_of(steps: list[int], bad: set[int]) -> list:
    """The listing field: what the slider, the loss curve and the timelines show of a run."""
    return [steps[-1] if steps else None, len(steps), sorted(bad)]


def fields(sel: Selection, options: dict[str, Any], runs: list[str], steps: list[int], bad):
    """Every field a panel can depend on: the selection, the view options, the listing."""
    return {**sel.to_dict(), **options, "runs": runs, "listing": listing_of(steps, bad)}


FIELDS = {"runs", "listing", *OPTIONS, *Selection.__dataclass_fields__}
for _panel in REGISTRY:  # a misspelt field would be fingerprinted as None: never redrawn
    assert _panel.depends | _panel.overlay_on <= FIELDS, (_panel.name, _panel.depends - FIELDS)


def listing_print(runs: list[str], steps: list[int]) -> str:
    """What the live poll compares: the runs and the selected run's steps on disk."""
    return fingerprint([runs, steps])


def as_patch(overlay: Overlay) -> Patch | None:
    """Move a figure's marks without resending its data (None: it has none to move)."""
    if overlay.title is None and overlay.shapes is None and not overlay.sets:
        return None
    p = Patch()
    if overlay.title is not None:
        p["layout"]["title"]["text"] = overlay.title
    if overlay.shapes is not None:
        p["layout"]["shapes"] = overlay.shapes
    for path, value in overlay.sets:
        node = p
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return p


def update_panel(panel: Panel, context: Context, prints: dict[str, str], before: list | None):
    """(values for the panel's outputs, what to remember) for one panel. A panel whose
    figure is off screen keeps what it remembers: it is drawn (or its marks moved) once
    scrolled to, for the selection then."""
    if panel.outputs and panel.figure[0] in context.options.get("hidden", ()):
        return {}, before
    depends = fingerprint(prints.get(k) for k in sorted(panel.depends))
    marks = fingerprint(prints.get(k) for k in sorted(panel.depends | panel.overlay_on))
    if not before or before[0] != depends:
        if not before:  # not drawn, or its last drawing failed: every output, not the changed
            context = replace(context, changed=set(prints))
        drawn = panel.draw(context)
        return drawn, ([depends, marks] if drawn else None)
    if panel.overlay is not None and before[1] != marks:
        overlay = panel.overlay(context)
        if overlay is None:
            return {}, None
        patch = as_patch(overlay)
        figure = {} if patch is None else {panel.figure: patch}
        return {**overlay.extra, **figure}, [depends, marks]
    return {}, before


class Renderer:
    """Draws the registered panels for the page's ``render`` callback.

    ``unreadable``: per run, the steps this process found it cannot read (marked on the
    slider and the loss curve until the run is listed again under a new generation)."""

    def __init__(self, analyzer: Any, prefetch: bool = True):
        self.analyzer = analyzer
        self.unreadable: dict[tuple, set[int]] = {}
        self.prefetcher = Prefetcher(analyzer) if prefetch else None

    def __call__(self, data: Any, options: dict[str, Any], rendered: Any) -> dict[Slot, Any]:
        from interp_app.ui.select import recheck

        if not data:
            empty = message_figure(f"No runs in {self.analyzer.store.root}")
            return {**self._figures(empty), (ids.RENDERED, "data"): {}}
        sel, notes = recheck(self.analyzer, data)
        if sel is None:
            out = self._figures(message_figure("Nothing to show"))
            return {**out, (ids.NOTICES, "children"): notices(notes)}
        return self.draw(sel, options, rendered, notes)

    def _figures(self, figure: dict) -> dict[Slot, Any]:
        """Every panel's figure replaced by ``figure`` (a message), marks over them cleared."""
        out: dict[Slot, Any] = {}
        for p in REGISTRY:
            if p.outputs and p.figure[1] == "figure":
                out.update({p.figure: figure, **p.cleared})
        return out

    def draw(self, sel: Selection, raw_options: dict, rendered: Any, notes: list[str]):
        store = self.analyzer.store
        rendered = rendered if isinstance(rendered, dict) else {}
        steps = store.steps(sel.run)
        bad = self.unreadable.setdefault(store.generation(sel.run), set())
        context_len = store.info(sel.run).model.context
        options = clean_options(raw_options, context_len, steps)
        runs = store.runs()
        now = fields(sel, options, runs, steps, bad)
        prints = {k: fingerprint([v]) for k, v in now.items()}
        known = rendered.get("fields", {})
        changed = {k for k, v in prints.items() if known.get(k) != v}
        if ctx.triggered_id == ids.LISTING and not changed:
            return {}  # nothing new on disk: the cheap, common case
        context = Context(self.analyzer, sel, steps, bad, options, changed)
        try:
            context.view  # noqa: B018 - read once here: a step that cannot be read shows so
            failed = None
        except CheckpointError as err:
            failed = err
            bad.add(sel.step)
            prints["listing"] = fingerprint([listing_of(steps, bad)])
            context.changed.add("listing")
        out, panels = self._each(context, prints, rendered.get("panels", {}), failed)
        if ctx.triggered_id == ids.PANELS_HIDDEN and not out:
            return {}  # scrolled, and nothing that came into view was stale
        out[(ids.RENDERED, "data")] = {"fields": prints, "panels": panels}
        out[(ids.LISTING, "data")] = listing_print(runs, steps)  # what this drawing read
        messages = [*notes, *context.notes]
        if "run" in context.changed:  # once per run: what its views cannot show
            messages += architecture_notes(context.model)
        if failed is not None:
            messages.append(f"step {sel.step} is unreadable ({failed}); other steps still work")
        if messages:
            out[(ids.NOTICES, "children")] = notices(messages)
        if self.prefetcher is not None and failed is None:  # the slider's next move, ready
            view_options = {"src": options["src"], "ablation": context.ablation}
            lens = ids.LOGIT_LENS not in options.get("hidden", ())  # its panel on screen: lens too
            self.prefetcher.around(
                sel, [s for s in steps if s not in bad], lens=lens, **view_options
            )
        return out

    def _each(self, context: Context, prints: dict, before: dict, failed: Exception | None):
        out: dict[Slot, Any] = {}
        remembered: dict[str, list] = {}
        for panel in REGISTRY:
            if failed is not None and panel.needs_view:
                if panel.outputs and panel.figure[1] == "figure":
                    text = f"Step {context.sel.step} cannot be read: {failed}"
                    out.update({panel.figure: message_figure(text), **panel.cleared})
                continue
            values, memory = update_panel(panel, context, prints, before.get(panel.name))
            out.update(values)
            if memory:
                remembered[panel.name] = memory
        return out, remembered
