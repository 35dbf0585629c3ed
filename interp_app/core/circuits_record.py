"""What :meth:`Run.circuits <interp_app.core.api.Run.circuits>` returns: edge scores at
every step, with the graph's names, and the figures read from them (rank agreement,
faithfulness, the circuit at a step). Numpy only: the views read it without JAX."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from interp_app.core.causal import PATCH_MIN_GAP

METHODS = ("exact", "eap", "eap_ig")
METHOD_LABELS = {"exact": "exact path patching", "eap": "EAP", "eap_ig": "EAP-IG"}
ORDERS = ("exact", "eap_ig")  # the faithfulness curves' edge orders
KEEP_SHARE = 0.8  # "the circuit": the fewest top edges recovering this share


@dataclass(frozen=True)
class Circuits:
    """Edge scores at every readable step (S steps, E edges).

    Each score is what corrupting that edge alone does to the metric on the clean input
    (``circuits`` module docstring): ``exact`` by path patching, ``eap`` and ``eap_ig``
    estimated from gradients. ``faith_exact`` / ``faith_ig`` [S, E+1] are the metric
    keeping the top k edges (by |exact| or |EAP-IG|) and corrupting the rest."""

    run: str
    metric: str  # "logit_diff" or "repeat_loss"
    description: str  # what the metric is, in words
    clean: tuple[str, ...]  # the clean prompt's words (induction: a summary)
    corrupt: tuple[str, ...]
    target: str | None
    answer: str | None
    pos: int | None
    ig_steps: int
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    edges: tuple[str, ...]  # "L0H1 -> L1H1.v"
    unreadable: tuple[int, ...]
    steps: np.ndarray  # [S]
    edge_sender: np.ndarray  # [E] index into senders
    edge_receiver: np.ndarray  # [E] index into receivers
    exact: np.ndarray  # [S, E]
    eap: np.ndarray  # [S, E]
    eap_ig: np.ndarray  # [S, E]
    clean_metric: np.ndarray  # [S]
    corrupt_metric: np.ndarray  # [S]
    faith_exact: np.ndarray  # [S, E+1]
    faith_ig: np.ndarray  # [S, E+1]

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors by their export names (``circuit_`` and the field)."""
        return {
            f"circuit_{f.name}": getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    def index(self, step: int) -> int:
        """The row of ``step``; a ValueError naming the range otherwise."""
        hits = np.flatnonzero(self.steps == step)
        if not hits.size:
            raise ValueError(
                f"step {step} is not among the {len(self.steps)} scored steps "
                f"({int(self.steps[0])} to {int(self.steps[-1])})"
            )
        return int(hits[0])

    def scores(self, method: str) -> np.ndarray:
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
        return getattr(self, method)

    @property
    def gap(self) -> np.ndarray:
        """[S] clean minus corrupted metric."""
        return self.clean_metric - self.corrupt_metric

    def normalisable(self) -> np.ndarray:
        """[S] bool: the gap is large enough to divide by (``causal.PATCH_MIN_GAP`` of the
        metric's scale, at least 1), as the patching panel decides."""
        scale = np.maximum(np.maximum(abs(self.clean_metric), abs(self.corrupt_metric)), 1.0)
        return np.abs(self.gap) > PATCH_MIN_GAP * scale

    def recovered(self, order: str = "exact") -> np.ndarray:
        """[S, E+1] share of the gap recovered keeping the top k edges (0: all corrupted,
        1: clean); NaN at steps whose gap is too small to divide by."""
        if order not in ORDERS:
            raise ValueError(f"order {order!r} is not one of {', '.join(ORDERS)}")
        kept = self.faith_exact if order == "exact" else self.faith_ig
        out = (kept - self.corrupt_metric[:, None]) / np.where(self.gap == 0, 1, self.gap)[:, None]
        return np.where(self.normalisable()[:, None], out, np.nan)

    def spearman(self, method: str = "eap_ig", absolute: bool = False) -> np.ndarray:
        """[S] Spearman's rank correlation of ``method``'s scores with the exact ones at
        each step (of |score| with ``absolute``); NaN where either is constant."""
        return rank_correlation(self.scores(method), self.exact, absolute)

    def circuit(self, step: int, share: float = KEEP_SHARE, order: str = "exact") -> list[str]:
        """The fewest top edges (in ``order``) whose keeping recovers ``share`` of the gap
        at ``step``: the circuit there (empty when the gap is too small)."""
        i = self.index(step)
        rec = self.recovered(order)[i]
        enough = np.flatnonzero(rec >= share)
        if not enough.size:
            return []
        ranked = np.argsort(-np.abs(self.scores(order)[i]), kind="stable")
        return [self.edges[e] for e in ranked[: int(enough[0])]]

    def strongest_into(self, step: int, receiver_prefix: str, method: str = "exact") -> str:
        """The edge of largest |score| into any receiver starting with ``receiver_prefix``
        (``"L1H0."``: that head's q, k and v inputs) at ``step``."""
        i = self.index(step)
        into = [
            e
            for e, r in enumerate(self.edge_receiver)
            if self.receivers[r].startswith(receiver_prefix)
        ]
        if not into:
            raise ValueError(f"no edge runs into {receiver_prefix!r}")
        scores = np.abs(self.scores(method)[i, into])
        return self.edges[into[int(np.argmax(scores))]]

    def header(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-able (``interp-capture``'s header)."""
        return {
            "run": self.run,
            "metric": self.metric,
            "description": self.description,
            "clean": list(self.clean),
            "corrupt": list(self.corrupt),
            "target": self.target,
            "answer": self.answer,
            "pos": self.pos,
            "ig_steps": self.ig_steps,
            "senders": list(self.senders),
            "receivers": list(self.receivers),
            "edges": list(self.edges),
            "unreadable": list(self.unreadable),
        }


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis: tied values share their mean rank."""
    out = np.empty(x.shape, np.float64)
    for row, values in zip(out.reshape(-1, x.shape[-1]), x.reshape(-1, x.shape[-1]), strict=True):
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], len(values)]
        mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
        row[order] = np.repeat(mean_rank, ends - starts)
    return out


def rank_correlation(a: np.ndarray, b: np.ndarray, absolute: bool = False) -> np.ndarray:
    """Spearman's rho of each row of ``a`` [S, E] with the same row of ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(-1) / np.where(denom > 0, denom, 1), np.nan)
