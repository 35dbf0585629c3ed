"""What the public API returns: one step's capture, its metrics, an ablation, a patching
experiment and the all-step timeline, each a frozen record of numpy arrays (``T`` the
prompt's real tokens; the other axes as in ``api``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from interp_app.core.prompt import Prompt


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
        """The tensors, by their export names (every array field)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if isinstance(v, np.ndarray)}


@dataclass(frozen=True)
class Query:
    """Where a prediction is read: a step of a run, a target word at a position."""

    run: str
    step: int
    target: str
    target_id: int
    pos: int

    def query(self) -> dict[str, Any]:
        """These fields by name (another record about the same prediction takes them)."""
        return {f.name: getattr(self, f.name) for f in fields(Query)}


@dataclass(frozen=True)
class Metrics(Query):
    """What the panels show for one (step, prompt, target, position, head) selection."""

    words: tuple[str, ...]
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
    heads: dict[str, np.ndarray]  # metric -> [L, H], names as ``heads.METRICS``
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
class Ablation(Query):
    """The prediction at ``pos`` with ``heads`` ablated, and each head's further effect."""

    heads: tuple[str, ...]
    mode: str
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
    heads: dict[str, np.ndarray]  # metric -> [S, L, H], names as ``heads.METRICS``
    probs: np.ndarray  # [S, V] at pos
