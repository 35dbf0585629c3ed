"""The model: config, forward pass, capture and interventions, parameter schema."""

from training.model.gpt import GPT, Capture, Intervention, capture

__all__ = ["GPT", "Capture", "Intervention", "capture"]
