"""Tensor names and shapes of the two Hugging Face layouts, and their mapping to ours.

Names here are as stored after the optional model prefix (``transformer.``, ``gpt_neox.``)
is stripped. GPT-2's ``Conv1D`` matrices are already ``x @ W`` (no transpose) with output
columns ordered (qkv, head, e); NeoX's ``Linear`` weights are ``[out, in]`` with the fused
qkv rows ordered (head, qkv, e). See docs/plans/hf-import.md §1.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from training.model.config import ModelConfig

Shapes = dict[str, tuple[int, ...]]
Get = Callable[[str], np.ndarray]

#: Attention mask and rotary buffers some files carry: not weights, never imported.
_BUFFER = re.compile(r"(^|\.)(attn|attention)\.(bias|masked_bias)$|rotary_emb\.inv_freq$")
PREFIX = {"gpt2": "transformer.", "neox": "gpt_neox."}
#: The unembedding's name (NeoX's ``lm_head.weight`` is read as ``embed_out.weight``).
HEAD = {"gpt2": "lm_head.weight", "neox": "embed_out.weight"}
EMBED = {"gpt2": "wte.weight", "neox": "embed_in.weight"}


def normalize(arch: str, name: str) -> str | None:
    """A stored tensor name as this module names it; None for a buffer to ignore."""
    if _BUFFER.search(name):
        return None
    short = name.removeprefix(PREFIX[arch])
    return "embed_out.weight" if arch == "neox" and short == "lm_head.weight" else short


def shapes(arch: str, mc: ModelConfig) -> tuple[Shapes, Shapes]:
    """(required, optional) tensor shapes for the model ``mc``; a tied model's head is
    optional (transformers ties it to the embedding whatever the file holds)."""
    d, v, m = mc.d_model, mc.vocab_size, mc.d_mlp
    vec, sq = (d,), (d, d)
    if arch == "gpt2":
        req: Shapes = {"wte.weight": (v, d), "wpe.weight": (mc.context, d)}
        req |= {"ln_f.weight": vec, "ln_f.bias": vec}
        for i in range(mc.n_layers):
            h = f"h.{i}."
            req |= {h + "ln_1.weight": vec, h + "ln_1.bias": vec, h + "ln_2.weight": vec}
            req |= {h + "ln_2.bias": vec, h + "attn.c_attn.weight": (d, 3 * d)}
            req |= {h + "attn.c_attn.bias": (3 * d,), h + "attn.c_proj.weight": sq}
            req |= {h + "attn.c_proj.bias": vec, h + "mlp.c_fc.weight": (d, m)}
            req |= {h + "mlp.c_fc.bias": (m,), h + "mlp.c_proj.weight": (m, d)}
            req |= {h + "mlp.c_proj.bias": vec}
    else:
        req = {"embed_in.weight": (v, d), "final_layer_norm.weight": vec}
        req |= {"final_layer_norm.bias": vec}
        for i in range(mc.n_layers):
            h = f"layers.{i}."
            for ln in ("input_layernorm", "post_attention_layernorm"):
                req |= {f"{h}{ln}.weight": vec, f"{h}{ln}.bias": vec}
            req |= {h + "attention.query_key_value.weight": (3 * d, d)}
            req |= {h + "attention.dense.weight": sq, h + "mlp.dense_h_to_4h.weight": (m, d)}
            req |= {h + "mlp.dense_h_to_4h.bias": (m,), h + "mlp.dense_4h_to_h.weight": (d, m)}
            req |= {h + "mlp.dense_4h_to_h.bias": vec}
            if mc.qkv_bias:
                req |= {h + "attention.query_key_value.bias": (3 * d,)}
                req |= {h + "attention.dense.bias": vec}
    head: Shapes = {HEAD[arch]: (v, d)}
    return (req, head) if mc.tied else (req | head, {})


def _gpt2(mc: ModelConfig, get: Get) -> dict[str, np.ndarray]:
    d, h, k = mc.d_model, mc.n_heads, mc.d_head
    p = {"wte": get("wte.weight"), "wpe": get("wpe.weight")}
    p |= {"ln_f.scale": get("ln_f.weight"), "ln_f.bias": get("ln_f.bias")}
    for i in range(mc.n_layers):
        s, o = f"h.{i}.", f"blocks.{i}."
        p[o + "ln1.scale"], p[o + "ln1.bias"] = get(s + "ln_1.weight"), get(s + "ln_1.bias")
        p[o + "ln2.scale"], p[o + "ln2.bias"] = get(s + "ln_2.weight"), get(s + "ln_2.bias")
        p[o + "attn.w_qkv"] = get(s + "attn.c_attn.weight").reshape(d, 3, h, k)
        p[o + "attn.b_qkv"] = get(s + "attn.c_attn.bias").reshape(3, h, k)
        p[o + "attn.w_o"] = get(s + "attn.c_proj.weight").reshape(h, k, d)
        p[o + "attn.b_o"] = get(s + "attn.c_proj.bias")
        p[o + "mlp.w_in"], p[o + "mlp.b_in"] = get(s + "mlp.c_fc.weight"), get(s + "mlp.c_fc.bias")
        p[o + "mlp.w_out"] = get(s + "mlp.c_proj.weight")
        p[o + "mlp.b_out"] = get(s + "mlp.c_proj.bias")
    return p


def _neox(mc: ModelConfig, get: Get) -> dict[str, np.ndarray]:
    d, h, k = mc.d_model, mc.n_heads, mc.d_head
    p = {"wte": get("embed_in.weight")}
    p |= {"ln_f.scale": get("final_layer_norm.weight"), "ln_f.bias": get("final_layer_norm.bias")}
    for i in range(mc.n_layers):
        s, o = f"layers.{i}.", f"blocks.{i}."
        for ours, theirs in (("ln1", "input_layernorm"), ("ln2", "post_attention_layernorm")):
            p[f"{o}{ours}.scale"] = get(f"{s}{theirs}.weight")
            p[f"{o}{ours}.bias"] = get(f"{s}{theirs}.bias")
        qkv = get(s + "attention.query_key_value.weight").reshape(h, 3, k, d)
        p[o + "attn.w_qkv"] = qkv.transpose(3, 1, 0, 2)
        p[o + "attn.w_o"] = get(s + "attention.dense.weight").T.reshape(h, k, d)
        if mc.qkv_bias:
            b = get(s + "attention.query_key_value.bias").reshape(h, 3, k)
            p[o + "attn.b_qkv"] = b.transpose(1, 0, 2)
            p[o + "attn.b_o"] = get(s + "attention.dense.bias")
        else:  # attention_bias=false: no qkv bias (the config says so), a zero output bias
            p[o + "attn.b_o"] = np.zeros(d, np.float32)
        p[o + "mlp.w_in"] = get(s + "mlp.dense_h_to_4h.weight").T
        p[o + "mlp.b_in"] = get(s + "mlp.dense_h_to_4h.bias")
        p[o + "mlp.w_out"] = get(s + "mlp.dense_4h_to_h.weight").T
        p[o + "mlp.b_out"] = get(s + "mlp.dense_4h_to_h.bias")
    return p


def to_params(arch: str, mc: ModelConfig, get: Get) -> dict[str, np.ndarray]:
    """Our checkpoint's named float32 arrays (contiguous) from the stored tensors."""
    params = (_gpt2 if arch == "gpt2" else _neox)(mc, get)
    if not mc.tied:
        params["w_u"] = get(HEAD[arch]).T
    return {name: np.ascontiguousarray(arr, np.float32) for name, arr in params.items()}
