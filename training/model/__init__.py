"""The model: start at ``gpt.py`` (the readable reference, with the ``attention`` switch).

``config`` its configuration (the article's model by default, the GPT-2 / GPT-NeoX family
by its other fields); ``gpt`` the model; ``fast`` the fast attention path training uses;
``rotary`` GPT-NeoX rotary positions; ``interp`` capture and interventions (the
interpretability contract); ``dropout`` the hashed dropout masks; ``norm`` LayerNorm's
closed-form gradient; ``params`` the checkpoint's parameter schema.
"""

from training.model.config import ModelConfig
from training.model.gpt import GPT, AttentionPath, Capture, Intervention, capture

__all__ = ["GPT", "AttentionPath", "Capture", "Intervention", "ModelConfig", "capture"]
