"""Long work as background jobs: cheap work at once, big work part by part.

Two kinds of work use it: all-checkpoint timelines (a part: a few steps) and activation
patching at one step (a part: one layer's heads and residual vectors).

A timeline needs one pass per checkpoint, each with every head ablated in turn: instant on
the article's model, minutes on a GPT-2-small-shaped run. :class:`JobAnalyzer` answers a
timeline at once when its work is under ``sync_work`` (the fruits run's 1,501 steps are),
and otherwise from the shared result cache only, never computing: whatever steps a
background job (:func:`fill_timeline`) has put there so far. The job computes the missing
steps in parts and stores each step under a key of the run's generation, the step and the
query, so a result computed once serves every worker and replica, and a run that grows
needs only its new steps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from interp_app.core import causal
from interp_app.core.analyzer import Analyzer, _tokens
from interp_app.core.heads import head_mask
from interp_app.core.prompt import Prompt
from interp_app.core.query import Query
from interp_app.core.results import UNREADABLE, ResultCache, decode, encode
from interp_app.core.selection import Selection
from interp_app.core.store import LRU, RunStore, chunk_steps, stack_chunks
from interp_app.core.timeline import compute_timeline
from training.checkpoint import CheckpointError
from training.model.config import ModelConfig
from training.model.params import unflatten_stacked

SCHEMA = 1  # bump when the stored arrays change meaning: old entries are then never read
SYNC_WORK = 2e10  # above this (see ``step_work``), a timeline goes to a background job
PART_STEPS = 8  # at most this many steps per computed part: partial results keep coming
Report = Callable[[int, int], object]  # (steps done, steps in all); its value is ignored


def step_key(generation: tuple, query: Query, step: int) -> str:
    """The shared cache's key of one step of one timeline (the run's name and run.json's
    change time identify its parameters; the query, what was computed from them)."""
    run, stamp = generation
    text = json.dumps(
        [SCHEMA, run, stamp, step, list(query.prompt.padded), query.pos, query.target]
        + [query.src, list(query.ablate), query.mode]
    )
    return "timeline:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def parameter_count(model: ModelConfig) -> int:
    """About how many parameters a model of this shape has (embeddings and blocks)."""
    d = model.d_model
    block = 4 * d * d + (2 * d * model.d_mlp if model.mlp else 0)
    return model.vocab_size * d + model.context * d + model.n_layers * block


def step_work(model: ModelConfig, tokens: int) -> float:
    """The work of one timeline step, in parameter-token products: a clean and an ablated
    pass, and one pass from each head's layer on for its ablation effect (half of a
    pass on average)."""
    passes = 2 + model.n_layers * model.n_heads / 2
    return float(parameter_count(model)) * tokens * passes


def parts(steps: list[int], size: int) -> list[list[int]]:
    return [steps[i : i + size] for i in range(0, len(steps), size)]


def part_size(model: ModelConfig, cap: int = PART_STEPS) -> int:
    """Steps per computed part: the store's chunk (bounded in bytes, float32 parameters),
    at most ``cap``: one step at a time for a GPT-2-small-shaped run."""
    return max(1, min(chunk_steps(4 * parameter_count(model)), cap))


def read_part(store: RunStore, run: str, steps: list[int]) -> tuple[list[int], list, list[int]]:
    """(readable steps, their parameters, unreadable steps), read through the step cache."""
    ok, flats, bad = [], [], []
    for step in steps:
        try:
            flats.append(store.params(run, step))
            ok.append(step)
        except CheckpointError:
            bad.append(step)
    return ok, flats, bad


def fill_timeline(
    analyzer: Analyzer,
    results: ResultCache,
    query: Query,
    report: Report | None = None,
    cap: int = PART_STEPS,
) -> tuple[int, int]:
    """Compute the steps of ``query``'s timeline that the shared cache lacks, a part at a
    time, storing each step as soon as its part is done; ``report(done, total)`` after each
    part. Returns (done, total). A step whose parameters cannot be read is stored as such."""
    store = analyzer.store
    info = store.info(query.run)
    generation = store.generation(query.run)
    steps = store.steps(query.run)
    keys = {s: step_key(generation, query, s) for s in steps}
    have = results.get_many([keys[s] for s in steps])
    missing = [s for s, value in zip(steps, have, strict=True) if value is None]
    done, total = len(steps) - len(missing), len(steps)
    if report is not None:
        report(done, total)
    size = part_size(info.model, cap)
    mask = head_mask(query.ablate, info.model.n_layers, info.model.n_heads)
    for part in parts(missing, size):
        read, flats, bad = read_part(store, query.run, part)
        if read:
            out = compute_timeline(
                analyzer.graphdef(info),
                [unflatten_stacked(info.model, c) for c in stack_chunks(flats, size)],
                len(read),
                _tokens(query.prompt),
                query.pos,
                query.target,
                query.src,
                query.prompt.length,
                mask,
                query.mode,
                analyzer.reference(query.run, query.mode),
            )
            for i, step in enumerate(read):
                results.put(keys[step], encode({k: v[i] for k, v in out.items()}))
        for step in bad:
            results.put(keys[step], UNREADABLE)
        done += len(part)
        if report is not None:
            report(done, total)
    return done, total


class JobAnalyzer(Analyzer):
    """The app's analyzer: a timeline whose missing steps are more work than ``sync_work``
    is read from ``results`` (what background jobs computed so far), never computed here.
    Everything else is :class:`Analyzer`'s."""

    def __init__(self, store: RunStore, results: ResultCache, sync_work: float = SYNC_WORK):
        super().__init__(store)
        self.results = results
        self.sync_work = sync_work
        self._steps: LRU = LRU(4096)  # decoded step results, by shared key
        self._stacked: LRU = LRU(16)  # merged arrays, by (query key, steps)

    def in_background(self, query: Query) -> bool:
        """Whether this query's missing steps are too much work to compute in a request."""
        known = self._timelines.peek(query.memory_key(self.store.generation(query.run))) or {}
        missing = [s for s in self.store.steps(query.run) if s not in known]
        if not missing:
            return False
        model = self.store.info(query.run).model
        return len(missing) * step_work(model, len(query.prompt.padded)) > self.sync_work

    def timeline_of(self, query: Query) -> tuple[list[int], dict[str, np.ndarray], list[int]]:
        if not self.in_background(query):
            return super().timeline_of(query)
        return self.cached(query)

    def progress(self, query: Query) -> tuple[int, int] | None:
        """(steps in the shared cache, steps) while a background timeline is incomplete;
        None when it is complete or computed in requests."""
        if not self.in_background(query):
            return None
        steps, _, bad = self.cached(query)
        done, total = len(steps) + len(bad), len(self.store.steps(query.run))
        return None if done >= total else (done, total)

    def patch_in_background(self, run: str, tokens: int) -> bool:
        """Whether patching prompts of ``tokens`` (padded) is too much work for a request
        (then it is read from the shared cache only, whatever a job stored so far)."""
        return patch_work(self.store.info(run).model, tokens) > self.sync_work

    def cached_patching(self, query: PatchQuery) -> dict[str, Any] | None:
        """:func:`causal.patching`'s result from the parts stored so far (values not
        computed yet are NaN), with ``done`` and ``total`` parts and the ``answer``'s id;
        None until a job stored its first values. The residual keeps the real tokens."""
        model = self.store.info(query.run).model
        generation = self.store.generation(query.run)
        tokens = len(query.clean.padded)
        parts = causal.patch_parts(model.n_layers, tokens)
        found = self._lookup(patch_keys(generation, query, parts))
        ends = found[0]
        if not isinstance(ends, dict):
            return None
        heads = np.full((model.n_layers, model.n_heads), np.nan, np.float32)
        resid = np.full((model.n_layers + 1, tokens), np.nan, np.float32)
        done = 0
        for (layer, first), part in zip(parts, found[1:], strict=True):
            if isinstance(part, dict):
                done += 1
                width = min(len(part["resid"]), tokens - first)
                resid[layer, first : first + width] = part["resid"][:width]
                if layer < model.n_layers and first == 0:
                    heads[layer] = part["heads"]
        scalars = {k: v.item() for k, v in ends.items()}
        resid = resid[:, : query.clean.length]
        return {**scalars, "heads": heads, "resid": resid, "done": done, "total": len(parts)}

    def patching_progress(self, query: PatchQuery) -> tuple[int, int] | None:
        """(parts stored, parts) while a background patching is incomplete, else None."""
        if not self.patch_in_background(query.run, len(query.clean.padded)):
            return None
        cached = self.cached_patching(query)
        model = self.store.info(query.run).model
        total = len(causal.patch_parts(model.n_layers, len(query.clean.padded)))
        done = 0 if cached is None else cached["done"]
        return None if done >= total else (done, total)

    def _lookup(self, keys: list[str]) -> list[Any]:
        """Decoded results (UNREADABLE, or None when not computed yet) for shared keys."""
        found = [self._steps.peek(k) for k in keys]
        unknown = [k for k, v in zip(keys, found, strict=True) if v is None]
        fetched = dict(zip(unknown, self.results.get_many(unknown), strict=True))
        for i, key in enumerate(keys):
            data = fetched.get(key)
            if found[i] is None and data is not None:
                found[i] = UNREADABLE if data == UNREADABLE else decode(data)
                self._steps.put(key, found[i])
        return found

    def cached(self, query: Query) -> tuple[list[int], dict[str, np.ndarray], list[int]]:
        """(steps computed so far, name -> [S, ...], unreadable steps) from the shared cache."""
        generation = self.store.generation(query.run)
        steps = self.store.steps(query.run)
        found = self._lookup([step_key(generation, query, s) for s in steps])
        done = [(s, v) for s, v in zip(steps, found, strict=True) if isinstance(v, dict)]
        bad = [s for s, v in zip(steps, found, strict=True) if v is UNREADABLE]
        shown = [s for s, _ in done]
        key = (query.memory_key(generation), tuple(shown))
        merged = self._stacked.peek(key)
        if merged is None:
            merged = {k: np.stack([v[k] for _, v in done]) for k in done[0][1]} if done else {}
            self._stacked.put(key, merged)
        return shown, merged, bad


