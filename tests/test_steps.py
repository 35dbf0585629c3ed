"""The compiled training steps: data parallel, the chunk's randomness, flat optimizer state."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training.config import TrainConfig
from training.model.config import ModelConfig
from training.model.dropout import dropout_seed
from training.model.gpt import init_params
from training.steps import (
    data_mesh,
    data_parallel,
    flat_state,
    sequence_loss,
    step_randomness,
    tree_state,
)
from training.train import make_optimizer


def test_data_parallel_gradient_is_the_whole_batch_gradient():
    """Two host devices, each with half the batch and one all-reduce, give the loss and
    gradient of the whole batch, dropout masks included (only the summation order differs)."""
    mesh = data_mesh(64)
    if mesh is None:
        pytest.skip("needs two host devices (training.runtime configures them)")
    cfg = ModelConfig()
    graphdef, params = init_params(cfg, 5)
    batch = jax.random.randint(jax.random.key(1), (64, cfg.context + 1), 0, cfg.vocab_size)
    grad_fn = jax.value_and_grad(functools.partial(sequence_loss, graphdef))
    key = jax.random.key(7)
    loss, grads = jax.jit(grad_fn)(params, batch, key)
    dp_loss, dp_grads = jax.jit(data_parallel(grad_fn, mesh))(params, batch, key)
    np.testing.assert_allclose(dp_loss, loss, rtol=1e-6)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))
    for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(dp_grads), strict=True):
        np.testing.assert_allclose(d, g, atol=1e-5 * scale)
    # other masks would move the gradient far more than that
    _, other = jax.jit(grad_fn)(params, batch, jax.random.key(8))
    moved = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(other), strict=True)
    )
    assert moved > 1e-3 * scale


def test_a_chunks_randomness_is_drawn_as_step_by_step():
    """Drawn for a whole chunk at once, yet each step's batch rows and dropout seed are the
    ones its own step-numbered key gives (so resuming mid-run draws the same)."""
    base = jax.random.key(3)
    rows, seeds = jax.jit(step_randomness, static_argnums=(2, 3, 4))(base, 40, 5, 64, 19)
    for i in range(5):
        k_batch, k_drop = jax.random.split(jax.random.fold_in(base, 40 + i + 1))
        np.testing.assert_array_equal(rows[i], jax.random.randint(k_batch, (64,), 0, 19))
        assert int(seeds[i]) == int(dropout_seed(k_drop))
    assert len({int(s) for s in seeds}) == 5


def test_flat_optimizer_state_round_trips():
    """Adam's moments as flat vectors inside the loop, as named trees in checkpoints."""
    _, params = init_params(ModelConfig(), 0)
    optimizer = make_optimizer(TrainConfig())
    state = optimizer.init(params)
    state = jax.tree.map(lambda x: x + jnp.arange(x.size, dtype=x.dtype).reshape(x.shape), state)
    flat = flat_state(state, params)
    sizes = {x.shape for x in jax.tree.leaves(flat)}
    assert sizes == {(), (10_660,)}  # the step count and two moment vectors
    back = tree_state(flat, state, params)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
