"""The run store: find runs, list steps (metadata only), load parameters and captures, cached.

The only module of the app that touches the file system. Every name that reaches it from a
user (URL, picker) goes through ``training.checkpoint.run_dir``, which refuses paths.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from training import checkpoint as ckpt
from training.checkpoint import CheckpointError
from training.model.gpt import Capture, capture
from training.model.params import ParamsError, abstract_model, unflatten_params
from training.tokenizer import Tokenizer

STACK_BUDGET = 512 * 1024 * 1024  # bytes of stacked parameters kept for timelines


class LRU:
    """A small thread-safe least-recently-used cache (gunicorn threads share one store)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        self.put(key, value)
        return value

    def peek(self, key: Hashable) -> Any | None:
        """The cached value without making it or refreshing its place (a scan must not
        push out what the step slider keeps using)."""
        with self._lock:
            return self._data.get(key)

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model sees it: at most ``context`` tokens, padded to ``context``."""

    text: str
    words: tuple[str, ...]  # as typed (lower-cased), after truncation
    ids: tuple[int, ...]  # real tokens, unknown words as UNKNOWN
    padded: tuple[int, ...]  # ids + PADDING up to the context
    unknown: tuple[str, ...]
    dropped: int  # leading tokens cut to fit the context

    @property
    def length(self) -> int:
        return len(self.ids)


def encode_prompt(tokenizer: Tokenizer, context: int, text: str) -> Prompt:
    """Keep the last ``context`` tokens (the ones next to the prediction) of a long prompt."""
    from training.tokenizer import split_words

    words = split_words(text)
    ids = tokenizer.encode(text)
    dropped = max(0, len(ids) - context)
    words, ids = words[dropped:], ids[dropped:]
    padded = tuple(ids) + (tokenizer.padding_id,) * (context - len(ids))
    return Prompt(
        text=text,
        words=tuple(words),
        ids=tuple(ids),
        padded=padded,
        unknown=tuple(tokenizer.unknown_words(" ".join(words))),
        dropped=dropped,
    )


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
    """Reads runs under one root. Listing is cheap; parameters and captures are LRU-cached."""

    def __init__(self, root: str | Path, param_cache: int = 512, capture_cache: int = 512):
        """``param_cache`` counts steps (the default model: about 43 KB each)."""
        self.root = Path(root)
        self._params = LRU(param_cache)
        self._captures = LRU(capture_cache)
        self._states = LRU(param_cache)
        self._timelines = LRU(64)
        self._merged = LRU(64)
        self._runs = LRU(64)
        self._listings = LRU(64)
        self._derived = LRU(256)
        self._stacks = LRU(2)  # stacked parameters of every step of a run, for timelines
        self._dirs: dict[str, Path] = {}
        self._graphdefs: dict[Any, Any] = {}

    @property
    def store(self) -> RunStore:
        """The file-level reads (a bridge while files and computation share this class)."""
        return self

    def forget_results(self, captures: bool = True) -> None:
        """Drop what was computed from the parameters (benchmarks measure cold paths);
        ``captures=False`` keeps the forward passes and drops only what is derived from them."""
        caches = [self._derived, self._timelines, self._merged]
        for cache in [self._captures, *caches] if captures else caches:
            cache.clear()

    def run_dir(self, run: str) -> Path:
        """The run's folder inside the root (checked once per name: resolving costs stats)."""
        path = self._dirs.get(run)
        if path is None:
            path = ckpt.run_dir(self.root, run)
            if len(self._dirs) < 4096:
                self._dirs[run] = path
        return path

    def memo(self, run: str, key: Hashable, make: Callable[[], Any]) -> Any:
        """Results derived from cached captures (views, patching), kept per selection and
        per generation of the run (a run trained again under its name starts afresh)."""
        return self._derived.get_or_make((self.generation(run), key), make)

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

    def generation(self, run: str) -> tuple[str, int]:
        """The run's name and its run.json's change time: part of every cached key, so a run
        trained again under the same name (``--overwrite``) is never served from the old one."""
        try:
            return run, (self.run_dir(run) / ckpt.RUN_FILE).stat().st_mtime_ns
        except OSError:
            raise ckpt.CheckpointError(f"no run named {run!r} in {self.root}") from None

    def info(self, run: str) -> ckpt.RunInfo:
        """Run metadata, re-read when run.json changes (a resumed run may grow its steps)."""
        path = self.run_dir(run) / ckpt.RUN_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            raise ckpt.CheckpointError(f"no run named {run!r} in {self.root}") from None

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

    def _graphdef(self, info: ckpt.RunInfo):
        if info.model not in self._graphdefs:
            self._graphdefs[info.model] = abstract_model(info.model)[0]
        return self._graphdefs[info.model]

    def _read_params(self, run: str, step: int) -> dict[str, np.ndarray]:
        info = self.info(run)
        flat = ckpt.load_params(info.path, step)
        try:
            unflatten_params(info.model, flat)
        except ParamsError as err:
            raise ckpt.CheckpointError(f"step {step} of run {run!r}: {err}") from None
        return {k: np.asarray(v, np.float32) for k, v in flat.items()}

    def params(self, run: str, step: int) -> dict[str, np.ndarray]:
        """Named float32 arrays; raises CheckpointError for a missing or corrupt step."""
        key = (self.generation(run), step)
        return self._params.get_or_make(key, lambda: self._read_params(run, step))

    def stacked(self, run: str, steps: list[int]) -> tuple[list[int], list[dict], list[int]]:
        """(readable steps, their parameters stacked in chunks, unreadable steps).

        Every new prompt's timeline needs every step. Read through the step cache, a run with
        more checkpoints than the cache holds would evict each one before its next use and
        reload them all for each prompt; so the stack is kept whole (while it fits in
        ``STACK_BUDGET``) and steps outside the cache are read past it, not into it.
        """
        from interp_app.core.timeline import stack_chunks

        gen = self.generation(run)
        key = (gen, tuple(steps))
        found = self._stacks.peek(key)
        if found is not None:
            return found
        fits = len(steps) <= self._params.capacity
        ok, flats, bad = [], [], []
        for step in steps:
            try:
                cached = self._params.peek((gen, step))
                if cached is None:
                    cached = self.params(run, step) if fits else self._read_params(run, step)
                flats.append(cached)
                ok.append(step)
            except CheckpointError:
                bad.append(step)
        result = (ok, stack_chunks(flats) if flats else [], bad)
        whole = list(steps) == self.steps(run)  # what the next new prompt asks for again
        size = sum(a.nbytes for f in flats[:1] for a in f.values()) * len(flats)
        if whole and size <= STACK_BUDGET:
            self._stacks.put(key, result)
        return result

    def state(self, run: str, step: int):
        """(graph definition, parameter state) of one step, for the jitted passes."""
        info = self.info(run)
        state = self._states.get_or_make(
            (self.generation(run), step),
            lambda: unflatten_params(info.model, self.params(run, step))[1],
        )
        return self._graphdef(info), state

    def capture(
        self, run: str, step: int, prompt: Prompt, ablate: tuple[str, ...] = (), mode: str = "zero"
    ) -> Capture:
        """One jitted pass over the padded prompt ([1, context]: one shape, one compilation),
        with the named heads ablated (zero or mean) when ``ablate`` is given."""
        from interp_app.core import causal

        info = self.info(run)

        def run_model() -> Capture:
            graphdef, state = self.state(run, step)
            tokens = jnp.asarray([prompt.padded], jnp.int32)
            if not ablate:
                return jax.device_get(capture(graphdef, state, tokens))
            mask = causal.head_mask(ablate, info.model.n_layers, info.model.n_heads)
            out = causal.ablated_capture(
                graphdef, state, tokens, mask, mode, prompt.length, self.reference(run, mode)
            )
            return jax.device_get(out)

        key = (self.generation(run), step, prompt.padded, ablate, mode if ablate else "")
        return self._captures.get_or_make(key, run_model)

    def reference(self, run: str, mode: str):
        """The reference lines a mode averages over (``valid-mean``), else None."""
        from interp_app.core import causal

        if mode not in causal.REFERENCE_MODES:
            return None
        info = self.info(run)
        return causal.reference_batch(info.meta, info.tokenizer, info.model.context)

    def timeline(
        self,
        run: str,
        prompt: Prompt,
        pos: int,
        target: int,
        src: int = 0,
        ablate: tuple[str, ...] = (),
        mode: str = "zero",
    ) -> tuple[list[int], dict[str, np.ndarray], list[int]]:
        """Metrics at every readable step: (steps, name -> [S, ...], unreadable steps).

        Cached per (run, prompt, query); when new steps land only those are computed.
        """
        from interp_app.core.causal import head_mask
        from interp_app.core.timeline import compute_timeline
        from training.model.params import unflatten_stacked

        info = self.info(run)
        key = (self.generation(run), prompt.padded, pos, target, src, ablate, mode)
        known: dict[int, dict[str, np.ndarray]] = self._timelines.get_or_make(key, dict)
        missing = [step for step in self.steps(run) if step not in known]
        read, chunks, bad = self.stacked(run, missing) if missing else ([], [], [])
        if read:
            chunks = [unflatten_stacked(info.model, c) for c in chunks]
            tokens = jnp.asarray([prompt.padded], jnp.int32)
            ablated = head_mask(ablate, info.model.n_layers, info.model.n_heads)
            out = compute_timeline(
                self._graphdef(info),
                chunks,
                len(read),
                tokens,
                pos,
                target,
                src,
                prompt.length,
                ablated,
                mode,
                self.reference(run, mode),
            )
            for i, step in enumerate(read):
                known[step] = {k: v[i] for k, v in out.items()}
        steps = sorted(known)
        done, merged = self._merged.get_or_make(key, lambda: ((), {}))
        if done != tuple(steps):  # stacking 100+ steps costs more than the lookup
            merged = (
                {k: np.stack([known[s][k] for s in steps]) for k in known[steps[0]]}
                if steps
                else {}
            )
            self._merged.put(key, (tuple(steps), merged))
        return steps, merged, bad
