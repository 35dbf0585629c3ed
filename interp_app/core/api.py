"""The public Python API: a run's internals and every metric the panels show, as numpy arrays.

For notebooks and scripts; the same numbers as the app, because it calls the same functions
(``runs`` for the cached forward passes, ``analysis`` for the exact splits, ``causal`` for
ablation and patching) on the same inputs::

    from interp_app.core import api

    run = api.open_run("checkpoints", "fruits")        # .name .steps .config .vocab
    cap = run.capture(10_000, "i like spicy so i like")  # .tokens .words .logits .resid ...
    cap.resid.shape                                      # (L+1, T, D)
    m = run.metrics(10_000, "i like spicy so i like", target="chili", head="L1H0")
    dict(zip(m.components, m.dla))                       # direct logit attribution [C]
    m.dla.sum(), m.logit                                 # the split is exact
    m.token_attr                                         # [T] through head L1H0
    m.heads["entropy"]                                   # [L, H], every head metric by name
    m.lens_top, m.lens_prob                              # logit lens [L+1, T]
    run.ablate(10_000, "i like spicy so i like", ["L1H0"], target="chili").target_prob
    run.patch(10_000, "i like spicy so i like", "i like sweet so i like", target="chili").heads
    run.timeline("i like spicy so i like", target="chili").heads["dla"]  # [S, L, H] over steps

Conventions: ``T`` is the prompt's real tokens (padding is never shown: attention is causal,
so no real position sees it), ``pos`` the predicting position (default: the last), ``L``
layers, ``H`` heads, ``D`` the width, ``K`` a head's width, ``V`` the vocabulary, ``C`` the
components of the residual stream at ``pos`` (names in ``Metrics.components``). A prompt
longer than the context keeps its last ``context`` tokens, and a word outside the
vocabulary reads as ``UNKNOWN``, as in the app (``Prompt.dropped``, ``Prompt.unknown``).

Bad input raises one plain line: :class:`~training.checkpoint.CheckpointError` (a
``ValueError``) for an unknown or unreadable run or step, ``ValueError`` for anything else
(an empty prompt, a target outside the vocabulary, a head or position that does not exist).
Every array returned is the caller's own copy. ``interp-capture`` (``capture_cli``) writes
:meth:`Run.export` to one safetensors file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from interp_app.core import analysis, causal
from interp_app.core.selection import DEFAULT_HEAD, shown
from interp_app.core.store import Prompt, RunStore, encode_prompt
from interp_app.core.view import default_target, display_words, run_reference
from training import checkpoint as ckpt
from training import runtime
from training.checkpoint import CheckpointError
from training.config import ModelConfig, TrainConfig

__all__ = [
    "FORMAT",
    "TENSORS",
    "Ablation",
    "CheckpointError",
    "Export",
    "Metrics",
    "Patching",
    "Prompt",
    "Run",
    "StepCapture",
    "Timeline",
    "list_runs",
    "open_run",
]

FORMAT = "interp-capture/1"  # the export's "format" in its header

# Every tensor an export may hold: name -> (shape, dtype, meaning). The CLI's --help, the
# header's "tensors" entry and the tests all read this one table.
TENSORS: dict[str, tuple[str, str, str]] = {
    "tokens": ("[T]", "int32", "token ids of the prompt's real positions"),
    "logits": ("[T, V]", "float32", "the model's logits"),
    "tok_emb": ("[T, D]", "float32", "token embeddings"),
    "pos_emb": ("[T, D]", "float32", "position embeddings"),
    "resid": ("[L+1, T, D]", "float32", "residual stream at each layer boundary"),
    "resid_mid": ("[L, T, D]", "float32", "residual stream after attention, before the MLP"),
    "patterns": ("[L, H, T, T]", "float32", "attention patterns (query, key)"),
    "values": ("[L, H, T, K]", "float32", "each head's value vectors"),
    "head_out": ("[L, H, T, D]", "float32", "each head's own write to the residual stream"),
    "attn_bias": ("[L, D]", "float32", "attention output bias"),
    "attn_out": ("[L, T, D]", "float32", "attention block output (heads + bias)"),
    "mlp_out": ("[L, T, D]", "float32", "MLP outputs"),
    "final": ("[T, D]", "float32", "after the final LayerNorm"),
    "final_inv_std": ("[T]", "float32", "the final LayerNorm's 1/std"),
    "probs": ("[V]", "float64", "P(word) at pos"),
    "clean_probs": ("[V]", "float64", "P(word) at pos without ablation (only with --ablate)"),
    "dla": ("[C]", "float64", "DLA of each component (names: header's components)"),
    "token_attr": ("[T]", "float64", "each source token's DLA through the head"),
    "lens_top": ("[L+1, T]", "int64", "logit lens: most likely word id at each boundary"),
    "lens_prob": ("[L+1, T]", "float64", "logit lens: its probability"),
    **{
        f"head_{name}": ("[L, H]", "float32" if name == "ablation" else "float64", text)
        for name, text in analysis.METRICS.items()
    },
    "patch_heads": ("[L, H]", "float32", "patching each head's output (only with --corrupt)"),
    "patch_resid": ("[L+1, T]", "float32", "patching each residual vector (only with --corrupt)"),
}


def _copy(value: Any) -> np.ndarray:
    return np.array(value, copy=True)


@dataclass(frozen=True)
class StepCapture:
    """Everything one forward pass computes, for the prompt's ``T`` real positions."""

    run: str
    step: int
    prompt: Prompt
    words: tuple[str, ...]  # token labels as the app shows them (unknown words as UNKNOWN)
    ablate: tuple[str, ...]  # heads ablated in this pass, sorted
    mode: str  # their ablation mode
    tokens: np.ndarray  # [T] int32
    logits: np.ndarray  # [T, V]
    tok_emb: np.ndarray  # [T, D]
    pos_emb: np.ndarray  # [T, D]
    resid: np.ndarray  # [L+1, T, D]
    resid_mid: np.ndarray  # [L, T, D]
    patterns: np.ndarray  # [L, H, T, T]
    values: np.ndarray  # [L, H, T, K]
    head_out: np.ndarray  # [L, H, T, D]
    attn_bias: np.ndarray  # [L, D]
    attn_out: np.ndarray  # [L, T, D]
    mlp_out: np.ndarray  # [L, T, D]
    final: np.ndarray  # [T, D]
    final_inv_std: np.ndarray  # [T]

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors, by their export names."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in TENSORS}


