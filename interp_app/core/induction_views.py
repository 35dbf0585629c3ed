"""The induction lab's numbers as the app shows them, kept per run and step.

Held-out numbers (the head scores, loss by position, the in-context-learning score) exist
only for runs trained with ``--task induction``: they are ``induction_run.step_metrics`` on
the run's own held-out sequences, computed once per saved step and kept, so a growing run
only pays for its new steps. Composition scores come from the weights alone, so any run
with two or more layers has them; :func:`composition` is ``induction.composition_scores``
computed through each head's low-rank factors (exactly the same numbers, without the
``d_model x d_model`` products that would make a 12-layer model's view take minutes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from interp_app.core import induction as m
from interp_app.core.heads import METRICS
from training.checkpoint import CheckpointError

#: Head metrics measured on an induction run's held-out sequences (``Timeline`` fields).
INDUCTION_METRICS = {
    "induction": "induction score (held-out repeated sequences)",
    "duplicate": "duplicate-token score (held-out repeated sequences)",
    "previous": "previous-token score (held-out sequences)",
}
#: Every head metric the pickers offer: the prompt's (``heads.METRICS``) and the held-out ones.
HEAD_METRICS = {**METRICS, **INDUCTION_METRICS}
KINDS = ("Q", "K", "V")


def is_induction_run(store: Any, run: str) -> bool:
    """Whether ``run`` was trained with ``--task induction`` (it has held-out sequences)."""
    return isinstance(store.info(run).meta.get("induction"), dict)


def metric_options(induction: bool) -> list[dict[str, str]]:
    """The metric picker's choices for a run: the held-out metrics only where they exist."""
    names = HEAD_METRICS if induction else METRICS
    return [{"label": label, "value": key} for key, label in names.items()]


@dataclass(frozen=True)
class HeldOut:
    """An induction run's held-out numbers at its readable steps (S steps, T positions)."""

    steps: list[int]
    repeat_loss: np.ndarray  # [S] loss on the repeated part
    by_position: np.ndarray  # [S, T] loss at each position
    icl: np.ndarray  # [S] loss at the last position minus at position T // 4
    heads: dict[str, np.ndarray]  # INDUCTION_METRICS name -> [S, L, H]
    early: int  # the early position of the ICL score

    def phase_change(self) -> int | None:
        """The step by which the repeated part's loss made half its total drop."""
        return (
            m.crossing_step(np.asarray(self.steps), self.repeat_loss, 0.5) if self.steps else None
        )

    def at(self, step: int) -> dict[str, np.ndarray] | None:
        """Every held-out head metric [L, H] at ``step`` (None: not computed or unreadable)."""
        if step not in self.steps:
            return None
        i = self.steps.index(step)
        return {k: v[i] for k, v in self.heads.items()}


def _lab(analyzer: Any, run: str) -> Any:
    from interp_app.core.induction_run import LabRun

    return analyzer.memo(run, ("induction-lab",), lambda: LabRun.open(analyzer.store.root, run))


def heldout_step(analyzer: Any, run: str, lab: Any, step: int) -> dict[str, Any]:
    """``induction_run.step_metrics`` without the composition (the composition view computes
    its own, for the step it shows), on the analyzer's cached parameters."""
    from interp_app.core.induction_run import heldout_scores

    return heldout_scores(lab, *analyzer.state(run, step))