# Activation patching at one step, in parts (``causal.patch_parts``: a layer boundary's heads
# and a block of its residual positions each), each stored as soon as it is done; "ends"
# holds the scalars every part is normalised by.


@dataclass(frozen=True)
class PatchQuery:
    """Patching ``clean`` into ``corrupt`` (same length) at ``step`` of ``run``, read as the
    logit difference ``target`` - ``answer`` at ``pos`` (answer None: the corrupted
    prompt's most likely token other than the target)."""

    run: str
    step: int
    clean: Prompt
    corrupt: Prompt
    pos: int
    target: int
    answer: int | None = None


def patch_query(analyzer: Analyzer, sel: Selection) -> PatchQuery | str:
    """The patching a (valid) selection asks for, or why there is none."""
    clean = analyzer.encode(sel.run, sel.prompt)
    corrupt = analyzer.encode(sel.run, sel.corrupt)
    if corrupt.length != clean.length:
        return (
            f"Patching needs two prompts of the same number of tokens: the corrupted "
            f"prompt has {corrupt.length}, the prompt {clean.length}."
        )
    target = analyzer.store.info(sel.run).tokenizer.index[sel.target]
    return PatchQuery(sel.run, sel.step, clean, corrupt, sel.pos, target)


def patch_key(generation: tuple, query: PatchQuery, part: tuple[int, int] | str) -> str:
    """The shared cache's key of one part of a patching ("ends", a (layer, first position)
    pair, or "all": the name of the whole)."""
    run, stamp = generation
    answer = -1 if query.answer is None else query.answer
    text = json.dumps(
        [SCHEMA, run, stamp, query.step, list(query.clean.padded), list(query.corrupt.padded)]
        + [query.pos, query.target, answer, part]
    )
    return "patching:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def patch_keys(generation: tuple, query: PatchQuery, parts: list[tuple[int, int]]) -> list[str]:
    """The keys of "ends" and of each part."""
    return [patch_key(generation, query, "ends")] + [patch_key(generation, query, p) for p in parts]


