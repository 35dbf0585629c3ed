"""The run store: find runs, list steps (metadata only), load parameters, cached.

The only module of the app that touches the file system, and it never runs the model (the
``Analyzer`` does, over a store). Every name that reaches it from a user (URL, picker) goes
through ``training.checkpoint.run_dir``, which refuses paths.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from interp_app.core.budget import DEFAULT_MB, MB, held_arrays, held_bytes, split_budget
from training import checkpoint as ckpt
from training.checkpoint import CheckpointError
from training.model.params import ParamsError, unflatten_params

CHUNK = 64  # steps per stacked chunk (the timeline's vmapped call); the last one is padded
CHUNK_BYTES = 64 * 1024 * 1024  # at most this many bytes of parameters per chunk
CACHE_BYTES = DEFAULT_MB * MB  # all a worker caches (``--cache-mb``), split by ``budget``


def nbytes(value: Any) -> int:
    """Bytes of the arrays in a value (a dict of arrays, or a tuple holding some)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    return 0


class LRU:
    """A small thread-safe least-recently-used cache (gunicorn threads share one store).

    Bounded by ``capacity`` entries and, when ``max_bytes`` is given, by the bytes of the
    memory its values keep alive (``held``: buffer id -> bytes, :func:`held_arrays`), each
    buffer counted once however many values share it (a view and the capture it slices, a
    step's stored arrays and its state): a value larger than ``max_bytes`` on its own is
    returned but not kept."""

    def __init__(
        self,
        capacity: int,
        max_bytes: int | None = None,
        held: Callable[[Any], dict[int, int]] = held_arrays,
    ):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.held = held
        self.bytes = 0  # held now
        self._data: OrderedDict[Hashable, tuple[Any, dict[int, int]]] = OrderedDict()
        self._refs: dict[int, int] = {}  # buffer id -> values holding it
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key][0]
        value = make()
        self.put(key, value)
        return value

    def peek(self, key: Hashable) -> Any | None:
        """The cached value without making it or refreshing its place (a scan must not
        push out what the step slider keeps using)."""
        with self._lock:
            found = self._data.get(key)
            return None if found is None else found[0]

    def holds(self, count: int, each: int) -> bool:
        """Whether ``count`` values of ``each`` bytes fit at once."""
        within = self.max_bytes is None or count * each <= self.max_bytes
        return count <= self.capacity and within

    def put(self, key: Hashable, value: Any) -> None:
        held = self.held(value) if self.max_bytes is not None else {}
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._release(old[1])
            if self.max_bytes is not None and sum(held.values()) > self.max_bytes:
                return
            self._data[key] = (value, held)
            for buffer, size in held.items():
                count = self._refs.get(buffer, 0)
                self._refs[buffer] = count + 1
                self.bytes += 0 if count else size
            while len(self._data) > self.capacity or (
                self.max_bytes is not None and self.bytes > self.max_bytes
            ):
                self._release(self._data.popitem(last=False)[1][1])

    def _release(self, held: dict[int, int]) -> None:
        """Forget one value's buffers (under the lock); a buffer's bytes leave the count
        with the last value holding it."""
        for buffer, size in held.items():
            count = self._refs.pop(buffer) - 1
            if count:
                self._refs[buffer] = count
            else:
                self.bytes -= size

    def order(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._refs.clear()
            self.bytes = 0


def _unreadable_parts(run: Path) -> list[str]:
    """The parts of a readable run that this process may not open: its metrics log, its
    steps folder or its newest step (a run resumed by another user keeps its old modes)."""
    parts = []
    try:
        with open(run / ckpt.METRICS_FILE, "rb"):
            pass
    except FileNotFoundError:
        pass
    except OSError as err:
        parts.append(f"{ckpt.METRICS_FILE} cannot be read ({err.strerror})")
    try:
        steps = ckpt.list_steps(run)
        if steps:
            with open(ckpt.step_dir(run, steps[-1]) / ckpt.PARAMS_FILE, "rb"):
                pass
    except FileNotFoundError:
        pass
    except OSError as err:
        parts.append(f"its steps cannot be read ({err.strerror})")
    return parts


class RunStore:
    """Reads runs under one root. Listing is cheap; parameters are LRU-cached in bytes."""

    def __init__(self, root: str | Path, param_cache: int = 512, cache_bytes: int = CACHE_BYTES):
        """``cache_bytes``: everything a worker over this store caches (``--cache-mb``),
        split by :func:`~interp_app.core.budget.split_budget` into ``budget``; the store
        keeps parameters within ``budget.params`` (stored dtype, plus the float32 copy a
        half-precision step is computed in: a GPT-2-small step is 475 MiB in float32) and
        stacks within ``budget.stacks``; a step larger than its share alone is read each
        time it is asked for. ``param_cache`` also bounds the steps kept (``--cache-steps``,
        kept for existing deployments)."""
        self.root = Path(root)
        self.param_cache = param_cache
        self.cache_bytes = cache_bytes
        self.budget = split_budget(cache_bytes)
        # (stored arrays, float32 state) per step: one entry, so their shared memory and
        # their eviction are one
        self._params = LRU(param_cache, self.budget.params)
        self._runs = LRU(64)
        self._listings = LRU(64)
        # stacked parameters of every step of a run, for timelines (float32, heap)
        self._stacks = LRU(2, self.budget.stacks)
        self._dirs: dict[str, Path] = {}
        self._run_files: dict[str, str] = {}

    def run_dir(self, run: str) -> Path:
        """The run's folder inside the root (checked once per name: resolving costs stats)."""
        path = self._dirs.get(run)
        if path is None:
            path = ckpt.run_dir(self.root, run)
            if len(self._dirs) < 4096:
                self._dirs[run] = path
        return path

    def runs(self) -> list[str]:
        """Runs this server can list (an unreadable root lists none: see ``problems``)."""
        try:
            return ckpt.list_runs(self.root)
        except OSError:
            return []

    def problems(self) -> list[str]:
        """What in the root this server cannot read (another user's run, a root it may not
        open), said plainly for ``/healthz`` and the page instead of failing a request."""
        try:
            entries = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        except FileNotFoundError:
            return [f"the checkpoint root {self.root} does not exist"]
        except OSError as err:
            return [f"cannot read the checkpoint root {self.root}: {err.strerror}"]
        found = []
        for name in entries:
            try:
                run = self.run_dir(name)
                with open(run / ckpt.RUN_FILE, "rb"):
                    pass
            except (CheckpointError, FileNotFoundError, NotADirectoryError):
                continue  # not a run (or not a name a run may have)
            except OSError as err:
                found.append(f"run {name!r} cannot be read by this server: {err.strerror}")
                continue
            found.extend(f"run {name!r}: {p}" for p in _unreadable_parts(run))
        return found

    def _run_file_mtime(self, run: str) -> int:
        """run.json's change time (one stat: every computation asks, so no path building)."""
        path = self._run_files.get(run)
        if path is None:
            path = os.fspath(self.run_dir(run) / ckpt.RUN_FILE)
            if len(self._run_files) < 4096:
                self._run_files[run] = path
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            raise ckpt.CheckpointError(f"no run named {run!r} in {self.root}") from None

    def generation(self, run: str) -> tuple[str, int]:
        """The run's name and its run.json's change time: part of every cached key, so a run
        trained again under the same name (``--overwrite``) is never served from the old one."""
        return run, self._run_file_mtime(run)

    def info(self, run: str) -> ckpt.RunInfo:
        """Run metadata, re-read when run.json changes (a resumed run may grow its steps)."""
        mtime = self._run_file_mtime(run)

        def read() -> ckpt.RunInfo:
            try:
                return ckpt.read_run(self.root, run)
            except OSError as err:
                raise CheckpointError(f"run {run!r} cannot be read: {err.strerror}") from None

        return self._runs.get_or_make((run, mtime), read)

    def steps(self, run: str) -> list[int]:
        """Complete steps. The listing is reused while the steps folder is unchanged, once its
        last change is a second old: a change within one timestamp tick is never missed."""
        folder = self.run_dir(run) / ckpt.STEPS_DIR
        try:
            mtime = folder.stat().st_mtime_ns
            if time.time_ns() - mtime < 1_000_000_000:
                return ckpt.list_steps(folder.parent)
            return list(
                self._listings.get_or_make((run, mtime), lambda: ckpt.list_steps(folder.parent))
            )
        except OSError:
            return []  # unreadable: ``problems`` names it

    def loss_history(self, run: str):
        """The loss curve's arrays; empty when the metrics log cannot be read (see
        ``metrics_notice``)."""
        try:
            return ckpt.loss_history(self.run_dir(run))
        except OSError:
            return tuple(np.zeros(0) for _ in range(4))

    def metrics_notice(self, run: str) -> str | None:
        """One line when the run's metrics log has lines that are not records (the loss
        curve skips them) or cannot be read at all, else None."""
        try:
            return ckpt.read_metrics_checked(self.run_dir(run)).notice()
        except OSError as err:
            return f"{ckpt.METRICS_FILE} of run {run!r} cannot be read: {err.strerror}"

    def _read_params(self, run: str, step: int) -> tuple[dict[str, np.ndarray], Any]:
        """(stored arrays, float32 state): the state checks names and shapes, and is the
        stored arrays themselves when they are float32 (a mapped step stays unread)."""
        info = self.info(run)
        flat = ckpt.load_params(info.path, step)
        try:
            state = unflatten_params(info.model, flat)[1]
        except ParamsError as err:
            raise ckpt.CheckpointError(f"step {step} of run {run!r}: {err}") from None
        return flat, state

    def _entry(self, run: str, step: int) -> tuple[dict[str, np.ndarray], Any]:
        key = (self.generation(run), step)
        return self._params.get_or_make(key, lambda: self._read_params(run, step))

    def params(self, run: str, step: int) -> dict[str, np.ndarray]:
        """Named read-only arrays in the stored dtype (float32 unless the run stored float16
        or bfloat16: computations cast, the cache keeps what the file holds); large steps
        are memory-mapped (``ckpt.read_tensors``). Raises CheckpointError for a missing or
        corrupt step."""
        return self._entry(run, step)[0]

    def state(self, run: str, step: int) -> Any:
        """The step's parameters as the model's float32 state (``unflatten_params``), cached
        with :meth:`params` in one entry of the parameters' share."""
        return self._entry(run, step)[1]

    def cached_steps(self, run: str) -> list[int]:
        """The run's steps whose parameters are cached now, least recently used first."""
        gen = self.generation(run)
        return [k[1] for k in self._params.order() if isinstance(k, tuple) and k[0] == gen]

    def stacked(self, run: str, steps: list[int]) -> tuple[list[int], list[dict], list[int]]:
        """(readable steps, their parameters stacked in float32 chunks, unreadable steps).

        Every new prompt's timeline needs every step. Read through the step cache, a run with
        more checkpoints than the cache holds would evict each one before its next use and
        reload them all for each prompt; so the stack is kept whole (while it fits in
        ``budget.stacks``) and, when the steps do not all fit in the cache, they are read past
        it, not into it.
        """
        gen = self.generation(run)
        key = (gen, tuple(steps))
        found = self._stacks.peek(key)
        if found is not None:
            return found
        fits: bool | None = None
        ok, flats, bad = [], [], []
        for step in steps:
            try:
                cached = self._params.peek((gen, step))
                if cached is None:
                    cached = self._read_params(run, step)
                    if fits is None:
                        fits = self._params.holds(len(steps), held_bytes(cached))
                    if fits:
                        self._params.put((gen, step), cached)
                flats.append(cached[0])
                ok.append(step)
            except CheckpointError:
                bad.append(step)
        result = (ok, stack_chunks(flats) if flats else [], bad)
        whole = list(steps) == self.steps(run)  # what the next new prompt asks for again
        if whole:
            self._stacks.put(key, result)  # kept only within budget.stacks
        return result


def chunk_steps(step_bytes: int) -> int:
    """Steps per chunk: ``CHUNK`` for small models, fewer for big ones. A GPT-2-small step is
    475 MB: 64 of them (the last chunk padded) asked for 30 GB and the worker was killed."""
    return max(1, min(CHUNK, CHUNK_BYTES // max(1, step_bytes)))


def stack_chunks(flats: list[dict[str, np.ndarray]], chunk: int | None = None) -> list[dict]:
    """Stack per-step named arrays into float32 chunks of ``chunk`` steps (last one padded;
    by default as many as :func:`chunk_steps` allows): timelines compute in float32 whatever
    the steps store."""
    if chunk is None:
        chunk = chunk_steps(sum(a.size * 4 for a in flats[0].values()))
    out = []
    for start in range(0, len(flats), chunk):
        part = flats[start : start + chunk]
        part = part + [part[-1]] * (chunk - len(part))
        out.append({k: np.stack([f[k] for f in part], dtype=np.float32) for k in part[0]})
    return out
