"""Pure numbers from one captured pass: direct logit attributions and their exact splits.

Everything here is linear algebra on numpy arrays; nothing knows about Dash or Plotly.
The final LayerNorm is linear once its 1/std for the query position is held fixed, so
``logit[t] = sum_c gamma * s * (c - mean(c)) . wte[t] + beta . wte[t]`` over the components
``c`` that write to the residual stream: that is what makes these splits exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from training.model.gpt import Capture


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def parse_head(name: str, n_layers: int, n_heads: int) -> tuple[int, int] | None:
    """``L1H0`` -> (1, 0); anything else, or out of range, -> None."""
    if not isinstance(name, str) or not name.startswith("L") or "H" not in name:
        return None
    try:
        layer, head = (int(x) for x in name[1:].split("H", 1))
    except ValueError:
        return None
    if 0 <= layer < n_layers and 0 <= head < n_heads:
        return layer, head
    return None


@dataclass(frozen=True)
class Components:
    """Every write to the residual stream at one position, in a fixed order: [C, D]."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]  # "embed", "pos", "head", "bias", "mlp"
    vectors: np.ndarray  # [C, D]


def residual_components(cap: Capture, b: int, pos: int) -> Components:
    """Embeddings, each head, each attention bias and each MLP; they sum to the final residual."""
    n_layers, n_heads = cap.head_out.shape[1], cap.head_out.shape[2]
    names, kinds, vecs = (
        ["token embed", "pos embed"],
        ["embed", "pos"],
        [
            cap.tok_emb[b, pos],
            cap.pos_emb[pos],
        ],
    )
    for layer in range(n_layers):
        for head in range(n_heads):
            names.append(head_name(layer, head))
            kinds.append("head")
            vecs.append(cap.head_out[b, layer, head, pos])
        names.append(f"L{layer} attn bias")
        kinds.append("bias")
        vecs.append(cap.attn_bias[layer])
        names.append(f"L{layer} MLP")
        kinds.append("mlp")
        vecs.append(cap.mlp_out[b, layer, pos])
    return Components(tuple(names), tuple(kinds), np.asarray(np.stack(vecs), np.float64))


def _through_final_ln(vectors: np.ndarray, gamma: np.ndarray, inv_std: float) -> np.ndarray:
    """The final LayerNorm applied to a part of the residual, with its scale held fixed."""
    centred = vectors - vectors.mean(-1, keepdims=True)
    return centred * (inv_std * gamma)


def direct_logit_attribution(
    cap: Capture, params: Mapping[str, np.ndarray], b: int, pos: int, target: int
) -> tuple[Components, np.ndarray, float]:
    """Per-component attributions to ``logit[target]`` and the LayerNorm-bias term.

    ``attr.sum() + ln_bias_term == logits[b, pos, target]`` up to float rounding.
    """
    comps = residual_components(cap, b, pos)
    u = np.asarray(params["wte"], np.float64)[target]
    gamma = np.asarray(params["ln_f.scale"], np.float64)
    beta = np.asarray(params["ln_f.bias"], np.float64)
    inv_std = float(cap.final_inv_std[b, pos])
    attr = _through_final_ln(comps.vectors, gamma, inv_std) @ u
    return comps, attr, float(beta @ u)


