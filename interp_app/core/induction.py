"""The induction lab's metrics, as pure numpy functions of patterns, losses and weights.

Shapes: B sequences, H heads, T positions (query ``q``, key ``k``), D d_model, K head size.
A pattern is ``[..., B, H, Tq, Tk]`` (any leading axes: layers, steps), each query's row
summing to 1 over keys ``k <= q``.

Attention scores read one key per query, a *target* ``[B, T]`` (``-1``: the query does not
count). Each score is the mean, over the queries that count, of the attention paid to the
target (Olsson et al. 2022; TransformerLens' ``induction_score`` is the same average on
repeated random tokens):

- previous-token: target ``q - 1``;
- duplicate-token: the previous occurrence of the query's token;
- induction: the token *after* that previous occurrence (the one to copy next).

On the lab's data the previous occurrence of a repeated token is known exactly (``q - d``,
:func:`repeat_targets`); on any text it is the most recent earlier position holding the same
token (:func:`occurrence_targets`), which differs when a segment repeats a token itself.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "attention_score",
    "composition_scores",
    "crossing_step",
    "head_circuits",
    "icl_score",
    "loss_by_position",
    "occurrence_targets",
    "previous_targets",
    "repeat_targets",
    "token_losses",
]


def previous_targets(batch: int, length: int) -> np.ndarray:
    """[B, T] targets of the previous-token score: ``q - 1``, none at ``q = 0``."""
    return np.broadcast_to(np.arange(length) - 1, (batch, length)).copy()


def repeat_targets(offsets: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate, induction) targets [B, T] on the lab's data: ``q - d`` and ``q - d + 1``
    at the repeated positions ``mask`` [B, T], none elsewhere (``offsets`` [B] is ``d``)."""
    q = np.arange(mask.shape[1])[None, :]
    back = q - np.asarray(offsets)[:, None]
    return np.where(mask, back, -1), np.where(mask, back + 1, -1)


def occurrence_targets(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate, induction) targets [B, T] on any tokens [B, T]: the most recent earlier
    position ``p < q`` with the query's token, and ``p + 1``; none where the token is new."""
    b, t = tokens.shape
    same = tokens[:, :, None] == tokens[:, None, :]  # [B, Tq, Tk]
    earlier = np.tril(np.ones((t, t), bool), k=-1)[None]
    positions = np.where(same & earlier, np.arange(t)[None, None, :], -1)
    duplicate = positions.max(-1)  # -1 where none
    return duplicate, np.where(duplicate >= 0, duplicate + 1, -1)


