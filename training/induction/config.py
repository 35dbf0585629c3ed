"""The induction task's configuration: the defaults measured to form an induction head.

Issue #16's probe: a 2-layer attention-only pre-LN model, d 64, 2 heads, vocabulary 48,
context 32, AdamW 1e-3, batch 64, formed one in 3 of 3 seeds within 1,500 steps; the
article's width (d 20), a fixed repeat offset and sequences of distinct tokens did not.

Re-measured (session 7, a pure-JAX probe and this trainer, seeds 0-2): on this data with
every position weighted alike, tied embeddings formed no induction head and the untied
model formed one in seed 0 only (seeds 1 and 2: score 0.01 at step 500, the loss falling
through heads that spread attention over the context). So the unembedding is untied, the
weight decay is optax's 1e-4 (the probe's), the repeated part weighs 4x in the training
loss (``training.induction.loss``) and the vocabulary is 64 (at 48 a repeated token's
earlier duplicates split the induction head's attention: best scores 0.68-0.73; at 64,
0.74-0.78). With these, seeds 0, 1 and 2 cross half the repeated-part loss's drop at
steps 250, 270 and 260, each 10-90% within 190-250 steps.

Open (session 8, ``adam_eps`` added to measure it): seeds 0 and 1 grow two layer-1
induction heads in lockstep (scores within 0.02 of each other at every step), so zeroing
either costs 0.2-0.3 nats. AdamW moves every parameter about ``lr`` a step whatever its
gradient's size, so the lagging head keeps pace with the leading one. A larger epsilon
leaves small gradients plain-gradient-like and the leader takes the circuit alone: at
1e-4 every seed grew one induction head (zeroing it: +2.5 to +4.2 nats) but the
transition came at steps 560-650 and did not finish by 800; at 2e-5 to 3e-5 seed 1 found
no induction head by step 1,200 (a loss of 0.8 by other means); at 1e-5 seeds 0 and 1 share
again. Weight decay (0.1, 1.0), init 0.1, d_model 128 and repeat weights 5-8 kept the
sharing; lr 2e-3 and 3e-3 (with epsilon 3e-5 or 1e-4) formed no induction head at all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from training.model.config import ConfigDict, ModelConfig
from training.tokenizer import PADDING, UNKNOWN


@dataclass(frozen=True)
class InductionConfig(ConfigDict):
    """Task, model and optimiser of an induction run (stored in run.json as ``induction``).

    ``vocab`` counts the data's tokens ``t0 .. t{vocab-1}``; the model has two more rows,
    UNKNOWN and PADDING, so the word tokenizer (and so the app) can read a run. Checkpoints
    every ``dense_every`` steps up to ``dense_until`` (the transition, near step 200-260 in
    the probe), every ``save_every`` after."""

    vocab: int = 64
    context: int = 32
    min_segment: int = 4
    max_segment: int = 16
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    steps: int = 800
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    adam_eps: float = 1e-8
    repeat_weight: float = 4.0
    init_std: float = 0.02
    tied: bool = False
    dense_every: int = 10
    dense_until: int = 600
    save_every: int = 50
    valid_sequences: int = 256

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be true or false, got {value!r}")
                continue
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{f.name} must be an integer, got {value!r}")
            if f.type == "float" and (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            if not (value >= 0 if f.name == "weight_decay" else value > 0):
                raise ValueError(f"{f.name} must be positive, got {value!r}")
        if self.vocab < 2:
            raise ValueError(f"vocab must be at least 2, got {self.vocab}")
        if not 2 <= self.min_segment <= self.max_segment:
            raise ValueError(
                f"segments need 2 <= min_segment <= max_segment, got {self.min_segment}, "
                f"{self.max_segment} (a segment of 1 has nothing to predict by induction)"
            )
        if 2 * self.max_segment > self.context:
            raise ValueError(
                f"a segment and its repeat (2 x max_segment = {2 * self.max_segment}) must fit "
                f"the context ({self.context}) after a prefix of at least one token"
            )
        self.model()  # d_model divisible by the heads, and the rest of ModelConfig's checks

    def model(self) -> ModelConfig:
        """Attention-only, no dropout, learned positions: the probe's model."""
        return ModelConfig(
            vocab_size=self.vocab + 2,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            d_model=self.d_model,
            context=self.context,
            dropout=0.0,
            init_std=self.init_std,
            mlp=False,
            tied=self.tied,
        )

    def words(self) -> tuple[str, ...]:
        """The run's vocabulary: id i < vocab is ``t{i}``, then UNKNOWN and PADDING."""
        return tuple(f"t{i}" for i in range(self.vocab)) + (UNKNOWN, PADDING)

    def schedule(self) -> list[int]:
        """Saved steps: 0, 1, 2, 5, every ``dense_every`` to ``dense_until``, then every
        ``save_every``, and the last step."""
        dense = range(self.dense_every, min(self.dense_until, self.steps) + 1, self.dense_every)
        sparse = range(self.dense_until, self.steps + 1, self.save_every)
        steps = {0, 1, 2, 5, self.steps, *dense, *sparse}
        return sorted(s for s in steps if s <= self.steps)