def heldout(analyzer: Any, run: str) -> HeldOut | None:
    """The held-out numbers at every readable step of ``run`` (None: not an induction run).

    Each step is computed once per generation of the run and kept; steps that cannot be
    read are left out (the page says so through the views that read them)."""
    if not is_induction_run(analyzer.store, run):
        return None
    lab = _lab(analyzer, run)
    known: dict[int, dict[str, Any]] = analyzer.memo(run, ("induction-heldout",), dict)
    saved = analyzer.store.steps(run)
    for step in saved:
        if step not in known:
            try:
                known[step] = heldout_step(analyzer, run, lab, step)
            except (CheckpointError, OSError, ValueError):
                continue  # unreadable now; tried again on the next drawing
    steps = sorted(set(known) & set(saved))
    rows = [known[s] for s in steps]
    t = lab.cfg.context

    def stack(key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.stack([r[key] for r in rows]) if rows else np.zeros((0, *shape))

    model = analyzer.store.info(run).model
    heads = {k: stack(k, (model.n_layers, model.n_heads)) for k in INDUCTION_METRICS}
    return HeldOut(
        steps=steps,
        repeat_loss=stack("repeat_loss", ()),
        by_position=stack("by_position", (t,)),
        icl=stack("icl", ()),
        heads=heads,
        early=t // 4,
    )


def _folded(params: Mapping[str, np.ndarray], layer: int) -> tuple[np.ndarray, ...]:
    """Layer ``layer``'s (Q, K, V) [H, D, K], LayerNorm-folded, and its W_O [H, K, D]."""
    w = np.asarray(params[f"blocks.{layer}.attn.w_qkv"], np.float64)  # [D, 3, H, K]
    name = f"blocks.{layer}.ln1.scale"
    if name in params:  # C diag(scale) W, as ``induction.head_circuits``: scale, then centre
        w = w * np.asarray(params[name], np.float64)[:, None, None, None]
    w = w - w.mean(0, keepdims=True)
    q, k, v = (np.ascontiguousarray(w[:, i].transpose(1, 0, 2)) for i in range(3))
    return q, k, v, np.asarray(params[f"blocks.{layer}.attn.w_o"], np.float64)


def _pairs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """[S, K, D] x [T, D, K'] -> [S, T, K, K']: every pair's product, as one matrix product."""
    s, k, d = left.shape
    t, _, k2 = right.shape
    out = left.reshape(s * k, d) @ right.transpose(1, 0, 2).reshape(d, t * k2)
    return out.reshape(s, k, t, k2).transpose(0, 2, 1, 3)


def _gram(m: np.ndarray) -> np.ndarray:
    """``M^T M`` of each [D, K] matrix: ``||M X||_F^2 = tr(X^T (M^T M) X)``."""
    return np.stack([h.T @ h for h in m])  # one BLAS call a head (numpy's stacked @ loops)


def _sandwich(left: np.ndarray, x: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``tr(X^T A X B)`` for symmetric A and B: ``||M X N^T||_F^2`` with A, B the Grams of
    M and N, reduced over the last two axes."""
    return np.maximum(((left @ x) * (x @ right)).sum((-2, -1)), 0.0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``sqrt(num / den)``, 0 where the denominator is 0 (a head that writes or reads
    nothing composes with nothing)."""
    return np.sqrt(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0))


def composition(params: Mapping[str, np.ndarray], later: int) -> np.ndarray:
    """[3, later * H, H]: Q-, K- and V-composition of every head of the layers before
    ``later`` (rows, layer by layer) into each head of layer ``later`` (columns).

    The same scores as ``induction.composition_scores`` (Elhage et al. 2021, each layer's
    LayerNorm folded into the weights that read it), with ``W_OV = V O`` and
    ``W_QK = Q K^T`` kept factored: ``||W_OV W_QK||_F^2 = tr(X^T G_V X G_K)`` with
    ``X = O Q`` and the Grams ``G_V = V^T V``, ``G_K = K^T K``: ``K x K`` products instead of
    ``D x D`` ones (a 12-layer GPT-2-sized model's last layer in seconds, not minutes)."""
    earlier = [_folded(params, i) for i in range(later)]
    v_s, o_s = (np.concatenate([e[i] for e in earlier]) for i in (2, 3))
    q_d, k_d, v_d, o_d = _folded(params, later)
    g_vs, g_q, g_k, g_vd = _gram(v_s), _gram(q_d), _gram(k_d), _gram(v_d)
    g_o = o_d @ np.swapaxes(o_d, -1, -2)  # O O^T: O's rows are its inputs
    ov_s = ((g_vs @ o_s) * o_s).sum((-2, -1))[:, None]  # ||W_OV||^2 of each earlier head
    qk_d = (g_q * g_k).sum((-2, -1))[None, :]
    ov_d = ((g_vd @ o_d) * o_d).sum((-2, -1))[None, :]
    x_q, x_k, x_v = _pairs(o_s, q_d), _pairs(o_s, k_d), _pairs(o_s, v_d)  # [S, T, K, K]
    return np.stack(
        [
            _ratio(_sandwich(g_vs[:, None], x_q, g_k[None]), ov_s * qk_d),
            _ratio(_sandwich(g_q[None], np.swapaxes(x_k, -1, -2), g_vs[:, None]), ov_s * qk_d),
            _ratio(_sandwich(g_vs[:, None], x_v, g_o[None]), ov_s * ov_d),
        ]
    )


def composition_at(analyzer: Any, run: str, step: int, later: int) -> np.ndarray:
    """:func:`composition` of one saved step, kept per (run, step, layer)."""
    return analyzer.memo(
        run,
        ("composition", step, later),
        lambda: composition(analyzer.store.params(run, step), later),
    )
