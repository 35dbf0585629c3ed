"""Frozen configurations: a run is fully described by the model's (``training.model.config``)
and this training one."""

from __future__ import annotations

from dataclasses import dataclass

from training.model.config import ConfigDict, ModelConfig

__all__ = ["ModelConfig", "TrainConfig"]


@dataclass(frozen=True)
class TrainConfig(ConfigDict):
    """The article's AdamW recipe; the seed makes a run repeatable on one machine."""

    steps: int = 10_000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    seed: int = 0
    save_every: int = 100
    log_spaced: int = 0  # >0: that many log-spaced checkpoints instead of the default schedule

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if self.save_every < 1:
            raise ValueError("save-every must be at least 1")
        if self.lr <= 0:
            raise ValueError("learning rate must be positive")
