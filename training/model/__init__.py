"""The model: start at ``gpt.py`` (the readable reference, with the ``attention`` switch).

``config`` its configuration (the article's model by default, the GPT-2 / GPT-NeoX family
by its other fields); ``gpt`` the model; ``fast`` the fast attention path training uses;
``rotary`` GPT-NeoX rotary positions; ``interp`` capture and interventions (the
interpretability contract); ``dropout`` the hashed dropout masks; ``norm`` LayerNorm's
closed-form gradient; ``params`` the checkpoint's parameter schema.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from training.model.config import ModelConfig

if TYPE_CHECKING:
    from training.model.gpt import GPT, AttentionPath, Capture, Intervention, capture

__all__ = ["GPT", "AttentionPath", "Capture", "Intervention", "ModelConfig", "capture"]


def __getattr__(name: str) -> Any:
    """The model's names load JAX on first use: reading a config (``interp-import``, the
    run store's listing) needs no JAX, which takes seconds to import."""
    if name in __all__:
        return getattr(importlib.import_module("training.model.gpt"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