def attention_score(pattern: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean attention from each counted query to its target: pattern [..., B, H, T, T] and
    targets [B, T] -> [..., H]. NaN when no query counts (nothing to measure)."""
    pattern = np.asarray(pattern)
    counted = targets >= 0  # [B, T]
    index = np.where(counted, targets, 0)[:, None, :, None]  # [B, 1, T, 1]
    index = np.broadcast_to(index, (*pattern.shape[:-1], 1))
    paid = np.take_along_axis(pattern, index, axis=-1)[..., 0]  # [..., B, H, T]
    weight = np.broadcast_to(counted[:, None, :], paid.shape[-3:])
    n = weight.sum() / pattern.shape[-3]  # queries counted per head
    with np.errstate(invalid="ignore", divide="ignore"):
        return (paid * weight).sum(axis=(-3, -1)) / n


def token_losses(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Next-token cross-entropy per position: logits [..., T, V], targets [..., T] ->
    [..., T] (float64, a stable log-softmax)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    log_total = np.log(np.exp(z).sum(-1))
    picked = np.take_along_axis(z, np.asarray(targets)[..., None], axis=-1)[..., 0]
    return log_total - picked


def loss_by_position(losses: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean loss at each position over the sequences: losses [..., B, T] -> [..., T]; with
    ``mask`` [B, T] only the counted sequences at each position (NaN where none)."""
    if mask is None:
        return np.asarray(losses).mean(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (losses * mask).sum(-2) / mask.sum(-2)


def icl_score(by_position: np.ndarray, early: int, late: int = -1) -> np.ndarray:
    """In-context learning score (Olsson et al. 2022): the loss at a late position minus
    the loss at an early one, [..., T] -> [...]. Negative when later tokens are predicted
    better, i.e. the model uses its context; Olsson et al. take tokens 500 and 50 of 512,
    a 32-token context ``late=-1`` (the last) and an ``early`` of the caller's choice."""
    return by_position[..., late] - by_position[..., early]


def crossing_step(steps: np.ndarray, values: np.ndarray, fraction: float) -> int | None:
    """The first step by which ``values`` has gone ``fraction`` of the way from its first
    value to its last (a fall or a rise alike); None if the series does not move.

    The phase change of a loss (falling) or a score (rising) is its crossing of 0.5; a
    transition's width is the distance between its 0.1 and 0.9 crossings."""
    values = np.asarray(values, np.float64)
    total = values[-1] - values[0]
    if not np.isfinite(total) or total == 0:
        return None
    progress = (values - values[0]) / total
    reached = np.flatnonzero(progress >= fraction)
    return int(np.asarray(steps)[reached[0]]) if reached.size else None


def _folded_ln(w_in: np.ndarray, ln_scale: np.ndarray | None) -> np.ndarray:
    """A matrix reading LN(x), [D, ...], as one reading x: centering, then the scale."""
    d = w_in.shape[0]
    center = np.eye(d) - np.full((d, d), 1.0 / d)
    scale = np.ones(d) if ln_scale is None else np.asarray(ln_scale, np.float64)
    return np.einsum("de,e...->d...", center * scale[None, :], w_in)


def head_circuits(
    w_qkv: np.ndarray, w_o: np.ndarray, ln_scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One layer's ``W_QK`` and ``W_OV`` per head, [H, D, D] each, in the residual basis.

    With ``w_qkv`` [D, 3, H, K] and ``w_o`` [H, K, D] (row vectors, ``x @ W``): the score of
    query residual ``x_q`` on key residual ``x_k`` is ``x_q W_QK x_k^T`` with ``W_QK =
    W_Q W_K^T``, and the head writes ``x_v W_OV`` with ``W_OV = W_V W_O`` (before the
    softmax's 1/sqrt(K) and the pattern). The block's LayerNorm ``LN(x) = (x C / sigma)
    * scale + bias`` (``C`` centres) is folded in as ``C diag(scale)`` on the input side;
    ``1 / sigma`` is a positive number per token, which the normalised scores below do not
    see, and the bias (and any qkv bias) is a constant, not a composition."""
    w = np.asarray(w_qkv, np.float64)
    q, k, v = (_folded_ln(w[:, i], ln_scale) for i in range(3))  # [D, H, K] each
    w_qk = np.einsum("dhe,fhe->hdf", q, k)
    w_ov = np.einsum("dhe,hef->hdf", v, np.asarray(w_o, np.float64))
    return w_qk, w_ov


def composition_scores(
    first: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    second: tuple[np.ndarray, np.ndarray, np.ndarray | None],
) -> np.ndarray:
    """Q-, K- and V-composition of each head of an earlier layer into each head of a later
    one (Elhage et al. 2021), [3, H_first, H_second], each in [0, 1].

    ``first`` and ``second`` are each layer's ``(w_qkv, w_o, ln1 scale)``. With the earlier
    head's ``W_OV`` (written ``A`` here) and the later head's ``W_QK`` (``B``) and ``W_OV``
    (``C``) from :func:`head_circuits`, in row-vector form:

    - Q: the earlier head writes the query: ``||A B||_F / (||A||_F ||B||_F)``;
    - K: it writes the key: ``||B A^T||_F / (||B||_F ||A||_F)`` (Elhage's
      ``||W_QK^T W_OV||`` in their column-vector form);
    - V: it writes the value: ``||A C||_F / (||A||_F ||C||_F)``.

    No random-matrix baseline is subtracted (as TransformerLens' ``composition_scores``);
    each layer's own LayerNorm is folded into the weights that read it
    (:func:`head_circuits`), which is why the scale is given."""
    _, ov0 = head_circuits(*first)
    qk1, ov1 = head_circuits(*second)
    products = (
        np.einsum("ade,bef->abdf", ov0, qk1),  # Q: A B
        np.einsum("bde,afe->abdf", qk1, ov0),  # K: B A^T
        np.einsum("ade,bef->abdf", ov0, ov1),  # V: A C
    )
    n_ov0 = np.linalg.norm(ov0, axis=(-2, -1))[:, None]
    norms = (n_ov0 * np.linalg.norm(m, axis=(-2, -1))[None, :] for m in (qk1, qk1, ov1))
    return np.stack(
        [np.linalg.norm(p, axis=(-2, -1)) / n for p, n in zip(products, norms, strict=True)]
    )
