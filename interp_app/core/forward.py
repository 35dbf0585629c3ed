"""The 3D forward view's numbers: the residual stream of every real position at every layer
boundary, the attention between them, and the tokens the selected position resembles.

Two matrices, two questions: "nearest input embeddings" compares vectors with the token
embeddings ``wte`` (cosine); "what the vector predicts" reads it through the unembedding
``w_u`` [D, V] and ``b_u`` (``wte.T`` and zeros for tied embeddings, the article's model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp_app.core.analyzer import Analyzer
from interp_app.core.api import Run
from interp_app.core.metrics import unembedding
from interp_app.core.selection import Selection


@dataclass(frozen=True)
class Forward:
    """What the 3D forward view draws: the residual stream of every real position at every
    layer boundary, the attention between them, and what the selected position resembles."""

    words: list[str]
    rows: np.ndarray  # [L+1, T, D]: token + position embedding, then after each layer
    patterns: np.ndarray  # [L, H, T, T]
    final: np.ndarray  # [T, D] after the final LayerNorm
    wte: np.ndarray  # [V, D] token embeddings (the input side; tied: also the unembedding)
    vocab: tuple[str, ...]
    near_ids: np.ndarray  # [L+2, k] tokens by cosine: each boundary, then the final LN output
    near_cos: np.ndarray  # [L+2, k]
    pred_ids: np.ndarray  # [k] tokens by the final LN output's logits (@ w_u + b_u)
    pred_dots: np.ndarray  # [k]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest along the last axis, best first (a partial sort: a 50k
    vocabulary needs no full argsort)."""
    k = min(k, scores.shape[-1])
    part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(scores, part, -1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, -1)


def cosine_ranking(vectors: np.ndarray, wte: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of [R, D] vectors, the k tokens whose embeddings point the same way: ids and
    cosines, [R, k] each, best first. Ranked in float32 (no float64 copy of a [V, D] matrix,
    300 MB at GPT-2 size), the k cosines shown recomputed in float64."""
    v = np.asarray(vectors, np.float32)
    e = np.asarray(wte, np.float32)
    cos = (v @ e.T) / (
        np.linalg.norm(v, axis=-1, keepdims=True) * np.linalg.norm(e, axis=-1)[None] + 1e-12
    )
    ids = _top(cos, k)
    v64, e64 = np.asarray(vectors, np.float64), np.asarray(e[ids], np.float64)  # [R, k, D]
    exact = np.einsum("rd,rkd->rk", v64, e64) / (
        np.linalg.norm(v64, axis=-1, keepdims=True) * np.linalg.norm(e64, axis=-1) + 1e-12
    )
    return ids, exact


def dot_ranking(
    vector: np.ndarray, w_u: np.ndarray, k: int, b_u: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k tokens with the largest ``vector @ w_u + b_u`` (``w_u`` [D, V]): for the final
    LayerNorm's output these are the logits, i.e. the prediction. Ranked in float32, the k
    values shown recomputed in float64."""
    dots = np.asarray(vector, np.float32) @ np.asarray(w_u, np.float32)
    if b_u is not None:
        dots = dots + np.asarray(b_u, np.float32)
    ids = _top(dots, k)
    exact = np.asarray(vector, np.float64) @ np.asarray(w_u[:, ids], np.float64)
    if b_u is not None:
        exact = exact + np.asarray(b_u, np.float64)[ids]
    return ids, exact


def compute_forward(analyzer: Analyzer, sel: Selection, k: int = 5) -> Forward:
    """The selection's pass (ablated as selected), read through the public API."""
    run = Run(analyzer, sel.run)
    cap = run.capture(sel.step, sel.prompt, ablate=sel.ablate, mode=sel.mode)
    params = analyzer.store.params(sel.run, sel.step)
    wte = params["wte"]
    w_u, b_u = unembedding(params, np)
    rows = np.asarray(cap.resid, np.float64)
    final = np.asarray(cap.final, np.float64)
    near_ids, near_cos = cosine_ranking(
        np.concatenate([rows[:, sel.pos], final[sel.pos][None]]), wte, k
    )
    pred_ids, pred_dots = dot_ranking(final[sel.pos], w_u, k, b_u)
    return Forward(
        words=list(cap.words),
        rows=rows,
        patterns=np.asarray(cap.patterns, np.float64),
        final=final,
        wte=np.asarray(wte),  # float32 as stored: the view reads a few rows
        vocab=run.vocab,
        near_ids=near_ids,
        near_cos=near_cos,
        pred_ids=pred_ids,
        pred_dots=pred_dots,
    )
