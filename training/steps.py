"""The compiled training steps: loss, AdamW over flat vectors, data parallel over host devices.

``build_chunk_fn`` returns the one jitted call that runs the steps between two checkpoints;
everything around it (run folders, metadata, saving, resuming) lives in ``training.train``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from training.loss import mean_cross_entropy
from training.model.dropout import dropout_seed


def sequence_loss(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    batch: jax.Array,
    key: jax.Array | None = None,
    first_row: jax.Array | int = 0,
) -> jax.Array:
    """Mean next-token cross-entropy over every position, padding included (as the article)."""
    logits = nnx.merge(graphdef, params)(batch[:, :-1], dropout_key=key, first_row=first_row)
    return mean_cross_entropy(logits, batch[:, 1:])


def build_chunk_fn(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    data: np.ndarray,
    valid: np.ndarray,
    batch_size: int,
    max_chunk: int,
    eval_batch: int,
) -> Callable:
    """One jitted call runs ``n`` steps (n dynamic: one compilation serves every gap).

    Inside the loop the parameters and the optimizer's moments are single flat vectors, so
    AdamW is a few fused operations instead of three per parameter array (78 of them,
    0.15 ms of a step); the model reads its arrays as slices of the vector. Evaluation
    takes ``eval_batch`` lines at a time (see :func:`build_evaluate`).
    """
    mesh = data_mesh(batch_size)
    evaluate = build_evaluate(data, valid, eval_batch, mesh)
    lines = jnp.asarray(data)

    @jax.jit
    def run_chunk(params, opt_state, base_key, start, n):
        rows, seeds = step_randomness(base_key, start, max_chunk, batch_size, lines.shape[0])
        flat, unravel = ravel_pytree(params)
        grad_fn = jax.value_and_grad(
            lambda flat, *args: sequence_loss(graphdef, unravel(flat), *args)
        )
        if mesh is not None:
            grad_fn = data_parallel(grad_fn, mesh)

        def body(i, carry):
            flat, flat_opt, losses = carry
            loss, grads = grad_fn(flat, lines[rows[i]], seeds[i])
            updates, flat_opt = optimizer.update(grads, flat_opt, flat)
            return optax.apply_updates(flat, updates), flat_opt, losses.at[i].set(loss)

        losses = jnp.zeros((max_chunk,), jnp.float32)
        carry = (flat, flat_state(opt_state, params), losses)
        flat, flat_opt, losses = jax.lax.fori_loop(0, n, body, carry)
        opt_state = tree_state(flat_opt, opt_state, params)
        params = unravel(flat)
        # Evaluation in the same compiled call (no extra compilations at step 0 or the end).
        return params, opt_state, losses, evaluate(nnx.merge(graphdef, params))

    return run_chunk


EVAL_LOGITS = 1 << 23  # logits held at once while evaluating: 32 MiB of float32


def eval_rows(context: int, vocab_size: int, budget: int = EVAL_LOGITS) -> int:
    """Lines evaluated at once, so their [rows, context, vocab] logits stay within budget."""
    return max(1, budget // (context * vocab_size))


def build_evaluate(
    data: np.ndarray, valid: np.ndarray, rows: int, mesh: Mesh | None = None
) -> Callable:
    """``evaluate(model)`` -> mean train and validation loss, and the first validation line's
    logits [T, V] (the prediction after the validation prompt).

    A corpus that fits in ``rows`` lines is one forward pass over training and validation
    lines together (half the code to compile). A larger one goes in batches of ``rows``
    whose losses are summed on the device: returning or holding logits for the whole corpus
    took 20 GB for 5,000 lines of 20,000 words. Validation lines equal to the training lines
    (a custom corpus without ``--valid``) are evaluated once. With a ``mesh`` each device
    takes its share of every batch's lines (replicated, every device computed all of them).
    """
    same = data.shape == valid.shape and np.array_equal(data, valid)
    lines = data if same else np.concatenate([data, valid])
    n_train = len(data)
    prompt_row = 0 if same else n_train
    if len(lines) <= rows:
        return _evaluate_whole(jnp.asarray(lines), n_train, prompt_row, same)
    return _evaluate_batched(lines, n_train, prompt_row, same, rows, mesh)


def _evaluate_whole(lines: jax.Array, n_train: int, prompt_row: int, same: bool) -> Callable:
    def evaluate(model) -> dict[str, jax.Array]:
        logits = model(lines[:, :-1])
        token_losses = optax.softmax_cross_entropy_with_integer_labels(logits, lines[:, 1:])
        train_loss = token_losses[:n_train].mean()
        valid_loss = train_loss if same else token_losses[n_train:].mean()
        return {
            "train_loss": train_loss,
            "valid_loss": valid_loss,
            "prompt_logits": logits[prompt_row],
        }

    return evaluate


def _evaluate_batched(
    lines: np.ndarray, n_train: int, prompt_row: int, same: bool, rows: int, mesh: Mesh | None
) -> Callable:
    n, width = lines.shape
    if mesh is not None:
        rows = -(-rows // mesh.devices.size) * mesh.devices.size  # whole shares per device
    n_batches = -(-n // rows)
    padded = np.zeros((n_batches * rows, width), lines.dtype)
    padded[:n] = lines
    index = np.arange(n_batches * rows)
    in_train = index < (n if same else n_train)
    in_valid = (index < n) if same else (index >= n_train) & (index < n)
    flags = np.stack([in_train, in_valid], -1).astype(np.float32)  # [rows total, 2]
    batches = jnp.asarray(padded.reshape(n_batches, rows, width))
    weights = jnp.asarray(flags.reshape(n_batches, rows, 2))
    prompt = jnp.asarray(lines[prompt_row : prompt_row + 1])
    counts = jnp.asarray([in_train.sum(), in_valid.sum()], jnp.float32) * (width - 1)

    def evaluate(model) -> dict[str, jax.Array]:
        def body(i, sums):
            batch = batches[i]
            if mesh is not None:
                batch = jax.lax.with_sharding_constraint(
                    batch, NamedSharding(mesh, PartitionSpec("data"))
                )
            logits = model(batch[:, :-1])
            token_losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:])
            return sums + token_losses.sum(-1) @ weights[i]

        sums = jax.lax.fori_loop(0, n_batches, body, jnp.zeros((2,), jnp.float32))
        loss = sums / counts
        return {
            "train_loss": loss[0],
            "valid_loss": loss[1],
            "prompt_logits": model(prompt[:, :-1])[0],
        }

    return evaluate


def _is_like(params) -> Callable[[Any], bool]:
    structure = jax.tree.structure(params)
    return lambda node: bool(jax.tree.structure(node) == structure)  # type: ignore[operator]


def flat_state(opt_state, params):
    """The optimizer state with every parameter-shaped subtree (Adam's moments) raveled."""
    like = _is_like(params)
    return jax.tree.map(lambda x: ravel_pytree(x)[0] if like(x) else x, opt_state, is_leaf=like)


def tree_state(flat_opt, opt_state, params):
    """Inverse of :func:`flat_state`: ``opt_state`` and ``params`` give the shapes back."""
    like = _is_like(params)
    unravel = ravel_pytree(params)[1]
    nodes, treedef = jax.tree.flatten(opt_state, is_leaf=like)
    leaves = jax.tree.leaves(flat_opt)
    return treedef.unflatten(
        [unravel(f) if like(t) else f for f, t in zip(leaves, nodes, strict=True)]
    )


def step_randomness(
    base_key: jax.Array, start: jax.Array, n: int, batch_size: int, n_rows: int
) -> tuple[jax.Array, jax.Array]:
    """Batch rows [n, batch] and dropout seeds [n] of steps ``start + 1 .. start + n``.

    Each step's numbers come from a key folded with its step number, so a resumed run draws
    what an uninterrupted one would. Drawn for a whole chunk at once: the same numbers as
    step by step (threefry is elementwise in the key), but XLA's CPU backend runs threefry
    as a rolled loop, and two of them in every step cost 0.1 ms of it.
    """

    def draw(step: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_batch, k_drop = jax.random.split(jax.random.fold_in(base_key, step))
        return jax.random.randint(k_batch, (batch_size,), 0, n_rows), dropout_seed(k_drop)

    return jax.vmap(draw)(start + 1 + jnp.arange(n))


def data_mesh(batch_size: int) -> Mesh | None:
    """Data parallel over the host devices (see ``training.runtime``) when the batch splits."""
    devices = jax.devices()
    if len(devices) < 2 or batch_size % len(devices):
        return None
    return Mesh(np.array(devices), ("data",))


def data_parallel(grad_fn: Callable, mesh: Mesh) -> Callable:
    """Each device takes its rows of the batch; one all-reduce then averages loss and gradient.

    Everything is reduced as one flat vector: left to the partitioner, the 28 leaves went
    into a tuple all-reduce that met the other device once per leaf, 0.44 ms of a 2.5 ms
    step; one vector of 10,661 floats meets once (about 30 us).
    """
    n = mesh.devices.size

    def shard(params, batch, key):
        first_row = jax.lax.axis_index("data") * batch.shape[0]
        # Varying copies: differentiating the replicated params would all-reduce per leaf.
        params = jax.lax.pcast(params, "data", to="varying")
        flat, unravel = ravel_pytree(grad_fn(params, batch, key, first_row))
        return unravel(jax.lax.psum(flat, "data") / n)

    replicated, split = PartitionSpec(), PartitionSpec("data")
    return jax.shard_map(
        shard, mesh=mesh, in_specs=(replicated, split, replicated), out_specs=replicated
    )


def placeholders(shapes: nnx.State, optimizer: optax.GradientTransformation, batch_size: int):
    """Zeros shaped, typed and placed like the real parameters and optimizer state, so a
    call on them compiles exactly what the real call will use."""
    opt_shapes = jax.eval_shape(optimizer.init, shapes)
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), (shapes, opt_shapes))
    return replicate(zeros, batch_size)


def replicate(tree, batch_size: int):
    """Place state on every device up front, so the second chunk call does not recompile."""
    mesh = data_mesh(batch_size)
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
