"""What ``interp-capture`` writes: one step's capture, its metrics and (optionally) patching
as named tensors (:data:`TENSORS`: every name, shape, dtype and meaning) plus a JSON-able
header (tokens, target, configs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_app.core.heads import METRICS, architecture_notes
from interp_app.core.prompt import Prompt
from interp_app.core.records import Metrics, Patching, StepCapture

if TYPE_CHECKING:
    from interp_app.core.api import Run

FORMAT = "interp-capture/1"  # the export's "format" in its header

# Every tensor an export may hold: name -> (shape, dtype, meaning). The CLI's --help, the
# header's "tensors" entry and the tests all read this one table.
TENSORS: dict[str, tuple[str, str, str]] = {
    "tokens": ("[T]", "int32", "token ids of the prompt's real positions"),
    "logits": ("[T, V]", "float32", "the model's logits"),
    "tok_emb": ("[T, D]", "float32", "token embeddings"),
    "pos_emb": ("[T, D]", "float32", "position embeddings"),
    "resid": ("[L+1, T, D]", "float32", "residual stream at each layer boundary"),
    "resid_mid": ("[L, T, D]", "float32", "residual stream after attention, before the MLP"),
    "patterns": ("[L, H, T, T]", "float32", "attention patterns (query, key)"),
    "values": ("[L, H, T, K]", "float32", "each head's value vectors"),
    "head_out": ("[L, H, T, D]", "float32", "each head's own write to the residual stream"),
    "attn_bias": ("[L, D]", "float32", "attention output bias"),
    "attn_out": ("[L, T, D]", "float32", "attention block output (heads + bias)"),
    "mlp_out": ("[L, T, D]", "float32", "MLP outputs"),
    "final": ("[T, D]", "float32", "after the final LayerNorm"),
    "final_inv_std": ("[T]", "float32", "the final LayerNorm's 1/std"),
    "probs": ("[V]", "float64", "P(word) at pos"),
    "clean_probs": ("[V]", "float64", "P(word) at pos without ablation (only with --ablate)"),
    "dla": ("[C]", "float64", "DLA of each component (names: header's components)"),
    "token_attr": ("[T]", "float64", "each source token's DLA through the head"),
    "lens_top": ("[L+1, T]", "int64", "logit lens: most likely word id at each boundary"),
    "lens_prob": ("[L+1, T]", "float64", "logit lens: its probability"),
    **{
        f"head_{name}": ("[L, H]", "float32" if name == "ablation" else "float64", text)
        for name, text in METRICS.items()
    },
    "patch_heads": ("[L, H]", "float32", "patching each head's output (only with --corrupt)"),
    "patch_resid": ("[L+1, T]", "float32", "patching each residual vector (only with --corrupt)"),
}


@dataclass(frozen=True)
class Export:
    """What ``interp-capture`` writes: named tensors and a JSON-able header."""

    tensors: dict[str, np.ndarray]
    header: dict[str, Any]


def export(run: Run, prompt: str | Prompt, m: Metrics, corrupt: str | None = None) -> Export:
    """The capture behind ``m`` (``run.metrics`` on ``prompt``), its metrics and (with
    ``corrupt``) patching, as the tensors of :data:`TENSORS` and a header."""
    cap = run.capture(m.step, prompt, ablate=m.ablate, mode=m.mode)
    tensors = {**cap.arrays(), **m.arrays()}
    patched = None
    if corrupt is not None:
        patched = run.patch(m.step, cap.prompt, corrupt, target=m.target, pos=m.pos)
        tensors.update(patched.arrays())
    header = export_header(run, cap, m, patched, corrupt)
    header["tensors"] = {k: _describe(k, v) for k, v in tensors.items()}
    return Export(tensors, header)


def _describe(name: str, value: np.ndarray) -> dict[str, Any]:
    shape, _, meaning = TENSORS[name]
    return {"axes": shape, "shape": list(value.shape), "dtype": str(value.dtype), "doc": meaning}


def export_header(
    run: Run, cap: StepCapture, m: Metrics, patched: Patching | None, corrupt: str | None
) -> dict[str, Any]:
    """Everything an export needs besides its tensors, JSON-able."""
    header: dict[str, Any] = {
        "format": FORMAT,
        "run": run.name,
        "step": m.step,
        "prompt": cap.prompt.text,
        "tokens": list(cap.prompt.ids),
        "words": list(cap.words),
        "dropped": cap.prompt.dropped,
        "unknown": list(cap.prompt.unknown),
        "target": m.target,
        "target_id": m.target_id,
        "pos": m.pos,
        "head": m.head,
        "src": m.src,
        "ablate": list(m.ablate),
        "mode": m.mode,
        "logit": m.logit,
        "target_prob": m.target_prob,
        "components": list(m.components),
        "component_kinds": list(m.component_kinds),
        "head_metrics": dict(METRICS),
        "vocab": list(run.vocab),
        "tokenizer": run.tokenizer.kind,
        "model": run.config.to_dict(),
        "train": None if run.train_config is None else run.train_config.to_dict(),
        "notes": architecture_notes(run.config),
    }
    if patched is not None:
        header["patching"] = {
            "corrupt": corrupt,
            "corrupt_words": list(patched.corrupt),
            "answer": patched.answer,
            "clean_diff": patched.clean_diff,
            "corrupt_diff": patched.corrupt_diff,
        }
    return header


def tensor_table(tensors: Mapping[str, tuple[str, str, str]] = TENSORS) -> str:
    """The tensor names, shapes, dtypes and meanings, one line each (for ``--help``)."""
    width = max(len(k) for k in tensors)
    shape_w = max(len(v[0]) for v in tensors.values())
    return "\n".join(
        f"  {k:<{width}}  {shape:<{shape_w}}  {dtype:<7}  {meaning}"
        for k, (shape, dtype, meaning) in tensors.items()
    )
