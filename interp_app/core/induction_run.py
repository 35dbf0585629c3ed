"""The induction lab's metrics over a run's checkpoints (``interp_app.core.induction`` applied
to every saved step of an ``interp-train --task induction`` run, on its held-out sequences).

This is what a head timeline of the induction score, a loss-by-position view and a
composition view would draw; the acceptance test and ``bench/induction_bench.py`` read it.

:func:`recorded` needs no model at all: the trainer writes each checkpoint's held-out loss
(overall, on the repeated part, by position) into ``metrics.jsonl``, and the run's phase
change (:func:`phase_steps`) is read from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from interp_app.core import induction as m
from training import checkpoint as ckpt
from training.induction.config import InductionConfig
from training.induction.data import heldout, repeated_mask
from training.metrics_log import increasing, read_metrics
from training.model.interp import Intervention
from training.model.params import unflatten_params


@dataclass(frozen=True)
class Timeline:
    """Per saved step (N steps, L layers, H heads, T positions)."""

    steps: np.ndarray  # [N]
    repeat_loss: np.ndarray  # [N] held-out loss on the repeated part
    by_position: np.ndarray  # [N, T] held-out loss at each position
    icl: np.ndarray  # [N] loss at the last position minus at position T // 4
    induction: np.ndarray  # [N, L, H]
    duplicate: np.ndarray  # [N, L, H]
    previous: np.ndarray  # [N, L, H]
    composition: np.ndarray  # [N, 3, H, H] Q, K, V of layer 0 into layer 1

    def best_head(self, metric: str, layer: int, at: int = -1) -> int:
        """The head of ``layer`` with the highest ``metric`` at step index ``at``."""
        return int(np.nanargmax(getattr(self, metric)[at, layer]))


@dataclass(frozen=True)
class LabRun:
    """A run's model and its held-out data, ready to capture any step."""

    path: Path
    cfg: InductionConfig
    mc: Any
    tokens: np.ndarray  # [B, T + 1]
    lengths: np.ndarray  # [B] segment lengths
    offsets: np.ndarray  # [B] repeat offsets

    @classmethod
    def open(cls, root: str | Path, name: str, sequences: int = 128) -> LabRun:
        info = ckpt.read_run(root, name)
        task = info.meta.get("induction")
        if not isinstance(task, dict):
            raise ValueError(f"run {name!r} was not trained with --task induction")
        cfg = InductionConfig.from_dict(task)
        tokens, lengths, offsets = (a[:sequences] for a in heldout(cfg))
        return cls(info.path, cfg, info.model, tokens, lengths, offsets)

    @property
    def mask(self) -> np.ndarray:
        return repeated_mask(self.lengths, self.cfg.context)

    def params(self, step: int) -> tuple[nnx.GraphDef, nnx.State]:
        return unflatten_params(self.mc, ckpt.load_params(self.path, step))


@dataclass(frozen=True)
class Recorded:
    """The held-out losses the trainer wrote at each checkpoint (N of them, T positions),
    on all of the config's held-out sequences (``valid_sequences``)."""

    steps: np.ndarray  # [N]
    valid_loss: np.ndarray  # [N] every position
    repeat_loss: np.ndarray  # [N] the repeated part
    by_position: np.ndarray  # [N, T]
    icl: np.ndarray  # [N] loss at the last position minus at position T // 4
    early: int  # that early position

    def phase_steps(self) -> dict[str, int | None]:
        """:func:`phase_steps` of this run's repeated-part loss."""
        return phase_steps(self.steps, self.repeat_loss)


def recorded(root: str | Path, name: str) -> Recorded:
    """The held-out losses of the run's ``metrics.jsonl`` at its complete checkpoints."""
    info = ckpt.read_run(root, name)
    task = info.meta.get("induction")
    if not isinstance(task, dict):
        raise ValueError(f"run {name!r} was not trained with --task induction")
    context = InductionConfig.from_dict(task).context
    return recorded_from(read_metrics(info.path), ckpt.list_steps(info.path), context)


def recorded_from(records: list[dict[str, Any]], complete: list[int], context: int) -> Recorded:
    """:class:`Recorded` from metrics records: the last record of each complete step that
    carries the held-out losses; a step without them (a run from before they were written,
    or a record cut short) is left out."""
    done = set(complete)
    rows = [
        r
        for r in increasing(records)
        if r["step"] in done
        and isinstance(r.get("loss_by_position"), list)
        and len(r["loss_by_position"]) == context
        and isinstance(r.get("repeat_loss"), int | float)
        and isinstance(r.get("valid_loss"), int | float)
    ]
    by_position = np.asarray([r["loss_by_position"] for r in rows], np.float64)
    by_position = by_position.reshape(len(rows), context)
    early = context // 4
    return Recorded(
        steps=np.asarray([r["step"] for r in rows], np.int64),
        valid_loss=np.asarray([r["valid_loss"] for r in rows], np.float64),
        repeat_loss=np.asarray([r["repeat_loss"] for r in rows], np.float64),
        by_position=by_position,
        icl=m.icl_score(by_position, early=early),
        early=early,
    )


def phase_steps(steps: np.ndarray, repeat_loss: np.ndarray) -> dict[str, int | None]:
    """The phase change of a run: the steps by which its repeated-part loss made 10%, 50%
    and 90% of its total drop (``start``, ``middle``, ``end``; None where never)."""
    return {
        key: m.crossing_step(steps, repeat_loss, fraction)
        for key, fraction in (("start", 0.1), ("middle", 0.5), ("end", 0.9))
    }


