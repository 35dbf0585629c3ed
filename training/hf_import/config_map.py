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
#: Bounds past which a config value is a mistake, not a model (context, widths, counts).
MAX_SIZE = 1_000_000
MAX_EPS = 1.0
MAX_ROPE_BASE = 1e9
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


def _names(cfg: dict[str, Any], where: Path) -> list[str]:
    names = cfg.get("architectures")
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise HFImportError(f"{where}: architectures {names!r} is not a list of class names")
    if len(names) > 1:
        raise HFImportError(
            f"{where}: architectures lists {', '.join(names)}; give one class (supported: "
            f"{', '.join(ARCHITECTURES)})"
        )
    return names


def architecture(cfg: dict[str, Any], where: Path) -> str:
    """The layout ``architectures`` names, ``model_type`` when it is absent; both given and
    disagreeing is refused, since either could be the mistake."""
    names = _names(cfg, where)
    model_type = cfg.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise HFImportError(f"{where}: model_type {model_type!r} is not a name")
    if names and names[0] in ARCHITECTURES:
        arch = ARCHITECTURES[names[0]]
        if model_type is not None and MODEL_TYPES.get(model_type) != arch:
            raise HFImportError(
                f"{where}: architectures {names[0]} and model_type {model_type!r} disagree"
            )
        return arch
    if not names and model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    found = names[0] if names else f"model_type {model_type!r}"
    raise HFImportError(
        f"{where}: unsupported architecture {found}; supported: {', '.join(ARCHITECTURES)}"
    )


def _int(cfg: dict[str, Any], key: str, default: int) -> int:
    value = cfg.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} {_show(value)} is not an integer")
    if not 1 <= value <= MAX_SIZE:
        raise ValueError(f"{key} {value} is not in 1..{MAX_SIZE:,}")
    return value


def _real(cfg: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    """A number in (low, high]: NaN, infinities and absurd values are refused."""
    value = cfg.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{key} {_show(value)} is not a number")
    if not low < value <= high:  # False for NaN
        raise ValueError(f"{key} {value!r} is not in ({low:g}, {high:g}]")
    return float(value)


def _bool(cfg: dict[str, Any], key: str, default: bool) -> bool:
    """JSON true or false only: bool("false") would be True."""
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} {_show(value)} is not true or false")
    return value


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)


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
    d_model = _int(cfg, "n_embd", 768)
    return {
        "vocab_size": _int(cfg, "vocab_size", 50257),
        "n_layers": _int(cfg, "n_layer", 12),
        "n_heads": _int(cfg, "n_head", 12),
        "d_model": d_model,
        "d_mlp": 4 * d_model if cfg.get("n_inner") is None else _int(cfg, "n_inner", 0),
        "context": _int(cfg, "n_positions", 1024),
        "ln_eps": _real(cfg, "layer_norm_epsilon", 1e-5, 0.0, MAX_EPS),
        "activation": _activation(cfg.get("activation_function", "gelu_new"), where),
        "positions": "learned",
        "qkv_bias": True,
        "tied": _bool(cfg, "tie_word_embeddings", True),
    }


#: Where each rotary setting may be given: v5's ``rope_parameters``, the top-level keys
#: v4.4x configs have, Pythia's legacy keys; values given in several places must agree.
ROTARY_KEYS = {
    "partial_rotary_factor": ("rotary_pct", 0.25, 1.0),
    "rope_theta": ("rotary_emb_base", 10000.0, MAX_ROPE_BASE),
}


def _rotary_value(cfg: dict[str, Any], rope: dict[str, Any], key: str) -> float:
    legacy, default, high = ROTARY_KEYS[key]
    given = {
        name: _real(src, k, default, 0.0, high)
        for name, src, k in [
            (f"rope_parameters.{key}", rope, key),
            (key, cfg, key),
            (legacy, cfg, legacy),
        ]
        if src.get(k) is not None
    }
    if len(set(given.values())) > 1:
        shown = ", ".join(f"{k}={v:g}" for k, v in given.items())
        raise ValueError(f"the rotary settings disagree: {shown}")
    return next(iter(given.values()), default)


def _rotary(cfg: dict[str, Any], d_head: int, where: Path) -> tuple[int, float]:
    """(rotary_dims, rotary_base) from whichever of the three spellings the config uses."""
    if cfg.get("rope_scaling"):
        raise HFImportError(f"{where}: rope_scaling is not supported")
    rope = cfg.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise HFImportError(f"{where}: rope_parameters is not a JSON object")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise HFImportError(f"{where}: rope_type {kind!r} is not supported (only 'default')")
    pct = _rotary_value(cfg, rope, "partial_rotary_factor")
    base = _rotary_value(cfg, rope, "rope_theta")
    dims = int(d_head * pct)
    if dims < 2 or dims % 2:
        raise HFImportError(
            f"{where}: rotary dimensions {dims} (head size {d_head} x {pct}) must be even and > 0"
        )
    return dims, base


def _neox(cfg: dict[str, Any], where: Path) -> dict[str, Any]:
    d_model = _int(cfg, "hidden_size", 6144)
    n_heads = _int(cfg, "num_attention_heads", 64)
    if d_model % n_heads:
        raise ValueError(f"hidden_size {d_model} is not divisible by num_attention_heads {n_heads}")
    dims, base = _rotary(cfg, d_model // n_heads, where)
    return {
        "vocab_size": _int(cfg, "vocab_size", 50432),
        "n_layers": _int(cfg, "num_hidden_layers", 44),
        "n_heads": n_heads,
        "d_model": d_model,
        "d_mlp": _int(cfg, "intermediate_size", 24576),
        "context": _int(cfg, "max_position_embeddings", 2048),
        "ln_eps": _real(cfg, "layer_norm_eps", 1e-5, 0.0, MAX_EPS),
        "activation": _activation(cfg.get("hidden_act", "gelu"), where),
        "positions": "rotary",
        "rotary_dims": dims,
        "rotary_base": base,
        "parallel": _bool(cfg, "use_parallel_residual", True),
        "qkv_bias": _bool(cfg, "attention_bias", True),
        "tied": _bool(cfg, "tie_word_embeddings", False),
    }


def read_spec(folder: Path) -> Spec:
    """The step folder's ``config.json`` as a ``Spec``; anything unsupported is refused."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise HFImportError(f"no {CONFIG_FILE} in {folder}")
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise HFImportError(f"{path} is not a JSON object")
    try:
        arch = architecture(cfg, path)
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
