"""Hardening of the trainer: large corpora, file modes, bad metrics lines, damaged latest
steps, interrupted saves, a full disk and saving cost (issue 12, training side)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from training.config import ModelConfig, TrainConfig
from training.tokenizer import Tokenizer

# Item 2: a large corpus -----------------------------------------------------------------


def test_tokenizer_index_is_built_once():
    """Rebuilding the index on every ``encode`` made a 50,000-line corpus take minutes."""
    tok = Tokenizer.from_lines(f"w{i} x{i}" for i in range(20_000))
    assert tok.index is tok.index
    assert tok.encode("w7 x19999 nope") == [tok.index["w7"], tok.index["x19999"], tok.unknown_id]
    assert tok.padding_id == len(tok) - 1 and tok.unknown_id == len(tok) - 2


@pytest.mark.parametrize("same_valid", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_batched_evaluation_equals_one_pass(same_valid, parallel):
    """A corpus larger than the evaluation batch gives the losses and prompt logits of one
    pass over all of it (validation lines equal to the training lines count once), also
    with each host device taking its share of every batch."""
    from flax import nnx

    from training.model import init_params
    from training.steps import build_evaluate, data_mesh

    mesh = data_mesh(64) if parallel else None
    if parallel and mesh is None:
        pytest.skip("needs two host devices (training.runtime configures them)")

    cfg = ModelConfig(vocab_size=50)
    graphdef, params = init_params(cfg, 3)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 50, (37, cfg.context + 1)).astype(np.int32)
    valid = data if same_valid else rng.integers(0, 50, (11, cfg.context + 1)).astype(np.int32)
    model = nnx.merge(graphdef, params)
    whole = jax.jit(build_evaluate(data, valid, rows=1000))(model)
    batched = jax.jit(build_evaluate(data, valid, rows=5, mesh=mesh))(model)
    for key in ("train_loss", "valid_loss", "prompt_logits"):
        np.testing.assert_allclose(batched[key], whole[key], rtol=2e-6, atol=1e-6)
    logits = model(jax.numpy.asarray(valid[:1, :-1]))[0]
    np.testing.assert_allclose(whole["prompt_logits"], logits, atol=1e-6)


def test_evaluation_memory_does_not_grow_with_the_corpus():
    """The compiled chunk of a 4,000-line corpus with 2,000 words (its logits alone would be
    384 MB) needs far less memory than those logits: evaluation goes in bounded batches."""
    from training.params import abstract_model
    from training.steps import build_chunk_fn, eval_rows, placeholders
    from training.train import make_optimizer

    mc = ModelConfig(vocab_size=2_000)
    rng = np.random.default_rng(0)
    data = rng.integers(0, mc.vocab_size, (4_000, mc.context + 1)).astype(np.int32)
    valid = rng.integers(0, mc.vocab_size, (500, mc.context + 1)).astype(np.int32)
    graphdef, shapes = abstract_model(mc)
    optimizer = make_optimizer(TrainConfig())
    rows = eval_rows(mc.context, mc.vocab_size)
    run_chunk = build_chunk_fn(graphdef, optimizer, data, valid, 64, 10, rows)
    args = (*placeholders(shapes, optimizer, 64), jax.random.key(0), 0, 0)
    memory = run_chunk.lower(*args).compile().memory_analysis()
    all_logits = len(data) * mc.context * mc.vocab_size * 4
    used = memory.temp_size_in_bytes + memory.output_size_in_bytes
    assert used < all_logits / 3, (used, all_logits)