@dataclass(frozen=True)
class Metrics:
    """What the panels show for one (step, prompt, target, position, head) selection."""

    run: str
    step: int
    words: tuple[str, ...]
    target: str
    target_id: int
    pos: int
    head: str  # the head of ``token_attr``
    src: int  # the source position of ``heads["attn_src"]``
    ablate: tuple[str, ...]
    mode: str
    logit: float  # logit[pos, target]
    target_prob: float  # P(target) at pos
    probs: np.ndarray  # [V] at pos
    clean_probs: np.ndarray | None  # [V] at pos without the ablation (None: nothing ablated)
    components: tuple[str, ...]  # [C] names, the final LayerNorm's bias last
    component_kinds: tuple[str, ...]  # embed, pos, head, bias, mlp, ln
    dla: np.ndarray  # [C]: sums to ``logit``
    token_attr: np.ndarray  # [T]: sums to ``head``'s entry of ``dla`` (zeros if ablated)
    heads: dict[str, np.ndarray]  # metric -> [L, H], names as ``analysis.METRICS``
    lens_top: np.ndarray  # [L+1, T] most likely word id read at each boundary
    lens_prob: np.ndarray  # [L+1, T] its probability

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors, by their export names."""
        out = {
            "probs": self.probs,
            "dla": self.dla,
            "token_attr": self.token_attr,
            "lens_top": self.lens_top,
            "lens_prob": self.lens_prob,
            **{f"head_{k}": v for k, v in self.heads.items()},
        }
        if self.clean_probs is not None:
            out["clean_probs"] = self.clean_probs
        return out


@dataclass(frozen=True)
class Ablation:
    """The prediction at ``pos`` with ``heads`` ablated, and each head's further effect."""

    run: str
    step: int
    heads: tuple[str, ...]
    mode: str
    target: str
    target_id: int
    pos: int
    logits: np.ndarray  # [T, V] of the ablated model
    probs: np.ndarray  # [V] at pos, ablated
    clean_probs: np.ndarray  # [V] at pos, nothing ablated
    effects: np.ndarray  # [L, H] change in log P(target) when each head is also ablated

    @property
    def target_prob(self) -> float:
        return float(self.probs[self.target_id])

    @property
    def clean_target_prob(self) -> float:
        return float(self.clean_probs[self.target_id])


