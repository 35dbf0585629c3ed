"""The circuit graph of a model: which node's output reaches which node's input.

Nodes that write to the residual stream (*senders*): the embeddings (token plus position),
every head and every MLP. Nodes that read it (*receivers*): every head's query, key and
value input (three receivers: the three are patched apart), every MLP's input and the
logits. An edge runs from a sender to each receiver downstream of it:

- a head of layer ``l`` reads the embeddings and every head and MLP of the layers before;
- an MLP of a sequential block also reads its own layer's heads; a parallel block's MLP
  reads what its heads read (``x + attn(LN1 x) + mlp(LN2 x)``);
- the logits read every sender.

Attention-only models (``mlp=False``) have no MLP nodes. Plain Python and numpy: the app's
views and the selection read names from here without JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from interp_app.core.heads import head_name, parse_head

EMBED = "embed"
LOGITS = "logits"
QKV = ("q", "k", "v")
ARROW = " -> "


def mlp_name(layer: int) -> str:
    return f"L{layer} MLP"


@dataclass(frozen=True)
class Graph:
    """Senders, receivers and edges of one model shape, in a fixed order.

    Senders: ``embed``, then per layer its heads (``L0H0``...) and its MLP (``L0 MLP``).
    Receivers: per layer every head's ``.q``, ``.k``, ``.v`` input (q of every head, then
    k, then v) and its MLP's input, then ``logits``. Edges: every (receiver, sender) pair
    of :attr:`adjacency`, receiver-major."""

    n_layers: int
    n_heads: int
    mlp: bool = True
    parallel: bool = False

    @classmethod
    def of(cls, cfg: Any) -> Graph:
        """The graph of a ``ModelConfig``."""
        return cls(cfg.n_layers, cfg.n_heads, bool(cfg.mlp), bool(cfg.parallel))

    @property
    def per_layer_senders(self) -> int:
        return self.n_heads + int(self.mlp)

    @property
    def per_layer_receivers(self) -> int:
        return 3 * self.n_heads + int(self.mlp)

    def head_sender(self, layer: int, head: int) -> int:
        return 1 + layer * self.per_layer_senders + head

    def mlp_sender(self, layer: int) -> int:
        return 1 + layer * self.per_layer_senders + self.n_heads

    def head_receiver(self, layer: int, which: int, head: int) -> int:
        """Receiver index of head (layer, head)'s input ``which`` (0 q, 1 k, 2 v)."""
        return layer * self.per_layer_receivers + which * self.n_heads + head

    def mlp_receiver(self, layer: int) -> int:
        return layer * self.per_layer_receivers + 3 * self.n_heads

    @property
    def logits_receiver(self) -> int:
        return self.n_layers * self.per_layer_receivers

    @cached_property
    def senders(self) -> tuple[str, ...]:
        names = [EMBED]
        for layer in range(self.n_layers):
            names += [head_name(layer, h) for h in range(self.n_heads)]
            names += [mlp_name(layer)] if self.mlp else []
        return tuple(names)

    @cached_property
    def receivers(self) -> tuple[str, ...]:
        names = []
        for layer in range(self.n_layers):
            names += [f"{head_name(layer, h)}.{x}" for x in QKV for h in range(self.n_heads)]
            names += [mlp_name(layer)] if self.mlp else []
        return (*names, LOGITS)

    def _upstream(self, layer: int, own_heads: bool) -> int:
        """How many senders (a prefix) a receiver of ``layer`` reads."""
        return 1 + layer * self.per_layer_senders + (self.n_heads if own_heads else 0)

    @cached_property
    def adjacency(self) -> np.ndarray:
        """[R, S] bool: True where the sender's output reaches the receiver's input. Every
        receiver reads a prefix of the senders (they are in computation order)."""
        a = np.zeros((len(self.receivers), len(self.senders)), bool)
        for layer in range(self.n_layers):
            for which in range(3):
                for h in range(self.n_heads):
                    a[self.head_receiver(layer, which, h), : self._upstream(layer, False)] = True
            if self.mlp:
                a[self.mlp_receiver(layer), : self._upstream(layer, not self.parallel)] = True
        a[self.logits_receiver] = True
        return a

    @cached_property
    def bias_layers(self) -> np.ndarray:
        """[R, L] float32: 1 where layer l's attention output bias (in no head's output, a
        constant) is in the receiver's input."""
        b = np.zeros((len(self.receivers), self.n_layers), np.float32)
        for layer in range(self.n_layers):
            b[self.per_layer_receivers * (layer + 1) :, layer] = 1.0
            if self.mlp and not self.parallel:
                b[self.mlp_receiver(layer), layer] = 1.0
        return b

    @cached_property
    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(receiver [E], sender [E]) of every edge, receiver-major."""
        r, s = np.nonzero(self.adjacency)
        return r.astype(np.int32), s.astype(np.int32)

    @property
    def n_edges(self) -> int:
        return int(self.adjacency.sum())

    @cached_property
    def edges(self) -> tuple[str, ...]:
        """``"L0H1 -> L1H1.v"``: sender, arrow, receiver."""
        r, s = self.edge_index
        return tuple(
            f"{self.senders[j]}{ARROW}{self.receivers[i]}" for i, j in zip(r, s, strict=True)
        )

    def edge(self, name: str) -> int:
        """The index of an edge by name; a ValueError naming the edges otherwise."""
        try:
            return self.edges.index(name)
        except ValueError:
            raise ValueError(
                f"no edge {name!r}: edges are named like {self.edges[-1]!r} ({self.n_edges} edges)"
            ) from None

    def receiver_head(self, receiver: str) -> tuple[int, int] | None:
        """(layer, head) of a head's q/k/v receiver, None for an MLP or the logits."""
        base = receiver.split(".", 1)[0]
        return parse_head(base, self.n_layers, self.n_heads)
