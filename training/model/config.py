"""The model's configuration: everything that fixes its shape and its parameter schema."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Self

#: The choices of the string fields, in the order the errors list them.
POSITIONS = ("learned", "rotary")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
INT_FIELDS = ("vocab_size", "n_layers", "n_heads", "d_model", "d_mlp", "context", "rotary_dims")


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
    """The article's GPT by default: 2 layers, 2 heads, width 20, context 12, learned
    positions, sequential blocks, ReLU, tied embeddings, no qkv or unembedding bias.

    The other fields describe the GPT-2 / GPT-NeoX family (imported checkpoints): rotary
    positions on the first ``rotary_dims`` of each head's q and k (GPT-NeoX's rotate-half
    pairs ``(i, i + r/2)``), parallel attention and MLP, GELU, a qkv bias, attention-only
    blocks, an untied unembedding ``w_u [D, V]`` and its bias ``b_u [V]``. ``context`` is
    the position capacity."""

    vocab_size: int = 19
    n_layers: int = 2
    n_heads: int = 2
    d_model: int = 20
    d_mlp: int = 80
    context: int = 12
    dropout: float = 0.2
    init_std: float = 0.02
    ln_eps: float = 1e-5
    positions: str = "learned"
    rotary_dims: int = 0
    rotary_base: float = 10000.0
    parallel: bool = False
    activation: str = "relu"
    qkv_bias: bool = False
    mlp: bool = True
    tied: bool = True
    unembed_bias: bool = False

    def __post_init__(self) -> None:
        self._check_ints()
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by the number of heads "
                f"({self.n_heads})"
            )
        for name in ("dropout", "init_std", "ln_eps", "rotary_base"):
            value = getattr(self, name)
            if not _real(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.ln_eps > 0:
            raise ValueError(f"ln_eps must be positive, got {self.ln_eps}")
        _one_of("positions", self.positions, POSITIONS)
        _one_of("activation", self.activation, ACTIVATIONS)
        for name in ("parallel", "qkv_bias", "mlp", "tied", "unembed_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self._check_rotary()

    def _check_ints(self) -> None:
        """Before any arithmetic: a float 2.0 would only fail later, deep inside JAX, and
        n_heads 0 is named as such rather than as a division by zero."""
        for name in INT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            low = 0 if name == "rotary_dims" else 1
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")

    def _check_rotary(self) -> None:
        r = self.rotary_dims
        if self.positions == "learned":
            if r != 0:
                raise ValueError(
                    f"rotary_dims ({r}) is for positions='rotary'; with learned positions it is 0"
                )
            return
        if not (0 < r <= self.d_head and r % 2 == 0):
            raise ValueError(
                f"rotary_dims must be even and in 1..d_head ({self.d_head}) under rotary "
                f"positions, got {r}"
            )
        if not self.rotary_base > 0:
            raise ValueError(f"rotary_base must be positive, got {self.rotary_base}")

    @property
    def d_head(self) -> int:
        """Each head's width: its queries, keys and values have this many dimensions."""
        return self.d_model // self.n_heads


def _real(value: object) -> bool:
    """A finite int or float (not a bool, which is an int to Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