@partial(jax.jit, static_argnums=0)
def _patterns_logits(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array) -> tuple:
    """Patterns [L, B, H, T, T] and logits [B, T, V] of one step (one compilation a run):
    the rest of the capture is dropped inside the compiled pass, never sent to the host."""
    cap = nnx.merge(graphdef, params)(tokens, capture=True)
    return jnp.moveaxis(cap.patterns, 1, 0), cap.logits


def heldout_scores(lab: LabRun, graphdef: nnx.GraphDef, params: nnx.State) -> dict[str, Any]:
    """One step's numbers on the held-out sequences: the repeated part's loss, the loss by
    position, the ICL score and the induction, duplicate-token and previous-token scores of
    every head [L, H] (the app's views call this on their cached parameters)."""
    patterns, logits = (
        np.asarray(a) for a in _patterns_logits(graphdef, params, lab.tokens[:, :-1])
    )
    mask = lab.mask
    duplicate_t, induction_t = m.repeat_targets(lab.offsets, mask)
    losses = m.token_losses(logits, lab.tokens[:, 1:])
    by_position = m.loss_by_position(losses)
    return {
        "repeat_loss": float((losses * mask).sum() / mask.sum()),
        "by_position": by_position,
        "icl": float(m.icl_score(by_position, early=lab.cfg.context // 4)),
        "induction": m.attention_score(patterns, induction_t),
        "duplicate": m.attention_score(patterns, duplicate_t),
        "previous": m.attention_score(patterns, m.previous_targets(*mask.shape)),
    }


def step_metrics(lab: LabRun, step: int) -> dict[str, Any]:
    """Every metric of one saved step: :func:`heldout_scores` and the composition scores."""
    flat = ckpt.load_params(lab.path, step)
    layers = [
        (
            flat[f"blocks.{i}.attn.w_qkv"],
            flat[f"blocks.{i}.attn.w_o"],
            flat[f"blocks.{i}.ln1.scale"],
        )
        for i in (0, 1)
    ]
    return {
        **heldout_scores(lab, *unflatten_params(lab.mc, flat)),
        "composition": m.composition_scores(layers[0], layers[1]),
    }


def timeline(root: str | Path, name: str, sequences: int = 128) -> Timeline:
    """Every metric at every saved step of the run."""
    lab = LabRun.open(root, name, sequences)
    steps = ckpt.list_steps(lab.path)
    rows = [step_metrics(lab, s) for s in steps]
    return Timeline(np.asarray(steps), **{k: np.stack([r[k] for r in rows]) for k in rows[0]})


def ablated_repeat_loss(lab: LabRun, step: int, layer: int, head: int | tuple[int, ...]) -> float:
    """Held-out loss on the repeated part with one head's output zeroed (or several heads'
    of ``layer``, given as a tuple)."""
    graphdef, params = lab.params(step)
    cfg = lab.mc
    b, t = lab.tokens.shape[0], cfg.context
    keep = np.ones((cfg.n_layers, cfg.n_heads), np.float32)
    keep[layer, list(head) if isinstance(head, tuple) else head] = 0.0
    intervention = Intervention(
        head_keep=jnp.asarray(keep),
        head_value=jnp.zeros((b, cfg.n_layers, cfg.n_heads, t, cfg.d_model)),
        resid_keep=jnp.ones((cfg.n_layers + 1, t)),
        resid_value=jnp.zeros((b, cfg.n_layers + 1, t, cfg.d_model)),
    )
    model = nnx.merge(graphdef, params)
    logits = np.asarray(model(jnp.asarray(lab.tokens[:, :-1]), intervention=intervention))
    losses = m.token_losses(logits, lab.tokens[:, 1:])
    mask = lab.mask
    return float((losses * mask).sum() / mask.sum())


def phase_figures(tl: Timeline) -> dict[str, Any]:
    """Issue #16's acceptance figures of one run: the repeated-part loss's 10/50/90%
    crossings, the best layer-1 induction head's and best layer-0 previous-token head's
    scores and half-rise steps, and whether that pair's K-composition is the largest."""
    steps = tl.steps
    ind_head, prev_head = tl.best_head("induction", 1), tl.best_head("previous", 0)
    induction, previous = tl.induction[:, 1, ind_head], tl.previous[:, 0, prev_head]
    k_last = tl.composition[-1, 1]  # [H0, H1]
    return {
        "loss_10": m.crossing_step(steps, tl.repeat_loss, 0.1),
        "loss_50": m.crossing_step(steps, tl.repeat_loss, 0.5),
        "loss_90": m.crossing_step(steps, tl.repeat_loss, 0.9),
        "repeat_loss": (float(tl.repeat_loss[0]), float(tl.repeat_loss[-1])),
        "induction_head": f"L1H{ind_head}",
        "induction": (float(induction[0]), float(induction[-1])),
        "induction_50": m.crossing_step(steps, induction, 0.5),
        "previous_head": f"L0H{prev_head}",
        "previous": (float(previous[0]), float(previous[-1])),
        "previous_50": m.crossing_step(steps, previous, 0.5),
        "k_composition": float(k_last[prev_head, ind_head]),
        "k_pair_is_largest": bool(k_last[prev_head, ind_head] == k_last.max()),
        "icl": (float(tl.icl[0]), float(tl.icl[-1])),
    }
