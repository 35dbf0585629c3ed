"""``run.json`` for a run that ``interp-train`` did not make: an imported checkpoint series
or a user's own training loop (``interp-import``, ``training.series``).

Such a run has no training config and no built-in corpus; its tokenizer is one of:

- ``{"vocab": [...]}``: the built-in word tokenizer, a list of words (``training.tokenizer``);
- ``{"tokenizer": {"kind": "huggingface", "file": "tokenizer.json"}}``: a Hugging Face
  ``tokenizers`` file copied into the run folder;
- ``{"tokenizer": {"kind": "bytes"}}``: byte-level ids (id ``i`` < 256 is byte ``i``), the
  fallback when a model comes without a tokenizer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from training import checkpoint as ckpt
from training.model.config import ModelConfig
from training.prepare import package_versions

TOKENIZER_FILE = "tokenizer.json"


def external_metadata(
    mc: ModelConfig, tokenizer: dict[str, Any], source: dict[str, Any]
) -> dict[str, Any]:
    """``tokenizer`` is ``{"vocab": [...]}`` or ``{"tokenizer": {...}}`` (module docstring);
    ``source`` says where the weights came from (``{"kind": "huggingface", "path": ...}``)."""
    if set(tokenizer) not in ({"vocab"}, {"tokenizer"}):
        raise ValueError("tokenizer is {'vocab': [...]} or {'tokenizer': {...}}")
    return {
        "format": ckpt.FORMAT,
        "model": mc.to_dict(),
        "train": None,
        **tokenizer,
        "source": source,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