@dataclass(frozen=True)
class Patching:
    """Activation patching from ``clean`` into ``corrupt`` (never ablated), normalised so
    that 0 is the corrupted run's logit difference target - answer and 1 the clean run's."""

    run: str
    step: int
    clean: tuple[str, ...]  # words
    corrupt: tuple[str, ...]
    target: str
    answer: str
    pos: int
    heads: np.ndarray  # [L, H] patching each head's output
    resid: np.ndarray  # [L+1, T] patching each residual vector
    clean_diff: float  # logit[target] - logit[answer], clean prompt
    corrupt_diff: float  # the same, corrupted prompt

    def arrays(self) -> dict[str, np.ndarray]:
        return {"patch_heads": self.heads, "patch_resid": self.resid}


@dataclass(frozen=True)
class Timeline:
    """The head metrics and the prediction at every readable step (the timeline panels)."""

    run: str
    steps: list[int]  # [S]
    unreadable: list[int]  # steps whose checkpoint cannot be read
    target: str
    target_id: int
    pos: int
    src: int
    ablate: tuple[str, ...]
    mode: str
    heads: dict[str, np.ndarray]  # metric -> [S, L, H], names as ``analysis.METRICS``
    probs: np.ndarray  # [S, V] at pos


@dataclass(frozen=True)
class Export:
    """What ``interp-capture`` writes: named tensors and a JSON-able header."""

    tensors: dict[str, np.ndarray]
    header: dict[str, Any]


def list_runs(root: str | Path) -> list[str]:
    """The runs under ``root`` (none if it does not exist)."""
    return ckpt.list_runs(root)


def open_run(root: str | Path, name: str) -> Run:
    """Open run ``name`` under the checkpoint root ``root``.

    Sets XLA's CPU flags for this process first (``training.runtime.configure``: a no-op
    once JAX computes, and flags already in ``XLA_FLAGS`` win), as every entry point does.
    """
    runtime.configure()
    return Run(RunStore(root), name)


