"""One memory budget per worker (``--cache-mb``): how it is split, how bytes are counted, and
a served app's caches staying within it on a real run."""

from __future__ import annotations

import numpy as np
import pytest

from interp_app.core.budget import (
    DEFAULT_MB,
    MB,
    CacheBudget,
    held_arrays,
    held_bytes,
    split_budget,
)
from interp_app.core.store import LRU, RunStore
from interp_app.server.app import create_app
from interp_app.server.settings import HELP, Settings
from tests.dash_client import DashClient
from tests.external_runs import CONFIG
from training.model.params import abstract_model, unflatten_params


def test_the_budget_is_split_in_fixed_shares_that_add_up():
    assert split_budget(1024 * MB) == CacheBudget(512 * MB, 256 * MB, 128 * MB, 128 * MB)
    assert split_budget(1024 * MB).total == 1024 * MB
    odd = split_budget(1001)  # whole bytes; the derived share takes the rounding
    assert odd == CacheBudget(500, 250, 126, 125) and odd.total == 1001
    assert split_budget(0) == CacheBudget(0, 0, 0, 0)
    assert Settings().cache_mb == DEFAULT_MB and RunStore(".").budget == split_budget(768 * MB)


def _flat(dtype) -> dict[str, np.ndarray]:
    shapes = abstract_model(CONFIG)[1]
    rng = np.random.default_rng(0)
    import jax

    from training.model.params import flat_params

    return {
        k: v.astype(dtype)
        for k, v in flat_params(jax.tree.map(lambda s: rng.normal(size=s.shape), shapes)).items()
    }


def test_held_bytes_count_each_buffer_once():
    a = np.zeros((10, 10), np.float32)
    assert held_bytes({"a": a, "rows": a[:2], "again": (a, 3, "text", None)}) == 400
    assert held_bytes(a[:, :1]) == 400  # a slice keeps its whole array alive
    assert held_bytes(np.ascontiguousarray(a[:, :1])) == 40
    f32 = _flat(np.float32)
    stored = sum(v.nbytes for v in f32.values())
    state = unflatten_params(CONFIG, f32)[1]
    assert held_bytes(state) == stored
    assert held_bytes((f32, state)) == stored  # a float32 state is the stored arrays
    f16 = _flat(np.float16)
    state16 = unflatten_params(CONFIG, f16)[1]
    assert held_bytes((f16, state16)) == stored // 2 + stored  # float16 + its float32 copy
    assert set(held_arrays((f32, state))) == {id(v) for v in f32.values()}


def test_the_lru_counts_a_buffer_shared_by_two_values_once():
    cache = LRU(10, max_bytes=1000)
    shared = np.zeros(100, np.float32)  # 400 bytes
    cache.put("view", {"patterns": shared[:50], "own": np.zeros(25, np.float32)})
    cache.put("base", {"patterns": shared})
    assert cache.bytes == 500
    cache.put("other", np.zeros(150, np.float32))  # 600: 1100 > 1000, "view" goes
    assert cache.order() == ["base", "other"] and cache.bytes == 1000
    cache.put("base", np.zeros(1, np.float32))  # replaced: the shared buffer leaves the count
    assert cache.order() == ["other", "base"] and cache.bytes == 604
    cache.put("huge", np.zeros(300, np.float32))  # larger than the cache alone: not kept
    assert cache.order() == ["other", "base"] and cache.bytes == 604


def _cache_bytes(analyzer) -> dict[str, tuple[int, int]]:
    """Each budgeted cache: (bytes it counts, bytes its values keep alive, counted afresh)."""
    caches = {
        "params": analyzer.store._params,
        "stacks": analyzer.store._stacks,
        "captures": analyzer._captures,
        "derived": analyzer._derived,
    }
    out = {}
    for name, cache in caches.items():
        with cache._lock:  # the prefetch thread may be putting: read between two puts
            out[name] = (cache.bytes, held_bytes([v for v, _ in cache._data.values()]))
    return out


def test_a_workers_caches_stay_within_cache_mb(small_root):
    """The app over a real run with ``--cache-mb 1``: first page, head clicks, every step
    with its neighbours prefetched, new prompts; every cache within its share, its count the
    memory its values keep alive, and the bound reached (older captures evicted)."""
    root, _ = small_root
    app = create_app(root, live_ms=0, cache_mb=1)
    client = DashClient(app)
    analyzer = app.server.config["ANALYZER"]
    budget = analyzer.store.budget
    assert budget.total == MB
    out = client.select(None, search="?run=small")
    sel, rendered = out["selection"]["data"], out["rendered"]["data"]

    def act(changed: str, value) -> None:
        nonlocal sel, rendered
        out = client.select(changed, value, sel, rendered=rendered)
        sel = out["selection"]["data"]
        rendered = out.get("rendered", {}).get("data", rendered)
        for name, (counted, held) in _cache_bytes(analyzer).items():
            assert counted == held <= getattr(budget, name), (name, counted, held)

    first = analyzer.encode("small", sel["prompt"])
    steps = analyzer.store.steps("small")
    act("grid-click.data", {"head": "L0H1", "shift": False})
    for i in reversed(range(len(steps) - 7, len(steps) - 1)):
        act("step-slider.value", i)
    for text in ("the cat sat", "lemon is sour and"):
        act("prompt-input.value", text)
    captures = analyzer._captures
    gone = (analyzer.store.generation("small"), steps[-1], first.padded, (), "")
    assert gone not in captures.order()  # the first page's pass was evicted
    one = held_bytes(analyzer.capture("small", steps[-1], first))
    assert one > 0 and captures.bytes > budget.captures - 2 * one  # filled to its share


def test_the_cache_flag_says_what_it_bounds():
    text = HELP["cache_mb"]
    for word in ("parameters", "captured", "derived", "timeline", "1/2", "1/4", "1/8"):
        assert word in text, word


@pytest.mark.parametrize("total", [0, 1, 3 * MB + 7])
def test_a_store_and_its_analyzer_share_one_budget(tmp_path, total):
    from interp_app.core.analyzer import Analyzer

    analyzer = Analyzer(RunStore(tmp_path, cache_bytes=total))
    shares = analyzer.store.budget
    assert shares == split_budget(total)
    assert analyzer.store._params.max_bytes == shares.params
    assert analyzer.store._stacks.max_bytes == shares.stacks
    assert analyzer._captures.max_bytes == shares.captures
    assert analyzer._derived.max_bytes == shares.derived
