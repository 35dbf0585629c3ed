"""What a panel is: the contract between a panel module and the page's two callbacks.

A panel names the component properties it writes, the selection fields it depends on,
how to draw them (and, optionally, a cheaper overlay when only some fields changed), and
the events it sends (a click on its figure, its own controls). ``ui`` loops over the
registry (``interp_app.panels.REGISTRY``); nothing else knows a panel's details.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from interp_app.core.selection import Selection, as_int

Slot = tuple[Any, str]  # (component id, property)
Raw = dict[str, Any]  # a raw selection, as a URL would give it
Figure = dict[str, Any]  # a Plotly figure spec


@dataclass(frozen=True)
class Overlay:
    """A figure's title and shapes: all a step or head change alters in some panels, sent
    as a ``dash.Patch`` instead of the whole figure. ``sets``: other properties of the
    figure to set, as (path, value) (a path is keys and indexes: ``("data", 0, "marker",
    "color")``); ``extra``: values of the panel's other outputs. With no title, shapes or
    sets the figure is not touched at all (Plotly re-draws a figure of many subplots on
    any change: 150-250 ms for 16 multiples), only ``extra`` is sent."""

    title: str | None
    shapes: list[dict] | None
    sets: tuple[tuple[tuple[Any, ...], Any], ...] = ()
    extra: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One input of the ``select`` callback and what it does to the raw selection.

    ``handle(trigger, value, raw, steps)`` returns the new raw selection, or None when the
    event changes nothing. ``needs_selection``: the event edits a selection the server
    already made (every one but the run, step, prompt and token choices).
    """

    component: Any
    prop: str
    handle: Callable[[Any, Any, Raw, list[int]], Raw | None]
    needs_selection: bool = True


@dataclass(frozen=True)
class Option:
    """A control of a panel that changes how it draws, not what is selected (so it is not
    in the URL): ``clean(value, context, steps)`` gives a valid value for any input."""

    slot: Slot
    clean: Callable[[Any, int, list[int]], Any]


def one_of(allowed: Any, default: str) -> Callable[[Any, int, list[int]], str]:
    """An ``Option.clean`` for a pick among named choices (anything else: the default)."""

    def clean(value: Any, context: int, steps: list[int]) -> str:
        return value if isinstance(value, str) and value in allowed else default

    return clean


@dataclass(frozen=True)
class ClientHop:
    """A clientside callback (``assets/*.js``) from one property to another."""

    function: str
    output: Slot
    input: Slot


@dataclass(frozen=True)
class Panel:
    """One panel of the page.

    ``draw(ctx)`` gives values for (some of) ``outputs``; it runs when a field in
    ``depends`` changed. Otherwise, when a field in ``overlay_on`` changed, ``overlay(ctx)``
    moves the marks of the figure at ``outputs[0]``. ``needs_view``: drawn from the
    selected step's capture (replaced by a message when that step cannot be read).
    """

    name: str
    layout: Callable[[], Any]
    outputs: tuple[Slot, ...]
    depends: frozenset[str]
    draw: Callable[[Context], dict[Slot, Any]]
    overlay: Callable[[Context], Overlay | None] | None = None
    overlay_on: frozenset[str] = frozenset()
    events: dict[str, Event] = field(default_factory=dict)
    options: dict[str, Option] = field(default_factory=dict)  # render inputs it owns
    clientside: tuple[ClientHop, ...] = ()
    needs_view: bool = True
    placeholders: Callable[[], list[Any]] | None = None  # ids the page only has once drawn
    cleared: dict[Slot, Any] = field(default_factory=dict)  # its other outputs under a message

    @property
    def figure(self) -> Slot:
        return self.outputs[0]


def first_point(click: Any) -> dict[str, Any] | None:
    """The first clicked point of a Plotly click event, if the event is one."""
    points = click.get("points") if isinstance(click, dict) else None
    if isinstance(points, list) and points and isinstance(points[0], dict):
        return points[0]
    return None


def on_click(
    handle: Callable[[dict[str, Any], Raw, list[int]], Raw | None], component: Any
) -> Event:
    """The event of a click on a figure: ``handle(point, raw, steps)`` for its first point."""

    def event(trigger: Any, value: Any, raw: Raw, steps: list[int]) -> Raw | None:
        point = first_point(value)
        return None if point is None else handle(point, raw, steps)

    return Event(component, "clickData", event)


def nearest_step(steps: list[int], index: Any) -> int | None:
    """The checkpoint at a slider or heatmap index (an index, not a step number)."""
    i = as_int(index)
    return steps[i] if i is not None and 0 <= i < len(steps) else None


def toggled(raw: Raw, name: str) -> Raw:
    """The raw selection with one head added to or removed from the ablated set."""
    names = set(filter(None, raw.get("ablate", "").split(","))) ^ {name}
    return {**raw, "ablate": ",".join(sorted(names)), "ablate_mode": raw.get("ablate_mode")}


@dataclass
class Context:
    """What a panel draws from: the selection, the page's view options and, computed once
    and only when a panel asks, the selected step's view, its logit lens and the run's
    timeline."""

    analyzer: Any
    sel: Selection
    steps: list[int]
    unreadable: set[int]  # steps of this run that could not be read
    options: dict[str, Any]  # every panel's Option by name, validated (metric, src, ...)
    changed: set[str]
    notes: list[str] = field(default_factory=list)  # notices to add to the page

    @cached_property
    def view(self) -> Any:
        from interp_app.core.view import compute_view

        return compute_view(
            self.analyzer, self.sel, src=self.options["src"], ablation=self.ablation
        )

    @cached_property
    def lens(self) -> Any:
        """The selection's logit lens (``lens.compute_lens``): apart from the view, as its
        product through the whole unembedding is for one panel, drawn once on screen."""
        from interp_app.core.view import compute_lens

        return compute_lens(self.analyzer, self.sel)

    @property
    def ablation(self) -> bool:
        """Whether the views need the ``ablation`` head metric (a pass per head): only while
        the head grid shows it."""
        return self.options.get("metric") == "ablation"

    def view_at(self, step: int) -> Any | None:
        """The view of the same selection at another step (None: that step is unreadable)."""
        from interp_app.core.view import compute_view
        from training.checkpoint import CheckpointError

        try:
            return compute_view(
                self.analyzer,
                self.sel.with_(step=step),
                src=self.options["src"],
                ablation=self.ablation,
            )
        except CheckpointError:
            self.unreadable.add(step)
            return None

    @cached_property
    def timeline(self) -> tuple[list[int], dict[str, Any]]:
        """(steps, metric name -> [S, ...]) over every readable step."""
        from interp_app.core.view import compute_timeline

        steps, values, bad = compute_timeline(self.analyzer, self.sel, self.options["src"])
        self.unreadable.update(bad)
        return steps, values

    @property
    def model(self) -> Any:
        return self.analyzer.store.info(self.sel.run).model