class Run:
    """One run, read through a :class:`RunStore` (whose caches the app shares with this)."""

    def __init__(self, store: RunStore, name: str):
        self.store = store
        self.name = name
        store.info(name)  # CheckpointError for an unknown run

    @property
    def info(self) -> ckpt.RunInfo:
        """The run's metadata (re-read when run.json changes: a resumed run)."""
        return self.store.info(self.name)

    def __repr__(self) -> str:
        return f"Run({self.name!r}, root={str(self.store.root)!r}, steps={len(self.steps)})"

    @property
    def steps(self) -> list[int]:
        """Complete checkpoints, oldest first (re-listed: a training run adds steps)."""
        return self.store.steps(self.name)

    @property
    def config(self) -> ModelConfig:
        return self.info.model

    @property
    def train_config(self) -> TrainConfig:
        return self.info.train

    @property
    def vocab(self) -> tuple[str, ...]:
        return self.info.tokenizer.vocab

    def params(self, step: int | None) -> dict[str, np.ndarray]:
        """The step's parameters by name (float32 copies)."""
        step = self.check_step(step)
        return {k: _copy(v) for k, v in self.store.params(self.name, step).items()}

    # -- checking input ----------------------------------------------------------------

    def check_step(self, step: int | None) -> int:
        """``step`` if the run has it; None is the latest."""
        steps = self.steps
        if not steps:
            raise CheckpointError(f"run {self.name!r} has no complete checkpoint yet")
        if step is None:
            return steps[-1]
        if isinstance(step, bool) or not isinstance(step, int | np.integer):
            raise ValueError(f"step must be an integer, not {shown(step)}")
        if int(step) not in steps:
            raise CheckpointError(
                f"step {step} does not exist in run {self.name!r} "
                f"(its {len(steps)} steps run from {steps[0]} to {steps[-1]})"
            )
        return int(step)

    def encode(self, prompt: str | Prompt, what: str = "prompt") -> Prompt:
        """The prompt as the model sees it; a prompt without words is a ValueError."""
        if isinstance(prompt, Prompt):
            prompt = prompt.text
        if not isinstance(prompt, str):
            raise ValueError(f"the {what} must be text, not {shown(prompt)}")
        encoded = encode_prompt(self.info.tokenizer, self.config.context, prompt)
        if encoded.length == 0:
            raise ValueError(f"the {what} {shown(prompt)} has no words")
        return encoded

    def check_pos(self, prompt: Prompt, pos: int | None) -> int:
        """A position of the prompt (negative counts from the end); None is the last."""
        n = prompt.length
        if pos is None:
            return n - 1
        if isinstance(pos, bool) or not isinstance(pos, int | np.integer):
            raise ValueError(f"position must be an integer, not {shown(pos)}")
        if not -n <= pos < n:
            raise ValueError(f"position {pos} is outside the prompt's {n} tokens")
        return int(pos) % n

    def _check_src(self, src: int, pos: int) -> int:
        """The source position of the ``attn_src`` metric: at most ``pos`` (causal)."""
        if isinstance(src, bool) or not isinstance(src, int | np.integer) or not 0 <= src <= pos:
            raise ValueError(f"source position {shown(src)} must be between 0 and pos ({pos})")
        return int(src)

    def check_target(self, target: str, what: str = "target") -> int:
        """The id of a word of the vocabulary."""
        if not isinstance(target, str) or target not in self.info.tokenizer.index:
            raise ValueError(f"{what} {shown(target)} is not in run {self.name!r}'s vocabulary")
        return self.info.tokenizer.index[target]

    def default_target(self, step: int, prompt: Prompt, pos: int) -> str:
        """The app's default target: the clean model's most likely word at ``pos``, never
        PADDING or UNKNOWN."""
        logits = np.asarray(self.store.capture(self.name, step, prompt).logits[0, pos])
        return default_target(logits, self.vocab)

    def check_head(self, head: str | tuple[int, int] | None) -> tuple[int, int]:
        """(layer, head) from ``"L1H0"`` or ``(1, 0)``; None is the app's default head."""
        cfg = self.config
        if head is None:
            return min(DEFAULT_HEAD[0], cfg.n_layers - 1), min(DEFAULT_HEAD[1], cfg.n_heads - 1)
        if isinstance(head, tuple) and len(head) == 2:
            head = analysis.head_name(*head)
        parsed = analysis.parse_head(head, cfg.n_layers, cfg.n_heads) if head else None
        if parsed is None:
            raise ValueError(
                f"head {shown(head)} does not exist: heads are L0H0 to "
                f"L{cfg.n_layers - 1}H{cfg.n_heads - 1}"
            )
        return parsed

    def check_ablation(
        self, heads: Iterable[str | tuple[int, int]], mode: str
    ) -> tuple[tuple[str, ...], str]:
        """Sorted unique head names and a mode of ``causal.MODES``."""
        if isinstance(heads, str):
            heads = [h for h in (p.strip() for p in heads.split(",")) if h]
        names = tuple(sorted({analysis.head_name(*self.check_head(h)) for h in heads}))
        if mode not in causal.MODES:
            raise ValueError(f"ablation mode {shown(mode)} is not one of {', '.join(causal.MODES)}")
        if names and mode in causal.REFERENCE_MODES and run_reference(self.info) is None:
            raise ValueError(
                f"run {self.name!r} does not store its validation lines, so {mode} ablation "
                "has no reference set: use mode 'mean' or 'zero'"
            )
        return names, mode

    # -- numbers -------------------------------------------------------------------------

    def capture(
        self,
        step: int | None,
        prompt: str | Prompt,
        *,
        ablate: Iterable[str | tuple[int, int]] = (),
        mode: str = "zero",
    ) -> StepCapture:
        """One forward pass (``ablate``: heads replaced as in ``causal.ablation``)."""
        step = self.check_step(step)
        p = self.encode(prompt)
        heads, mode = self.check_ablation(ablate, mode)
        cap = self.store.capture(self.name, step, p, heads, mode)
        n = p.length
        return StepCapture(
            run=self.name,
            step=step,
            prompt=p,
            words=tuple(display_words(p, self.vocab)),
            ablate=heads,
            mode=mode,
            tokens=np.asarray(p.ids, np.int32),
            logits=_copy(cap.logits[0, :n]),
            tok_emb=_copy(cap.tok_emb[0, :n]),
            pos_emb=_copy(cap.pos_emb[:n]),
            resid=_copy(cap.resid[0, :, :n]),
            resid_mid=_copy(cap.resid_mid[0, :, :n]),
            patterns=_copy(cap.patterns[0, :, :, :n, :n]),
            values=_copy(cap.values[0, :, :, :n]),
            head_out=_copy(cap.head_out[0, :, :, :n]),
            attn_bias=_copy(cap.attn_bias),
            attn_out=_copy(cap.attn_out[0, :, :n]),
            mlp_out=_copy(cap.mlp_out[0, :, :n]),
            final=_copy(cap.final[0, :n]),
            final_inv_std=_copy(cap.final_inv_std[0, :n]),
        )

    def _ablation_effects(
        self, step: int, prompt: Prompt, pos: int, target: int, heads: tuple[str, ...], mode: str
    ) -> np.ndarray:
        """[L, H] as the head grid's "ablation" metric: each head ablated on top of ``heads``."""
        graphdef, state = self.store.state(self.name, step)
        cfg = self.config
        reference = run_reference(self.info) if mode in causal.REFERENCE_MODES else None
        return np.asarray(
            causal.ablation_effects(
                graphdef,
                state,
                jnp.asarray([prompt.padded]),
                causal.head_mask(heads, cfg.n_layers, cfg.n_heads),
                mode,
                prompt.length,
                pos,
                target,
                reference,
            )
        )

    def _probs(
        self, step: int, prompt: Prompt, pos: int, heads: tuple[str, ...], mode: str
    ) -> np.ndarray:
        """[V] P(word) at ``pos``, as the prediction panel computes it."""
        cap = self.store.capture(self.name, step, prompt, heads, mode)
        return analysis.softmax(np.asarray(cap.logits[0, pos], np.float64))

    def metrics(
        self,
        step: int | None,
        prompt: str | Prompt,
        *,
        target: str | None = None,
        pos: int | None = None,
        head: str | tuple[int, int] | None = None,
        src: int = 0,
        ablate: Iterable[str | tuple[int, int]] = (),
        mode: str = "zero",
    ) -> Metrics:
        """Every number the panels show for this selection: DLA per component, ``head``'s
        per-token attribution, every head metric, the logit lens, the prediction. Defaults
        are the app's: the last position, the clean model's most likely word, head L1H0."""
        step = self.check_step(step)
        p = self.encode(prompt)
        pos = self.check_pos(p, pos)
        layer, h = self.check_head(head)
        src = self._check_src(src, pos)
        heads, mode = self.check_ablation(ablate, mode)
        target = self.default_target(step, p, pos) if target is None else target
        t = self.check_target(target)
        cap = self.store.capture(self.name, step, p, heads, mode)
        params = self.store.params(self.name, step)
        n = p.length
        head_metrics = analysis.head_metrics(cap, params, pos, t, n, src)
        head_metrics["ablation"] = self._ablation_effects(step, p, pos, t, heads, mode)
        comps, attr, ln_bias = analysis.direct_logit_attribution(cap, params, 0, pos, t)
        lens_top, lens_prob = analysis.logit_lens(cap, params, self.config.ln_eps)
        name = analysis.head_name(layer, h)
        token_attr = (
            np.zeros(n)  # an ablated head's output is a constant, not a mix of sources
            if name in heads
            else analysis.source_attributions(cap, params, 0, layer, h, pos, t)[:n]
        )
        probs = self._probs(step, p, pos, heads, mode)
        return Metrics(
            run=self.name,
            step=step,
            words=tuple(display_words(p, self.vocab)),
            target=target,
            target_id=t,
            pos=pos,
            head=name,
            src=src,
            ablate=heads,
            mode=mode,
            logit=float(cap.logits[0, pos, t]),
            target_prob=float(probs[t]),
            probs=probs,
            clean_probs=self._probs(step, p, pos, (), "zero") if heads else None,
            components=(*comps.names, "final LN bias"),
            component_kinds=(*comps.kinds, "ln"),
            dla=np.append(attr, ln_bias),
            token_attr=_copy(token_attr),
            heads={k: _copy(v) for k, v in head_metrics.items()},
            lens_top=_copy(lens_top[:, :n]),
            lens_prob=_copy(lens_prob[:, :n]),
        )

    def ablate(
        self,
        step: int | None,
        prompt: str | Prompt,
        heads: Iterable[str | tuple[int, int]],
        *,
        mode: str = "zero",
        target: str | None = None,
        pos: int | None = None,
    ) -> Ablation:
        """Ablate ``heads`` (``zero``, ``mean`` over this prompt or ``valid-mean`` over the
        run's validation lines): the prediction before and after, and each head's further
        effect on log P(target)."""
        step = self.check_step(step)
        p = self.encode(prompt)
        pos = self.check_pos(p, pos)
        names, mode = self.check_ablation(heads, mode)
        target = self.default_target(step, p, pos) if target is None else target
        t = self.check_target(target)
        cap = self.store.capture(self.name, step, p, names, mode)
        return Ablation(
            run=self.name,
            step=step,
            heads=names,
            mode=mode,
            target=target,
            target_id=t,
            pos=pos,
            logits=_copy(cap.logits[0, : p.length]),
            probs=self._probs(step, p, pos, names, mode),
            clean_probs=self._probs(step, p, pos, (), "zero"),
            effects=self._ablation_effects(step, p, pos, t, names, mode),
        )

    def patch(
        self,
        step: int | None,
        clean: str | Prompt,
        corrupt: str | Prompt,
        *,
        target: str | None = None,
        answer: str | None = None,
        pos: int | None = None,
    ) -> Patching:
        """Patch the clean prompt's activations into the corrupted one, one head output or
        residual vector at a time. ``answer`` defaults to the app's: the corrupted prompt's
        most likely word other than the target. A ValueError when the prompts differ in
        length, or when their logit differences are too close to normalise by."""
        step = self.check_step(step)
        c, k = self.encode(clean), self.encode(corrupt, "corrupted prompt")
        if c.length != k.length:
            raise ValueError(
                f"the corrupted prompt has {k.length} tokens and the prompt {c.length}: "
                "patching needs the same number of tokens"
            )
        pos = self.check_pos(c, pos)
        target = self.default_target(step, c, pos) if target is None else target
        t = self.check_target(target)
        if answer is None:
            corrupt_logits = np.asarray(self.store.capture(self.name, step, k).logits[0, pos])
            a = next(int(i) for i in np.argsort(-corrupt_logits) if int(i) != t)
        else:
            a = self.check_target(answer, "answer")
            if a == t:
                raise ValueError("the answer must be another word than the target")
        graphdef, state = self.store.state(self.name, step)
        result = causal.patching(
            graphdef, state, jnp.asarray([c.padded]), jnp.asarray([k.padded]), pos, t, a
        )
        m_clean, m_corrupt = float(result["clean"]), float(result["corrupt"])
        if not bool(result["normalised"]):
            raise ValueError(
                f"the prompts give almost the same logit difference {target!r} - "
                f"{self.vocab[a]!r} ({m_clean:+.4f} and {m_corrupt:+.4f}), too close to "
                f"normalise (at most {causal.PATCH_MIN_GAP:.1%} of the logit scale apart)"
            )
        return Patching(
            run=self.name,
            step=step,
            clean=tuple(display_words(c, self.vocab)),
            corrupt=tuple(display_words(k, self.vocab)),
            target=target,
            answer=self.vocab[a],
            pos=pos,
            heads=np.asarray(result["heads"]),
            resid=np.asarray(result["resid"])[:, : c.length],
            clean_diff=m_clean,
            corrupt_diff=m_corrupt,
        )

    def timeline(
        self,
        prompt: str | Prompt,
        *,
        target: str | None = None,
        pos: int | None = None,
        src: int = 0,
        ablate: Iterable[str | tuple[int, int]] = (),
        mode: str = "zero",
    ) -> Timeline:
        """Every head metric and the prediction at every step, in the timeline panels' one
        vectorised pass (float32: equal to :meth:`metrics` at each step up to rounding).
        ``target`` defaults to the latest step's most likely word."""
        latest = self.check_step(None)
        p = self.encode(prompt)
        pos = self.check_pos(p, pos)
        src = self._check_src(src, pos)
        heads, mode = self.check_ablation(ablate, mode)
        target = self.default_target(latest, p, pos) if target is None else target
        t = self.check_target(target)
        steps, values, bad = self.store.timeline(self.name, p, pos, t, src, heads, mode)
        if not steps:
            raise CheckpointError(f"no step of run {self.name!r} can be read")
        return Timeline(
            run=self.name,
            steps=list(steps),
            unreadable=list(bad),
            target=target,
            target_id=t,
            pos=pos,
            src=src,
            ablate=heads,
            mode=mode,
            heads={k: _copy(values[k]) for k in analysis.METRICS},
            probs=_copy(values["probs"]),
        )

    def export(
        self,
        step: int | None,
        prompt: str | Prompt,
        *,
        target: str | None = None,
        pos: int | None = None,
        head: str | tuple[int, int] | None = None,
        src: int = 0,
        ablate: Iterable[str | tuple[int, int]] = (),
        mode: str = "zero",
        corrupt: str | None = None,
    ) -> Export:
        """The capture, its metrics and (with ``corrupt``) patching, as the tensors of
        :data:`TENSORS` and a header (``interp-capture``'s file)."""
        m = self.metrics(
            step, prompt, target=target, pos=pos, head=head, src=src, ablate=ablate, mode=mode
        )
        cap = self.capture(m.step, prompt, ablate=m.ablate, mode=m.mode)
        tensors = {**cap.arrays(), **m.arrays()}
        patched = None
        if corrupt is not None:
            patched = self.patch(m.step, cap.prompt, corrupt, target=m.target, pos=m.pos)
            tensors.update(patched.arrays())
        header = export_header(self, cap, m, patched, corrupt)
        header["tensors"] = {k: _describe(k, v) for k, v in tensors.items()}
        return Export(tensors, header)


