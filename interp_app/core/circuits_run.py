"""Circuits of a run: the metric and the prompt pair chosen as the app chooses them, every
readable step scored in ``circuits``' vectorised pass, the result cached per query.

Two metrics:

- ``logit_diff`` (any run): ``logit[pos, target] - logit[pos, answer]`` on the prompt,
  against the corrupted prompt (the patching panel's pair: same number of tokens). The
  target defaults to the latest step's most likely word, the answer to the corrupted
  prompt's most likely word other than the target at the latest step: one metric for
  every step, so scores compare over training.
- ``repeat_loss`` (runs of ``interp-train --task induction``): the mean next-token loss on
  the repeated part of the run's held-out sequences (``training.induction.data``), against
  the same sequences with the first copy of the segment replaced by other tokens (nothing
  left to copy). Lower is better, so its scores are mostly positive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from interp_app.core.circuits import IG_STEPS, LogitDiff, RepeatLoss, scores_over_steps
from interp_app.core.circuits_graph import Graph
from interp_app.core.circuits_record import Circuits
from interp_app.core.prompt import Prompt, display_words
from interp_app.core.prompt_pair import check_pair
from training.checkpoint import CheckpointError

if TYPE_CHECKING:
    from interp_app.core.checks import CheckedRun

SEQUENCES = 32  # held-out sequences of an induction run's metric
CORRUPT_SEED = 17  # the replacement tokens of the corrupted copies


def _tokens(prompt: Prompt) -> np.ndarray:
    return np.asarray([prompt.padded], np.int32)


def _check_ig_steps(ig_steps: int) -> int:
    if isinstance(ig_steps, bool) or not isinstance(ig_steps, int | np.integer):
        raise ValueError(f"ig_steps must be an integer, not {ig_steps!r}")
    if not 1 <= ig_steps <= 64:
        raise ValueError(f"ig_steps must be between 1 and 64, got {ig_steps}")
    return int(ig_steps)


def _score(run: CheckedRun, key: tuple, clean, corrupt, query, ig_steps: int) -> dict:
    """Every readable step's scores, cached per run generation and query."""

    def compute() -> tuple[list[int], list[int], dict[str, np.ndarray]]:
        steps, chunks, bad = run.store.stacked(run.name, run.steps)
        if not steps:
            raise CheckpointError(f"no step of run {run.name!r} can be read")
        out = scores_over_steps(chunks, len(steps), run.config, clean, corrupt, query, ig_steps)
        for value in out.values():
            value.flags.writeable = False
        return steps, bad, out

    steps, bad, out = run.analyzer.memo(run.name, ("circuits", *key, tuple(run.steps)), compute)
    return {"steps": np.asarray(steps), "unreadable": tuple(bad), **out}


def _record(run: CheckedRun, scored: dict, ig_steps: int, **fields) -> Circuits:
    graph = Graph.of(run.config)
    receiver, sender = graph.edge_index
    return Circuits(
        run=run.name,
        ig_steps=ig_steps,
        senders=graph.senders,
        receivers=graph.receivers,
        edges=graph.edges,
        unreadable=scored["unreadable"],
        steps=scored["steps"].copy(),
        edge_sender=sender.copy(),
        edge_receiver=receiver.copy(),
        exact=scored["exact"].copy(),
        eap=scored["eap"].copy(),
        eap_ig=scored["eap_ig"].copy(),
        clean_metric=scored["clean"].copy(),
        corrupt_metric=scored["corrupt"].copy(),
        faith_exact=scored["faith_exact"].copy(),
        faith_ig=scored["faith_ig"].copy(),
        **fields,
    )


