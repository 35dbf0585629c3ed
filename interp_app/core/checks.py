"""A run as the public API reads it, and the checks every API call makes on its input.

Bad input raises one plain line: :class:`~training.checkpoint.CheckpointError` (a
``ValueError``) for an unknown or unreadable run or step, ``ValueError`` for anything else.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from interp_app.core import causal
from interp_app.core.analyzer import Analyzer
from interp_app.core.heads import head_name, parse_head
from interp_app.core.prompt import Prompt
from interp_app.core.selection import DEFAULT_HEAD, shown
from training import checkpoint as ckpt
from training.checkpoint import CheckpointError
from training.config import TrainConfig
from training.model.config import ModelConfig
from training.tokenizer import TextTokenizer


class CheckedRun:
    """One run, read through an :class:`Analyzer` (whose caches the app shares with this),
    with the checks of every argument the API takes."""

    def __init__(self, analyzer: Analyzer, name: str):
        self.analyzer = analyzer
        self.name = name
        analyzer.store.info(name)  # CheckpointError for an unknown run

    @property
    def store(self):
        """The run store under the analyzer (files only)."""
        return self.analyzer.store

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
    def train_config(self) -> TrainConfig | None:
        """None for a run that ``interp-train`` did not make (an import, a user's loop)."""
        return self.info.train

    @property
    def tokenizer(self) -> TextTokenizer:
        return self.info.tokenizer

    @property
    def vocab(self) -> tuple[str, ...]:
        """One label per id (``tokenizer.vocab``)."""
        return self.info.tokenizer.vocab

    def params(self, step: int | None) -> dict[str, np.ndarray]:
        """The step's parameters by name (float32 copies)."""
        step = self.check_step(step)
        return {k: np.array(v, copy=True) for k, v in self.store.params(self.name, step).items()}

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
        encoded = self.analyzer.encode(self.name, prompt)
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

    def check_src(self, src: int, pos: int) -> int:
        """The source position of the ``attn_src`` metric: at most ``pos`` (causal)."""
        if isinstance(src, bool) or not isinstance(src, int | np.integer) or not 0 <= src <= pos:
            raise ValueError(f"source position {shown(src)} must be between 0 and pos ({pos})")
        return int(src)

    def check_target(self, target: str, what: str = "target") -> int:
        """The id of a word of the vocabulary (a token's label: ``run.vocab``)."""
        if not isinstance(target, str) or target not in self.info.tokenizer.index:
            raise ValueError(f"{what} {shown(target)} is not in run {self.name!r}'s vocabulary")
        return self.info.tokenizer.index[target]

    def default_target(self, step: int, prompt: Prompt, pos: int) -> str:
        """The app's default target: the clean model's most likely word at ``pos``, never
        PADDING or UNKNOWN."""
        return self.analyzer.default_target(self.name, step, prompt, pos)

    def check_head(self, head: str | tuple[int, int] | None) -> tuple[int, int]:
        """(layer, head) from ``"L1H0"`` or ``(1, 0)``; None is the app's default head."""
        cfg = self.config
        if head is None:
            return min(DEFAULT_HEAD[0], cfg.n_layers - 1), min(DEFAULT_HEAD[1], cfg.n_heads - 1)
        if isinstance(head, tuple) and len(head) == 2:
            head = head_name(*head)
        parsed = parse_head(head, cfg.n_layers, cfg.n_heads) if isinstance(head, str) else None
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
        names = tuple(sorted({head_name(*self.check_head(h)) for h in heads}))
        if mode not in causal.MODES:
            raise ValueError(f"ablation mode {shown(mode)} is not one of {', '.join(causal.MODES)}")
        if names and mode in causal.REFERENCE_MODES and not self.has_reference():
            what = "has no reference text" if self.info.train is None else "does not store"
            raise ValueError(
                f"run {self.name!r} {what} its validation lines, so {mode} ablation has no "
                "reference set: use mode 'mean' or 'zero'"
            )
        return names, mode

    def has_reference(self) -> bool:
        """Whether the run's validation lines (``valid-mean``'s reference set) are known."""
        return self.analyzer.reference_lines(self.name) is not None
