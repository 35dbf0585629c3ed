"""Your own training loop, browsed in interp-app: a plain Flax NNX + Optax loop on the
built-in fruits sentences whose checkpoints ``training.series.SeriesWriter`` saves.

    .venv/bin/python examples/own_loop.py            # writes checkpoints/own-loop
    .venv/bin/interp-app                             # then pick the run "own-loop"

Only the lines that mention ``writer`` belong to the explorer; the rest is any loop. Each
run of this script starts the series again (``overwrite=True``); without it, reopening a
run with the same config and vocabulary resumes it, and steps must keep increasing.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax
from flax import nnx

from training.corpus import builtin_corpus
from training.model.config import ModelConfig
from training.model.gpt import GPT
from training.series import SeriesWriter
from training.tokenizer import Tokenizer


def encode(tokenizer: Tokenizer, lines: tuple[str, ...], context: int) -> np.ndarray:
    """[N, context + 1] ids padded with PADDING: inputs [:, :-1], next tokens [:, 1:]."""
    rows = np.full((len(lines), context + 1), tokenizer.padding_id, np.int32)
    for i, line in enumerate(lines):
        ids = tokenizer.encode(line)[: context + 1]
        rows[i, : len(ids)] = ids
    return rows


def saved_steps(steps: int) -> set[int]:
    """Dense early (a model changes fastest at first), then every tenth of the run."""
    early = {0, 1, 2, 5, 10, 20, 50, 100, 200, 500}
    return {s for s in early if s <= steps} | set(range(0, steps + 1, max(1, steps // 10)))


def main(root: str = "checkpoints", steps: int = 2000) -> None:
    corpus = builtin_corpus()
    tokenizer = Tokenizer.from_lines(corpus.train)  # sorted words, then UNKNOWN, PADDING
    config = ModelConfig(vocab_size=len(tokenizer), dropout=0.0)
    train, valid = (
        jax.numpy.asarray(encode(tokenizer, x, config.context))
        for x in (corpus.train, corpus.valid)
    )
    graphdef, params = nnx.split(GPT(config, nnx.Rngs(0)))
    tx = optax.adamw(3e-3, weight_decay=0.01)
    opt_state = tx.init(params)

    def loss_fn(params: nnx.State, batch: jax.Array) -> jax.Array:
        logits = nnx.merge(graphdef, params)(batch[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params, train)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    evaluate = jax.jit(lambda params: loss_fn(params, valid))
    save = saved_steps(steps)
    with SeriesWriter.open(root, "own-loop", config, tokenizer.vocab, overwrite=True) as writer:
        writer.save(0, params, {"valid_loss": evaluate(params)})  # the initial model
        for step in range(1, steps + 1):
            params, opt_state, loss = train_step(params, opt_state)
            if step in save:
                writer.save(step, params, {"train_loss": loss, "valid_loss": evaluate(params)})
    print(f"saved {len(writer.steps)} steps of run 'own-loop' under {root}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="checkpoints", help="checkpoint root")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    args = parser.parse_args()
    main(args.root, args.steps)