def _describe(name: str, value: np.ndarray) -> dict[str, Any]:
    shape, _, meaning = TENSORS[name]
    return {"axes": shape, "shape": list(value.shape), "dtype": str(value.dtype), "doc": meaning}


def export_header(
    run: Run, cap: StepCapture, m: Metrics, patched: Patching | None, corrupt: str | None
) -> dict[str, Any]:
    """Everything an export needs besides its tensors, JSON-able."""
    header: dict[str, Any] = {
        "format": FORMAT,
        "run": run.name,
        "step": m.step,
        "prompt": cap.prompt.text,
        "tokens": list(cap.prompt.ids),
        "words": list(cap.words),
        "dropped": cap.prompt.dropped,
        "unknown": list(cap.prompt.unknown),
        "target": m.target,
        "target_id": m.target_id,
        "pos": m.pos,
        "head": m.head,
        "src": m.src,
        "ablate": list(m.ablate),
        "mode": m.mode,
        "logit": m.logit,
        "target_prob": m.target_prob,
        "components": list(m.components),
        "component_kinds": list(m.component_kinds),
        "head_metrics": dict(analysis.METRICS),
        "vocab": list(run.vocab),
        "model": run.config.to_dict(),
        "train": run.train_config.to_dict(),
    }
    if patched is not None:
        header["patching"] = {
            "corrupt": corrupt,
            "corrupt_words": list(patched.corrupt),
            "answer": patched.answer,
            "clean_diff": patched.clean_diff,
            "corrupt_diff": patched.corrupt_diff,
        }
    return header


def tensor_table(tensors: Mapping[str, tuple[str, str, str]] = TENSORS) -> str:
    """The tensor names, shapes, dtypes and meanings, one line each (for ``--help``)."""
    width = max(len(k) for k in tensors)
    shape_w = max(len(v[0]) for v in tensors.values())
    return "\n".join(
        f"  {k:<{width}}  {shape:<{shape_w}}  {dtype:<7}  {meaning}"
        for k, (shape, dtype, meaning) in tensors.items()
    )
