"""Hugging Face model folders written from numpy, as ``save_pretrained`` lays them out.

Tensor names and shapes are written out here from the transformers sources (GPT-2's
``Conv1D`` ``[in, out]``, NeoX's ``Linear`` ``[out, in]``), independently of
``training.hf_import.layouts``, so the importer is tested against the layout and not
against itself. No torch: weights are random numpy arrays, the tokenizer is trained offline
with ``tokenizers`` (docs/plans/hf-import.md §5).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

D, HEADS, LAYERS, CONTEXT = 12, 3, 2, 16
K = D // HEADS
VOCAB = 300  # >= the trained tokenizer's vocabulary and >= 256 (byte fallback)
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def gpt2_config(**changes: Any) -> dict[str, Any]:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": VOCAB,
        "n_positions": CONTEXT,
        "n_embd": D,
        "n_layer": LAYERS,
        "n_head": HEADS,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        **changes,
    }


def neox_config(**changes: Any) -> dict[str, Any]:
    """Pythia's legacy keys (``rotary_pct``, ``rotary_emb_base``), as its hub configs have."""
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "hidden_size": D,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": 2 * D,
        "hidden_act": "gelu",
        "rotary_pct": 0.5,
        "rotary_emb_base": 10000,
        "use_parallel_residual": True,
        "layer_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        **changes,
    }


def gpt2_shapes(cfg: dict[str, Any], prefix: str = "transformer.") -> dict[str, tuple]:
    d, v, m = cfg["n_embd"], cfg["vocab_size"], cfg["n_inner"] or 4 * cfg["n_embd"]
    out: dict[str, tuple] = {"wte.weight": (v, d), "wpe.weight": (cfg["n_positions"], d)}
    for i in range(cfg["n_layer"]):
        h = f"h.{i}."
        for ln in ("ln_1", "ln_2"):
            out |= {f"{h}{ln}.weight": (d,), f"{h}{ln}.bias": (d,)}
        out |= {h + "attn.c_attn.weight": (d, 3 * d), h + "attn.c_attn.bias": (3 * d,)}
        out |= {h + "attn.c_proj.weight": (d, d), h + "attn.c_proj.bias": (d,)}
        out |= {h + "mlp.c_fc.weight": (d, m), h + "mlp.c_fc.bias": (m,)}
        out |= {h + "mlp.c_proj.weight": (m, d), h + "mlp.c_proj.bias": (d,)}
    out |= {"ln_f.weight": (d,), "ln_f.bias": (d,)}
    named = {prefix + k: s for k, s in out.items()}
    if not cfg.get("tie_word_embeddings", True):
        named["lm_head.weight"] = (v, d)
    return named


def neox_shapes(cfg: dict[str, Any], head: str = "embed_out.weight") -> dict[str, tuple]:
    d, v, m = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    bias = cfg.get("attention_bias", True)
    out: dict[str, tuple] = {"embed_in.weight": (v, d)}
    for i in range(cfg["num_hidden_layers"]):
        h = f"layers.{i}."
        for ln in ("input_layernorm", "post_attention_layernorm"):
            out |= {f"{h}{ln}.weight": (d,), f"{h}{ln}.bias": (d,)}
        out |= {h + "attention.query_key_value.weight": (3 * d, d)}
        out |= {h + "attention.dense.weight": (d, d)}
        if bias:
            out |= {h + "attention.query_key_value.bias": (3 * d,)}
            out |= {h + "attention.dense.bias": (d,)}
        out |= {h + "mlp.dense_h_to_4h.weight": (m, d), h + "mlp.dense_h_to_4h.bias": (m,)}
        out |= {h + "mlp.dense_4h_to_h.weight": (d, m), h + "mlp.dense_4h_to_h.bias": (d,)}
    out |= {"final_layer_norm.weight": (d,), "final_layer_norm.bias": (d,)}
    named = {"gpt_neox." + k: s for k, s in out.items()}
    named[head] = (v, d)
    return named


def random_tensors(shapes: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def bpe_tokenizer(texts: list[str], vocab_size: int = 300) -> Any:
    """A byte-level BPE trained offline on ``texts`` (256 bytes, merges, one special token),
    as docs/plans/hf-import.md §5 makes one; a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts * 20, trainer=trainer)
    return tok


@functools.lru_cache(maxsize=1)
def tokenizer_json() -> str:
    """A byte-level BPE tokenizer trained offline (293 tokens), as ``tokenizer.json`` text."""
    return bpe_tokenizer(["the cat sat on the mat", "héllo wörld 🙂"]).to_str()


def write_tensors(
    folder: Path, tensors: dict[str, np.ndarray], dtype: str = "float32", shards: int = 0
) -> None:
    """``model.safetensors``, or ``shards`` files and ``model.safetensors.index.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    cast = {k: v.astype(DTYPES[dtype]) for k, v in tensors.items()}
    if not shards:
        save_file(cast, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(cast)
    weight_map: dict[str, str] = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: cast[n] for n in names[k::shards]}
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map |= {n: file for n in part}
    index = {"metadata": {"total_size": sum(v.nbytes for v in cast.values())}}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps(index | {"weight_map": weight_map})
    )


def write_folder(
    folder: Path,
    cfg: dict[str, Any],
    tensors: dict[str, np.ndarray],
    *,
    dtype: str = "float32",
    shards: int = 0,
    tokenizer: bool = True,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """One model folder as ``save_pretrained`` (and the Trainer) writes it."""
    write_tensors(folder, tensors, dtype, shards)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    if tokenizer:
        (folder / "tokenizer.json").write_text(tokenizer_json())
    if trainer_state is not None:
        (folder / "trainer_state.json").write_text(json.dumps(trainer_state))
    return folder


def gpt2_folder(
    folder: Path, seed: int = 0, changes: dict[str, Any] | None = None, **options: Any
) -> Path:
    """A GPT-2 folder; ``changes`` to its config.json change its tensors to match."""
    cfg = gpt2_config(**changes or {})
    return write_folder(folder, cfg, random_tensors(gpt2_shapes(cfg), seed), **options)


def neox_folder(
    folder: Path, seed: int = 0, changes: dict[str, Any] | None = None, **options: Any
) -> Path:
    cfg = neox_config(**changes or {})
    return write_folder(folder, cfg, random_tensors(neox_shapes(cfg), seed), **options)


def series(src: Path, names: list[str], arch: str = "neox", **options: Any) -> Path:
    """Step folders named ``names`` (``step10``, ``checkpoint-10``, ``10``), each with its own
    weights; the tokenizer once, in ``src`` (as the HF Trainer leaves it)."""
    make = neox_folder if arch == "neox" else gpt2_folder
    for seed, name in enumerate(names):
        make(src / name, seed=seed, tokenizer=False, **options)
    (src / "tokenizer.json").write_text(tokenizer_json())
    return src
