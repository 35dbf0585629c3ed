"""Frozen configurations: a run is fully described by these two dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """The article's GPT: 2 layers, 2 heads, width 20, context 12, tied embeddings."""

    vocab_size: int = 19
    n_layers: int = 2
    n_heads: int = 2
    d_model: int = 20
    d_mlp: int = 80
    context: int = 12
    dropout: float = 0.2
    init_std: float = 0.02
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by the number of heads "
                f"({self.n_heads})"
            )
        for name in ("vocab_size", "n_layers", "n_heads", "d_model", "d_mlp", "context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TrainConfig:
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