def logit_diff_circuits(
    run: CheckedRun,
    prompt: str | Prompt,
    corrupt: str | Prompt,
    *,
    target: str | None = None,
    answer: str | None = None,
    pos: int | None = None,
    ig_steps: int = IG_STEPS,
) -> Circuits:
    """Edge scores of the target's logit difference, prompt against corrupted prompt."""
    ig_steps = _check_ig_steps(ig_steps)
    latest = run.check_step(None)
    pair = check_pair(
        run, latest, prompt, corrupt, target=target, answer=answer, pos=pos, needs="circuits need"
    )
    c, k, pos, target, t = pair.clean, pair.corrupt, pair.pos, pair.target, pair.target_id
    a = pair.answer_id
    if a is None:  # the corrupted prompt's own answer at the latest step
        logits = run.analyzer.logits(run.name, latest, k, pos)
        a = next(int(i) for i in np.argsort(-logits, kind="stable") if int(i) != t)
    answer = run.vocab[a]
    query = LogitDiff(jnp.int32(pos), jnp.int32(t), jnp.int32(a))
    key = ("logit_diff", c.padded, k.padded, pos, t, a, ig_steps)
    scored = _score(run, key, _tokens(c), _tokens(k), query, ig_steps)
    return _record(
        run,
        scored,
        ig_steps,
        metric="logit_diff",
        description=f"logit({target!r}) − logit({answer!r}) at position {pos}",
        clean=tuple(display_words(c, run.vocab)),
        corrupt=tuple(display_words(k, run.vocab)),
        target=target,
        answer=answer,
        pos=pos,
    )


def induction_pair(task: dict, sequences: int) -> tuple[np.ndarray, ...]:
    """(clean [B, T], corrupted [B, T] inputs, next tokens [B, T], repeated mask [B, T]) of
    the first ``sequences`` held-out sequences of an induction run (``task``: run.json's
    ``induction``). The corrupted inputs replace the segment's first copy (positions
    ``a .. a+L-1``) with other tokens, so the repeat has nothing to copy."""
    from training.induction.config import InductionConfig
    from training.induction.data import heldout, repeated_mask

    cfg = InductionConfig.from_dict(task)
    tokens, lengths, offsets = (a[:sequences] for a in heldout(cfg))
    n = cfg.context + 1
    starts = n - lengths - offsets  # a
    i = np.arange(n)[None, :]
    first = (i >= starts[:, None]) & (i < (starts + lengths)[:, None])
    shift = np.random.default_rng(CORRUPT_SEED).integers(1, cfg.vocab, tokens.shape)
    corrupted = np.where(first, (tokens + shift) % cfg.vocab, tokens)
    mask = repeated_mask(lengths, cfg.context).astype(np.float32)
    return (
        tokens[:, :-1].astype(np.int32),
        corrupted[:, :-1].astype(np.int32),
        tokens[:, 1:].astype(np.int32),
        mask,
    )


def induction_circuits(
    run: CheckedRun, sequences: int = SEQUENCES, ig_steps: int = IG_STEPS
) -> Circuits:
    """Edge scores of the repeated-part loss of an induction run's held-out sequences."""
    ig_steps = _check_ig_steps(ig_steps)
    task = run.info.meta.get("induction")
    if not isinstance(task, dict):
        raise ValueError(
            f"run {run.name!r} was not trained with --task induction: no repeated-part loss"
        )
    if isinstance(sequences, bool) or not isinstance(sequences, int) or sequences < 1:
        raise ValueError(f"sequences must be a positive integer, not {sequences!r}")
    clean, corrupt, targets, mask = induction_pair(task, sequences)
    query = RepeatLoss(jnp.asarray(targets), jnp.asarray(mask))
    scored = _score(run, ("repeat_loss", sequences, ig_steps), clean, corrupt, query, ig_steps)
    n = len(clean)
    return _record(
        run,
        scored,
        ig_steps,
        metric="repeat_loss",
        description=f"loss on the repeated part of {n} held-out sequences",
        clean=(f"{n} held-out sequences",),
        corrupt=(f"the same, the segment's first copy replaced (seed {CORRUPT_SEED})",),
        target=None,
        answer=None,
        pos=None,
    )
