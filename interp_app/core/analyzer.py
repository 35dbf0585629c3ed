"""The analyzer: runs the model over a run store's parameters and keeps what it computed.

It owns every forward pass (plain and ablated), the reference lines of ``valid-mean``
ablation, the incremental all-step timelines and a memo of derived results; the
:class:`~interp_app.core.store.RunStore` under it only reads files. The public API
(``api``) and the app's views (``view``) both compute through one analyzer, so their
numbers are the same numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

from interp_app.core import causal, metrics
from interp_app.core.heads import head_mask
from interp_app.core.lean_step import lean_step
from interp_app.core.prompt import Prompt, encode_prompt
from interp_app.core.query import Query
from interp_app.core.store import LRU, RunStore
from interp_app.core.timeline import compute_timeline
from training import checkpoint as ckpt
from training.model.gpt import Capture, capture
from training.model.params import abstract_model, unflatten_stacked
from training.tokenizer import PADDING, UNKNOWN

SPECIAL_TOKENS = (UNKNOWN, PADDING)  # never a default target


def default_target(
    logits: np.ndarray | None,
    vocab: tuple[str, ...],
    special: frozenset[str] | tuple[str, ...] = SPECIAL_TOKENS,
) -> str:
    """The most likely word (the first word without logits): never a special token, which
    the model may well rank first (``PADDING`` after ``apple is sweet``, a line's end), nor
    an id the tokenizer has no token for (``tokenizer.special``)."""
    order = range(len(vocab)) if logits is None else np.argsort(-np.asarray(logits), kind="stable")
    words = (vocab[int(i)] for i in order if vocab[int(i)] not in special)
    return next(words, vocab[0])


def _tokens(prompt: Prompt) -> np.ndarray:
    """[1, context] int32: the padded prompt as the passes take it."""
    return np.asarray([prompt.padded], np.int32)


class Analyzer:
    """Computes over one :class:`RunStore` (``.store``); results are LRU-cached and keyed by
    the run's generation, so a run trained again under its name starts afresh."""

    def __init__(self, store: RunStore, capture_cache: int = 512):
        """Captures and derived results are kept within the store's ``budget`` (one
        ``--cache-mb`` for the whole worker); the parameters' states live in the store."""
        self.store = store
        budget = store.budget
        # a GPT-2-small capture of 128 tokens is ~112 MB: each head's output at each
        # position [L, H, T, D] is 57 MB, the logits [T, V] 26 MB, the patterns 9 MB
        self._captures = LRU(capture_cache, budget.captures)
        self._timelines = LRU(64)
        self._merged = LRU(64)
        self._derived = LRU(256, budget.derived)
        self._graphdefs: dict[Any, Any] = {}
        # One forward pass at a time: a prefetch's pass beside a request's held two steps
        # and two passes' buffers at once (GPT-2-small shape: +0.5 GB of peak RSS), and on
        # a worker's few cores two passes at once take as long as one after the other.
        self._one_pass = threading.RLock()

    def forget_results(self, captures: bool = True) -> None:
        """Drop what was computed from the parameters (benchmarks measure cold paths);
        ``captures=False`` keeps the forward passes and drops only what is derived from them."""
        caches = [self._derived, self._timelines, self._merged]
        for cache in [self._captures, *caches] if captures else caches:
            cache.clear()

    def memo(self, run: str, key: Hashable, make: Callable[[], Any]) -> Any:
        """Results derived from cached captures (views, patching), kept per selection and
        per generation of the run."""
        return self._derived.get_or_make((self.store.generation(run), key), make)

    def encode(self, run: str, text: str) -> Prompt:
        """``text`` as run ``run``'s model sees it (its tokenizer, its context)."""
        info = self.store.info(run)
        return encode_prompt(info.tokenizer, info.model.context, text)

    def graphdef(self, info: ckpt.RunInfo) -> Any:
        if info.model not in self._graphdefs:
            self._graphdefs[info.model] = abstract_model(info.model)[0]
        return self._graphdefs[info.model]

    def state(self, run: str, step: int) -> tuple[Any, Any]:
        """(graph definition, parameter state) of one step, for the jitted passes."""
        return self.graphdef(self.store.info(run)), self.store.state(run, step)

    def reference(self, run: str, mode: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The reference lines a mode averages over (``valid-mean``), else None."""
        if mode not in causal.REFERENCE_MODES:
            return None
        return self.reference_lines(run)

    def reference_lines(self, run: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The run's reference lines (its validation lines), None when they are not known."""
        info = self.store.info(run)
        return causal.reference_batch(info.meta, info.tokenizer, info.model.context)

    def capture(
        self, run: str, step: int, prompt: Prompt, ablate: tuple[str, ...] = (), mode: str = "zero"
    ) -> Capture:
        """One jitted pass over the padded prompt ([1, context]: one shape, one compilation),
        with the named heads ablated (zero or mean) when ``ablate`` is given."""
        model = self.store.info(run).model

        def run_model() -> Capture:
            with self._one_pass:
                done = self._captures.peek(key)  # made while this thread waited
                if done is not None:
                    return done
                graphdef, state = self.state(run, step)
                tokens = _tokens(prompt)
                if not ablate:
                    return jax.device_get(capture(graphdef, state, tokens))
                mask = head_mask(ablate, model.n_layers, model.n_heads)
                out = causal.ablated_capture(
                    graphdef, state, tokens, mask, mode, prompt.length, self.reference(run, mode)
                )
                return jax.device_get(out)

        key = (self.store.generation(run), step, prompt.padded, ablate, mode if ablate else "")
        return self._captures.get_or_make(key, run_model)

    def logits(self, run: str, step: int, prompt: Prompt, pos: int) -> np.ndarray:
        """[V] the clean model's logits at ``pos`` (CheckpointError: an unreadable step)."""
        return np.asarray(self.capture(run, step, prompt).logits[0, pos])

    def default_target(self, run: str, step: int, prompt: Prompt, pos: int) -> str:
        """The clean model's most likely word at ``pos``, never PADDING or UNKNOWN."""
        tokenizer = self.store.info(run).tokenizer
        return default_target(
            self.logits(run, step, prompt, pos), tokenizer.vocab, tokenizer.special
        )

    def ablation_effects(
        self, run: str, step: int, prompt: Prompt, pos: int, target: int, ablate, mode: str
    ) -> np.ndarray:
        """[L, H] float32: change in log P(target) when each head is also ablated. Kept
        (read-only) per query: picking another head asks for the same ones again."""

        def compute() -> np.ndarray:
            with self._one_pass:
                return effects_of()

        def effects_of() -> np.ndarray:
            graphdef, state = self.state(run, step)
            model = self.store.info(run).model
            effects = causal.ablation_effects(
                graphdef,
                state,
                _tokens(prompt),
                head_mask(ablate, model.n_layers, model.n_heads),
                mode,
                prompt.length,
                pos,
                target,
                self.reference(run, mode),
            )
            out = np.array(effects)
            out.flags.writeable = False
            return out

        key = ("effects", step, prompt.padded, pos, target, tuple(ablate), mode)
        return self.memo(run, key, compute)

    def step_metrics(
        self,
        run: str,
        step: int,
        prompt: Prompt,
        *,
        pos: int,
        target: int,
        head: tuple[int, int],
        src: int,
        ablate: tuple[str, ...],
        mode: str,
        ablation: bool = True,
        lens_window: bool = False,
    ) -> dict[str, Any]:
        """Every number the panels show for one step (``metrics.one_step``, float64) of the
        model with ``ablate`` ablated, plus the ``ablation`` head metric (one more pass per
        head: ``ablation=False`` leaves it out) and, when something is ablated,
        ``clean_probs`` (the unablated model's [V]). ``lens_window``: the logit lens only
        at the positions the page shows (``lean_step``; ``lens_start`` says where)."""
        info = self.store.info(run)
        cap = self.capture(run, step, prompt, ablate, mode)
        step_fn = lean_step if lens_window else metrics.one_step
        out = step_fn(
            cap,
            self.store.params(run, step),
            clean=self.capture(run, step, prompt) if ablate else None,
            pos=pos,
            target=target,
            length=prompt.length,
            src=src,
            layer=head[0],
            head=head[1],
            eps=info.model.ln_eps,
        )
        if ablation:
            out["heads"]["ablation"] = self.ablation_effects(
                run, step, prompt, pos, target, ablate, mode
            ).copy()
        out["logit"] = float(cap.logits[0, pos, target])
        if not ablate:
            out["clean_probs"] = None
        return out

    def patching(
        self, run: str, step: int, clean: Prompt, corrupt: Prompt, pos: int, target: int, answer
    ) -> dict[str, Any]:
        """``causal.patching`` from ``clean`` into ``corrupt`` (same length) on the
        unablated model, against ``answer`` (None: the corrupted prompt's most likely word
        other than ``target``): heads [L, H], resid [L+1, T], clean, corrupt, logit_scale,
        normalised and the answer's id."""
        if answer is None:
            corrupt_logits = self.logits(run, step, corrupt, pos)
            answer = next(int(i) for i in np.argsort(-corrupt_logits) if int(i) != target)
        graphdef, state = self.state(run, step)
        result = causal.patching(
            graphdef,
            state,
            _tokens(clean),
            _tokens(corrupt),
            pos,
            target,
            answer,
        )
        out = {k: np.asarray(v) for k, v in jax.device_get(result).items()}
        out["resid"] = out["resid"][:, : clean.length]
        out["answer"] = answer
        return out

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
        return self.timeline_of(Query(run, prompt, pos, target, src, tuple(ablate), mode))

    def timeline_of(self, query: Query) -> tuple[list[int], dict[str, np.ndarray], list[int]]:
        """:meth:`timeline` of one query (what background analyzers override)."""
        run, prompt, pos, target = query.run, query.prompt, query.pos, query.target
        src, ablate, mode = query.src, query.ablate, query.mode
        info = self.store.info(run)
        key = query.memory_key(self.store.generation(run))
        known: dict[int, dict[str, np.ndarray]] = self._timelines.get_or_make(key, dict)
        missing = [step for step in self.store.steps(run) if step not in known]
        read, chunks, bad = self.store.stacked(run, missing) if missing else ([], [], [])
        if read:
            out = compute_timeline(
                self.graphdef(info),
                [unflatten_stacked(info.model, c) for c in chunks],
                len(read),
                _tokens(prompt),
                pos,
                target,
                src,
                prompt.length,
                head_mask(ablate, info.model.n_layers, info.model.n_heads),
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
