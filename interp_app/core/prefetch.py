"""The checkpoints next to the one on screen, computed before they are asked for.

Scrubbing the step slider or pressing play moves one checkpoint at a time; while the user
looks at a step, one background thread reads the parameters of the steps on either side and
computes their views (through the same cached ``compute_view`` a request uses), so the next
step change finds them ready. Only the latest request counts: a newer one replaces a queued
one, and a prefetch in progress stops between steps when the selection moved on.

The views do not hold the logit lens (``compute_lens``: every layer boundary's residuals
through the whole unembedding, ~0.4 s a step at the GPT-2-small shape, for a panel mostly
off screen): it is prefetched too only when asked (``lens=True``: the page says so while the
lens panel is on screen), else a step change computes it if and when that panel draws.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from interp_app.core.selection import Selection
from training.checkpoint import CheckpointError


def neighbours(steps: list[int], step: int, reach: int = 1, back: bool = False) -> list[int]:
    """The steps within ``reach`` of ``step``, the next ones first (play moves forward), the
    earlier ones first when the user is moving back (``back``)."""
    if step not in steps:
        return []
    i = steps.index(step)
    out: list[int] = []
    for d in range(1, reach + 1):
        order = (i - d, i + d) if back else (i + d, i - d)
        out += [steps[j] for j in order if 0 <= j < len(steps)]
    return out


# Seconds between an answer and its neighbours' passes: on two cores a pass started at once
# competes with the browser parsing and painting that answer.
PAUSE_S = 0.3


class Prefetcher:
    """One daemon thread computing neighbours' views for the latest selection shown."""

    def __init__(self, analyzer: Any, reach: int = 1, pause: float = PAUSE_S):
        self.analyzer = analyzer
        self.reach = reach
        self.pause = pause
        self._wanted: tuple[Selection, list[int], bool, dict[str, Any]] | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.done: list[tuple[str, int]] = []  # (run, step) computed, most recent last
        self._last: tuple[str, int] | None = None  # the selection's last (run, step)

    def around(
        self, sel: Selection, steps: list[int], lens: bool = False, **view_options: Any
    ) -> None:
        """Prefetch the views of ``sel`` at the steps next to its own (and their logit lens
        when ``lens``: while its panel is on screen)."""
        back = self._last is not None and self._last[0] == sel.run and sel.step < self._last[1]
        self._last = (sel.run, sel.step)
        with self._cond:
            self._wanted = (sel, neighbours(steps, sel.step, self.reach, back), lens, view_options)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="prefetch", daemon=True)
                self._thread.start()
            self._cond.notify()

    def idle(self, timeout: float = 60.0) -> bool:
        """Wait until nothing is queued or running (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._wanted is None and not self._busy, timeout)

    _busy = False

    def _loop(self) -> None:
        from interp_app.core.view import compute_lens, compute_view

        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted is not None)
                self._busy = True
            time.sleep(self.pause)  # the browser paints the answer first (a newer one wins)
            with self._cond:
                assert self._wanted is not None
                sel, steps, lens, options = self._wanted
                self._wanted = None
            for step in steps:
                with self._cond:
                    if self._wanted is not None:  # the user moved on: start from there
                        break
                try:
                    compute_view(self.analyzer, sel.with_(step=step), **options)
                    if lens:
                        compute_lens(self.analyzer, sel.with_(step=step))
                    self.done.append((sel.run, step))
                    del self.done[:-16]
                except (CheckpointError, ValueError, OSError, KeyError):
                    continue  # an unreadable step: the request for it will say so
            with self._cond:
                self._busy = False
                self._cond.notify_all()
