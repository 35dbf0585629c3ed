"""The model's configuration: everything that fixes its shape and its parameter schema."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self


class ConfigDict:
    """``to_dict`` / ``from_dict`` for a frozen config dataclass, as stored in ``run.json``.

    Unknown keys are ignored on reading, so a run written by a later version still opens."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ModelConfig(ConfigDict):
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
        """Each head's width: its queries, keys and values have this many dimensions."""
        return self.d_model // self.n_heads