def source_attributions(
    cap: Capture,
    params: Mapping[str, np.ndarray],
    b: int,
    layer: int,
    head: int,
    pos: int,
    target: int,
) -> np.ndarray:
    """[T] how much each source token adds to ``logit[target]`` at ``pos`` through one head.

    Source s contributes ``pattern[pos, s] * v[s] @ w_o[head]``; through the final LayerNorm
    (scale held) and the target's unembedding these sum to the head's direct attribution.
    """
    w_o = np.asarray(params[f"blocks.{layer}.attn.w_o"], np.float64)[head]  # [K, D]
    weights = np.asarray(cap.patterns[b, layer, head, pos], np.float64)  # [T]
    values = np.asarray(cap.values[b, layer, head], np.float64)  # [T, K]
    per_source = weights[:, None] * (values @ w_o)  # [T, D]
    gamma = np.asarray(params["ln_f.scale"], np.float64)
    u = np.asarray(params["wte"], np.float64)[target]
    return _through_final_ln(per_source, gamma, float(cap.final_inv_std[b, pos])) @ u


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k most likely tokens, most likely first."""
    probs = softmax(np.asarray(logits, np.float64))
    order = np.argsort(-probs, kind="stable")[:k]
    return order, probs[order]


METRICS = {
    "dla": "direct logit attribution to the target",
    "share": "share of all |direct attribution| (DLA / Σ|DLA|, −1 to 1)",
    "attn_src": "attention paid to the source position",
    "entropy": "attention entropy (nats)",
    "prev_token": "previous-token score",
    "ablation": "ablation effect on log P(target)",
}


def attribution_share(attr, total_abs):
    """``attr / total_abs``: a term's share of the total absolute direct attribution.

    ``total_abs`` is the sum of |attribution| over every term of the logit's exact split
    (embeddings, each head, attention biases, MLPs and the final LayerNorm's bias), so the
    share lies in [-1, 1], keeps the sign of the attribution and the shares' absolute values
    add to 1, whatever the logit is: dividing by the logit itself, as before, gave a head
    with +0.535 at a logit of -0.115 the "share" -4.67. When nothing is attributed at all
    (``total_abs == 0``, so every ``attr`` is 0) the share is 0. Works on numpy and jax
    arrays alike: the timeline's vectorised pass uses this same function.
    """
    return attr / (total_abs + (total_abs == 0))


def head_metrics(
    cap: Capture,
    params: Mapping[str, np.ndarray],
    pos: int,
    target: int,
    length: int,
    src: int = 0,
) -> dict[str, np.ndarray]:
    """Every head's score under every metric, each [L, H], for the first prompt of ``cap``."""
    pats = np.asarray(cap.patterns[0], np.float64)  # [L, H, T, T]
    n_layers, n_heads = pats.shape[:2]
    comps, attr, ln_bias = direct_logit_attribution(cap, params, 0, pos, target)
    dla = np.array(
        [
            [attr[comps.names.index(head_name(l_, h))] for h in range(n_heads)]
            for l_ in range(n_layers)
        ]
    )
    row = pats[:, :, pos, : pos + 1]
    entropy = -(row * np.log(np.clip(row, 1e-12, None))).sum(-1)
    if length > 1:
        q = np.arange(1, length)
        prev = pats[:, :, q, q - 1].mean(-1)
    else:
        prev = np.zeros((n_layers, n_heads))
    src = min(max(src, 0), pos)
    total_abs = np.abs(attr).sum() + abs(ln_bias)
    return {
        "dla": dla,
        "share": attribution_share(dla, total_abs),
        "attn_src": pats[:, :, pos, src],
        "entropy": entropy,
        "prev_token": prev,
    }


def logit_lens(
    cap: Capture, params: Mapping[str, np.ndarray], eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Top token and its probability for every layer boundary x position: [L+1, T] each.

    Each residual is read through the final LayerNorm (its own statistics) and the tied
    unembedding, as the model reads its last one.
    """
    resid = np.asarray(cap.resid[0], np.float64)  # [L+1, T, D]
    centred = resid - resid.mean(-1, keepdims=True)
    normed = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + eps)
    final = normed * np.asarray(params["ln_f.scale"], np.float64) + np.asarray(
        params["ln_f.bias"], np.float64
    )
    probs = softmax(final @ np.asarray(params["wte"], np.float64).T)  # [L+1, T, V]
    top = probs.argmax(-1)
    return top, np.take_along_axis(probs, top[..., None], -1)[..., 0]


def cosine_ranking(vectors: np.ndarray, wte: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of [R, D] vectors, the k tokens whose embeddings point the same way: ids and
    cosines, [R, k] each, best first."""
    v = np.asarray(vectors, np.float64)
    e = np.asarray(wte, np.float64)
    cos = (v @ e.T) / (
        np.linalg.norm(v, axis=-1, keepdims=True) * np.linalg.norm(e, axis=-1)[None] + 1e-12
    )
    ids = np.argsort(-cos, axis=-1, kind="stable")[:, :k]
    return ids, np.take_along_axis(cos, ids, -1)


def dot_ranking(vector: np.ndarray, wte: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k tokens with the largest dot product with ``vector``: with tied embeddings and the
    final LayerNorm's output, these are the logits, i.e. the prediction."""
    dots = np.asarray(wte, np.float64) @ np.asarray(vector, np.float64)
    ids = np.argsort(-dots, kind="stable")[:k]
    return ids, dots[ids]
