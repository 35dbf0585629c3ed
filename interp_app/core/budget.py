"""One memory budget per worker (``--cache-mb``), split between the things it caches.

A worker keeps four kinds of results, each in its own least-recently-used cache bounded in
bytes: the parameters of recent steps (the store), the captured forward passes, the results
derived from them (views, patching) and, for runs small enough, every step's
parameters stacked for the all-step timelines. They are split by fixed shares of one number,
so a user reasons about one figure: a worker holds at most ``--cache-mb`` of cached arrays,
plus what it computes at the moment (a request's pass and metrics, a prefetch beside it) and
the runtime itself (Python, JAX, compiled programs: about 400 MB).

Parameters get half: a step no longer cached is a mapped file again (the page cache keeps
it; measured on GPT-2-small under load, 10-50 ms to open and check plus 0.05-0.4 s of page
faults in the next pass), while a lost capture costs a forward pass (~1 s there) and a lost
view its metrics too, so those keep their own shares and a run with large steps never
pushes them out. The default, 768 MB, keeps the Pythia-70m shape's worker under 1.5 GB
(in process, the scale bench's scenario: 1.21-1.25 GB; 1.36-1.50 GB at 1024); its 384 MB
for parameters hold every step of a small model and one step of that shape (the prefetched
neighbours are mapped while computed and their views kept: what a step change reads). A
GPT-2-small step (475 MB) needs 1024 to stay cached: without, each use maps it again
(~50 ms more per new prompt, the same peak: the step is mapped while it is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

MB = 1024 * 1024
DEFAULT_MB = 768

#: Fractions of the budget, in the order they are filled; ``derived`` takes the rest.
SHARES = {"params": 1 / 2, "captures": 1 / 4, "derived": 1 / 8, "stacks": 1 / 8}


@dataclass(frozen=True)
class CacheBudget:
    """Bytes each cache may hold; they add up to ``total``.

    ``params``: parameters of recent steps as stored (float16 stays float16), with the
    float32 copy the passes read when it is a copy (a float32 step shares its memory);
    ``captures``: captured forward passes (a GPT-2-small one of 128 tokens: ~112 MB);
    ``derived``: views, patching and other results derived from captures (a query's
    all-step timeline, a few numbers per step, is kept by count beside them);
    ``stacks``: a run's steps stacked in float32 for the timelines (kept only when a whole
    run fits: small models)."""

    params: int
    captures: int
    derived: int
    stacks: int

    @property
    def total(self) -> int:
        return self.params + self.captures + self.derived + self.stacks


def split_budget(total_bytes: int) -> CacheBudget:
    """``total_bytes`` split by :data:`SHARES` (whole bytes, adding up exactly)."""
    total = max(0, int(total_bytes))
    params = int(total * SHARES["params"])
    captures = int(total * SHARES["captures"])
    stacks = int(total * SHARES["stacks"])
    return CacheBudget(params, captures, total - params - captures - stacks, stacks)


_SCALARS = (str, bytes, int, float, complex, type(None))


def _owner(array: np.ndarray) -> np.ndarray:
    """The array whose memory ``array`` views (itself when it owns its memory or views a
    file mapping or bytes: then its own extent is what it keeps)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def held_arrays(value: Any) -> dict[int, int]:
    """Memory a value keeps alive: id -> bytes of each distinct buffer among its arrays.

    A view counts the whole array it slices (it keeps that alive), and two leaves on one
    buffer count once: a float32 step's state is its stored arrays, a view shares a capture's
    patterns. Walks dataclasses (captures, views) and pytrees (dicts, tuples, states)."""
    out: dict[int, int] = {}
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            owner = _owner(item)
            out[id(owner)] = int(owner.nbytes)
        elif isinstance(item, _SCALARS):
            continue
        elif isinstance(item, (list, tuple)):  # a vocabulary is 50k strings: skip them fast
            stack.extend(x for x in item if not isinstance(x, _SCALARS))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif hasattr(item, "__dataclass_fields__") and not isinstance(item, type):
            stack.extend(getattr(item, f) for f in item.__dataclass_fields__)
        elif hasattr(item, "nbytes") and hasattr(item, "dtype"):  # a JAX array
            out[id(item)] = int(item.nbytes)
        else:  # another pytree (a model state), or an opaque leaf
            leaves = jax.tree.leaves(item)
            if not (len(leaves) == 1 and leaves[0] is item):
                stack.extend(leaves)
    return out


def held_bytes(value: Any) -> int:
    """Bytes of memory ``value`` keeps alive (:func:`held_arrays`, summed)."""
    return sum(held_arrays(value).values())
