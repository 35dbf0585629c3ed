"""``config.json`` of a ``GPT2LMHeadModel`` or ``GPTNeoXForCausalLM`` as our ``ModelConfig``.

``save_pretrained`` leaves out keys equal to the class defaults, so each key falls back to
the default of the ``transformers`` config class. Options our model does not compute are
refused by name rather than imported as a different model (docs/plans/hf-import.md §1-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.hf_import.discover import CONFIG_FILE, read_json
from training.hf_import.errors import HFImportError
from training.model.config import ModelConfig

#: config.json ``architectures`` (or ``model_type``) -> the importer's name for the layout.
ARCHITECTURES = {"GPT2LMHeadModel": "gpt2", "GPTNeoXForCausalLM": "neox"}
MODEL_TYPES = {"gpt2": "gpt2", "gpt_neox": "neox"}
#: HF activation names -> ``ModelConfig.activation`` (gelu_new and gelu_fast are the same tanh
#: approximation as gelu_pytorch_tanh).
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}


@dataclass(frozen=True)
class Spec:
    """One step's architecture: the tensor layout (``arch``) and the model it makes."""

    arch: str
    config: ModelConfig


def architecture(cfg: dict[str, Any], where: Path) -> str:
    names = cfg.get("architectures") or []
    if not isinstance(names, list):
        names = [names]
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    if not names and cfg.get("model_type") in MODEL_TYPES:
        return MODEL_TYPES[cfg["model_type"]]
    found = ", ".join(map(str, names)) or f"model_type {cfg.get('model_type')!r}"
    raise HFImportError(
        f"{where}: unsupported architecture {found}; supported: {', '.join(ARCHITECTURES)}"
    )


def _refuse_set(cfg: dict[str, Any], where: Path, **allowed: Any) -> None:
    """Options whose only supported value is the class default."""
    for key, ok in allowed.items():
        if key in cfg and cfg[key] != ok:
            raise HFImportError(f"{where}: {key}={cfg[key]!r} is not supported (only {ok!r})")


def _activation(name: Any, where: Path) -> str:
    if name not in ACTIVATIONS:
        raise HFImportError(
            f"{where}: activation {name!r} is not supported; supported: {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


def _gpt2(cfg: dict[str, Any], where: Path) -> dict[str, Any]:
    _refuse_set(cfg, where, scale_attn_by_inverse_layer_idx=False, add_cross_attention=False)
    _refuse_set(cfg, where, scale_attn_weights=True)
    d_model = cfg.get("n_embd", 768)
    return {
        "vocab_size": cfg.get("vocab_size", 50257),
        "n_layers": cfg.get("n_layer", 12),
        "n_heads": cfg.get("n_head", 12),
        "d_model": d_model,
        "d_mlp": cfg.get("n_inner") or 4 * d_model,
        "context": cfg.get("n_positions", 1024),
        "ln_eps": cfg.get("layer_norm_epsilon", 1e-5),
        "activation": _activation(cfg.get("activation_function", "gelu_new"), where),
        "positions": "learned",
        "qkv_bias": True,
        "tied": cfg.get("tie_word_embeddings", True),
    }


def _rotary(cfg: dict[str, Any], d_head: int, where: Path) -> tuple[int, float]:
    """(rotary_dims, rotary_base) from v5's ``rope_parameters`` or the legacy keys Pythia's
    config.json uses (``rotary_pct``, ``rotary_emb_base``)."""
    if cfg.get("rope_scaling"):
        raise HFImportError(f"{where}: rope_scaling is not supported")
    rope = cfg.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise HFImportError(f"{where}: rope_parameters is not a JSON object")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise HFImportError(f"{where}: rope_type {kind!r} is not supported (only 'default')")
    pct = rope.get("partial_rotary_factor", cfg.get("rotary_pct", 0.25))
    base = rope.get("rope_theta", cfg.get("rotary_emb_base", 10000))
    dims = int(d_head * pct)
    if dims < 2 or dims % 2:
        raise HFImportError(
            f"{where}: rotary dimensions {dims} (head size {d_head} x {pct}) must be even and > 0"
        )
    return dims, float(base)


def _neox(cfg: dict[str, Any], where: Path) -> dict[str, Any]:
    d_model = cfg.get("hidden_size", 6144)
    n_heads = cfg.get("num_attention_heads", 64)
    dims, base = _rotary(cfg, d_model // n_heads, where)
    return {
        "vocab_size": cfg.get("vocab_size", 50432),
        "n_layers": cfg.get("num_hidden_layers", 44),
        "n_heads": n_heads,
        "d_model": d_model,
        "d_mlp": cfg.get("intermediate_size", 24576),
        "context": cfg.get("max_position_embeddings", 2048),
        "ln_eps": cfg.get("layer_norm_eps", 1e-5),
        "activation": _activation(cfg.get("hidden_act", "gelu"), where),
        "positions": "rotary",
        "rotary_dims": dims,
        "rotary_base": base,
        "parallel": bool(cfg.get("use_parallel_residual", True)),
        "qkv_bias": bool(cfg.get("attention_bias", True)),
        "tied": cfg.get("tie_word_embeddings", False),
    }


def read_spec(folder: Path) -> Spec:
    """The step folder's ``config.json`` as a ``Spec``; anything unsupported is refused."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise HFImportError(f"no {CONFIG_FILE} in {folder}")
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise HFImportError(f"{path} is not a JSON object")
    arch = architecture(cfg, path)
    try:
        fields = _gpt2(cfg, path) if arch == "gpt2" else _neox(cfg, path)
        return Spec(arch, ModelConfig(dropout=0.0, mlp=True, unembed_bias=False, **fields))
    except HFImportError:
        raise
    except (TypeError, ValueError, ZeroDivisionError) as err:  # a wrong type, out of range
        raise HFImportError(f"{path}: {err}") from None


def difference(a: Spec, b: Spec) -> str | None:
    """The first setting two steps disagree on, as ``name: a vs b``; None when equal."""
    if a.arch != b.arch:
        return f"architecture: {a.arch} vs {b.arch}"
    da, db = a.config.to_dict(), b.config.to_dict()
    for key in da:
        if da[key] != db[key]:
            return f"{key}: {da[key]!r} vs {db[key]!r}"
    return None