def patch_work(model: ModelConfig, tokens: int) -> float:
    """The work of one patching, in parameter-token products, as ``step_work``: two clean
    passes and, from each patched layer on (half a pass on average), one per head and one
    per residual vector."""
    passes = 2 + (model.n_layers * model.n_heads + (model.n_layers + 1) * tokens) / 2
    return float(parameter_count(model)) * tokens * passes


def fill_patching(
    analyzer: Analyzer, results: ResultCache, query: PatchQuery, report: Report | None = None
) -> tuple[int, int]:
    """Compute the parts of ``query``'s patching that the shared cache lacks
    (``causal.patch_parts``: a layer boundary's heads and a block of its positions each),
    storing each as soon as it is done; ``report(done, total)`` before and after each.
    Returns (done, total)."""
    model = analyzer.store.info(query.run).model
    generation = analyzer.store.generation(query.run)
    parts = causal.patch_parts(model.n_layers, len(query.clean.padded))
    keys = patch_keys(generation, query, parts)
    have = results.get_many(keys)
    missing = [i for i, value in enumerate(have[1:]) if value is None]
    done, total = len(parts) - len(missing), len(parts)
    if report is not None:
        report(done, total)
    if not missing and have[0] is not None:
        return done, total
    answer = query.answer
    if answer is None:
        logits = analyzer.logits(query.run, query.step, query.corrupt, query.pos)
        answer = next(int(i) for i in np.argsort(-logits) if int(i) != query.target)
    graphdef, state = analyzer.state(query.run, query.step)
    args = (query.pos, query.target, answer)
    clean = analyzer.capture(query.run, query.step, query.clean)
    corrupt = analyzer.capture(query.run, query.step, query.corrupt)
    base = causal.patching_base(clean, corrupt, *args)
    ends = {k: base[k] for k in ("clean", "corrupt", "logit_scale", "normalised")}
    results.put(keys[0], encode({**ends, "answer": np.asarray(answer)}))
    for i in missing:
        part = causal.patching_part(graphdef, state, base, *parts[i], *args)
        results.put(keys[i + 1], encode(part))
        done += 1
        if report is not None:
            report(done, total)
    return done, total
