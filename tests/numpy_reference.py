"""A slow, plain-numpy forward pass written from the checkpoint's parameters alone.

Independent of the Flax model and of ``interp_app.core.analysis``: loops over heads and
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
        x = (
            x
            + np.maximum(h @ p[f"{pre}.mlp.w_in"] + p[f"{pre}.mlp.b_in"], 0) @ p[f"{pre}.mlp.w_out"]
            + p[f"{pre}.mlp.b_out"]
        )
    mu = x.mean(-1, keepdims=True)
    inv_std = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    final = (x - mu) * inv_std * p["ln_f.scale"] + p["ln_f.bias"]
    return {"logits": final @ p["wte"].T, "heads": heads, "inv_std": inv_std[:, 0], "p": p}


def head_token_attributions(ref: dict, layer: int, head: int, pos: int, target: int):
    """Per-source attributions through one head, LayerNorm scale at ``pos`` held fixed."""
    p = ref["p"]
    writes = ref["heads"][(layer, head)][1][pos]  # [t, d]
    centred = writes - writes.mean(-1, keepdims=True)
    return centred * ref["inv_std"][pos] * p["ln_f.scale"] @ p["wte"][target]
