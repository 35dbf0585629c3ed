"""A slow, plain-numpy forward pass written from the checkpoint's parameters alone.

Independent of the Flax model and of ``interp_app.core.metrics``: loops over heads and
positions, float64, so it checks both the capture pass and the attribution maths.
"""

from __future__ import annotations

import numpy as np


def layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def forward(
    params: dict, ids: list[int], n_layers: int, n_heads: int, override: dict | None = None
) -> dict:
    """``override[(layer, head)]`` ([t, d]) replaces that head's output (for patching)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    t = len(ids)
    x = p["wte"][ids] + p["wpe"][:t]
    heads = {}  # (layer, head) -> (pattern [t, t], per-source writes [t(query), t(source), d])
    resid, mlps = [x], []  # the residual at each layer boundary, each MLP's output
    for layer in range(n_layers):
        pre = f"blocks.{layer}"
        h = layer_norm(x, p[f"{pre}.ln1.scale"], p[f"{pre}.ln1.bias"])
        w_qkv, w_o = p[f"{pre}.attn.w_qkv"], p[f"{pre}.attn.w_o"]
        attn_out = np.tile(p[f"{pre}.attn.b_o"], (t, 1))
        for hd in range(n_heads):
            q, k, v = (h @ w_qkv[:, c, hd, :] for c in range(3))
            pattern = np.zeros((t, t))
            writes = np.zeros((t, t, x.shape[1]))
            for i in range(t):
                scores = np.array([q[i] @ k[j] / np.sqrt(q.shape[1]) for j in range(i + 1)])
                w = np.exp(scores - scores.max())
                w /= w.sum()
                pattern[i, : i + 1] = w
                for j in range(i + 1):
                    writes[i, j] = w[j] * (v[j] @ w_o[hd])
            heads[(layer, hd)] = (pattern, writes)
            out = writes.sum(1)
            if override and (layer, hd) in override:
                out = override[(layer, hd)]
            attn_out = attn_out + out
        x = x + attn_out
        h = layer_norm(x, p[f"{pre}.ln2.scale"], p[f"{pre}.ln2.bias"])
        mlp = (
            np.maximum(h @ p[f"{pre}.mlp.w_in"] + p[f"{pre}.mlp.b_in"], 0) @ p[f"{pre}.mlp.w_out"]
            + p[f"{pre}.mlp.b_out"]
        )
        x = x + mlp
        resid.append(x)
        mlps.append(mlp)
    mu = x.mean(-1, keepdims=True)
    inv_std = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    final = (x - mu) * inv_std * p["ln_f.scale"] + p["ln_f.bias"]
    return {
        "logits": final @ p["wte"].T,
        "heads": heads,
        "inv_std": inv_std[:, 0],
        "p": p,
        "ids": list(ids),
        "resid": np.stack(resid),
        "mlp": mlps,
        "shape": (n_layers, n_heads),
    }


def head_token_attributions(ref: dict, layer: int, head: int, pos: int, target: int):
    """Per-source attributions through one head, LayerNorm scale at ``pos`` held fixed."""
    p = ref["p"]
    writes = ref["heads"][(layer, head)][1][pos]  # [t, d]
    centred = writes - writes.mean(-1, keepdims=True)
    return centred * ref["inv_std"][pos] * p["ln_f.scale"] @ p["wte"][target]


def _through_ln(ref: dict, vector, pos: int, target: int) -> float:
    """One vector's direct attribution to ``logit[target]`` at ``pos`` (LayerNorm scale held)."""
    p = ref["p"]
    return float(
        (vector - vector.mean()) * ref["inv_std"][pos] * p["ln_f.scale"] @ p["wte"][target]
    )


def head_metrics(ref: dict, pos: int, target: int, src: int = 0) -> dict:
    """Every head metric but ablation, [L, H] each, written out term by term."""
    n_layers, n_heads = ref["shape"]
    p, t = ref["p"], len(ref["ids"])
    terms = [p["wte"][ref["ids"][pos]], p["wpe"][pos]]  # every write to the residual at pos
    terms += [p[f"blocks.{layer}.attn.b_o"] for layer in range(n_layers)]
    terms += [ref["mlp"][layer][pos] for layer in range(n_layers)]
    terms += [ref["heads"][key][1][pos].sum(0) for key in sorted(ref["heads"])]
    total_abs = sum(abs(_through_ln(ref, v, pos, target)) for v in terms)
    total_abs += abs(float(p["ln_f.bias"] @ p["wte"][target]))
    out = {k: np.zeros((n_layers, n_heads)) for k in ("dla", "attn_src", "entropy", "prev_token")}
    for (layer, head), (pattern, writes) in ref["heads"].items():
        out["dla"][layer, head] = _through_ln(ref, writes[pos].sum(0), pos, target)
        out["attn_src"][layer, head] = pattern[pos, min(src, pos)]
        row = pattern[pos, : pos + 1]
        out["entropy"][layer, head] = -sum(w * np.log(max(w, 1e-12)) for w in row)
        prev = [pattern[q, q - 1] for q in range(1, t)]
        out["prev_token"][layer, head] = np.mean(prev) if prev else 0.0
    out["share"] = out["dla"] / total_abs
    return out


def logit_lens(ref: dict, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Each boundary's residual through the final LayerNorm and the unembedding: the top
    word and its probability, [L+1, T] each."""
    p = ref["p"]
    logits = layer_norm(ref["resid"], p["ln_f.scale"], p["ln_f.bias"], eps) @ p["wte"].T
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top = probs.argmax(-1)
    return top, np.take_along_axis(probs, top[..., None], -1)[..., 0]
