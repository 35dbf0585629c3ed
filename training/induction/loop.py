"""Several seeds of the induction task in one compiled loop, one run folder per seed.

Parameters and AdamW's moments are flat vectors stacked on a leading seed axis ``[S, P]``;
the step is ``vmap``-ed over it, so three seeds are one program, one compilation and one
initialisation, not three. At this size a step is not overhead-bound (measured, 2 loaded
cores: one seed 36-44 ms a step, three vmapped 124-158 ms, three by ``lax.map`` 118-190
ms), so the seeds save the compilations and set-up, not step time. Each seed draws its own
batches (``fold_in(key(seed), step)``, as a run of that seed alone would) and starts from
``init_params(model, seed)``'s numbers (one compiled init for all), so a seed trains alike
with or without the others. With two host devices each takes half of every seed's batch.

Each seed's run is written as ``interp-train`` writes a run (``run.json``, ``metrics.jsonl``
with train and validation loss, atomic steps), with the held-out loss on the repeated part
as ``repeat_loss`` and at each position as ``loss_by_position`` in each record (the held-out
set of ``training.induction.data.heldout``, all of it), and without optimizer state (no
``--resume``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, PartitionSpec

from training import checkpoint as ckpt
from training.induction.config import InductionConfig
from training.induction.data import heldout, repeated_mask, sample
from training.induction.loss import position_weights, weighted_cross_entropy
from training.model.gpt import init_model
from training.model.params import abstract_model, flat_params
from training.prepare import TrainError, check_run_name, prepare_run
from training.resume import open_run
from training.run_meta import external_metadata
from training.run_writer import write_errors
from training.steps import data_mesh, replicate

SOURCE = "interp-train --task induction"


@dataclass
class InductionSummary:
    """Where the runs went and how the last checkpoint scored, per seed."""

    runs: list[Path]
    steps: list[int]
    valid_loss: list[float]
    repeat_loss: list[float]
    timings: dict[str, float] = field(default_factory=dict)


def run_names(name: str, seeds: Sequence[int]) -> list[str]:
    """One run per seed: ``induction-s0``, ``induction-s1``, ..."""
    return [f"{name}-s{seed}" for seed in seeds]


def run_metadata(cfg: InductionConfig, seed: int, seeds: Sequence[int]) -> dict[str, Any]:
    """run.json: the model, the word vocabulary ``t0 ..``, and the task with its seed."""
    meta = external_metadata(cfg.model(), {"vocab": list(cfg.words())}, {"kind": SOURCE})
    meta["induction"] = {**cfg.to_dict(), "seed": seed, "seeds": list(seeds)}
    meta["prompt"], meta["corrupt"] = default_prompts(cfg)
    return meta


def default_prompts(cfg: InductionConfig) -> tuple[str, str]:
    """The app's opening prompt: the first held-out sequence with the longest segment (its
    ``context`` inputs, words ``t..``); and its corrupted twin for activation patching, the
    same with the segment's first copy shifted by one token id, so the repeat repeats
    nothing."""
    tokens, lengths, offsets = heldout(cfg)
    i = int(np.argmax(lengths))
    n, length, d = cfg.context + 1, int(lengths[i]), int(offsets[i])
    line = tokens[i, : cfg.context]
    corrupt = line.copy()
    first = slice(n - length - d, n - d)  # the segment's first copy (data module docstring)
    corrupt[first] = (corrupt[first] + 1) % cfg.vocab
    words = [" ".join(f"t{t}" for t in row) for row in (line, corrupt)]
    return words[0], words[1]


def seed_gradients(
    graphdef: nnx.GraphDef, unravel: Callable, cfg: InductionConfig, mesh: Mesh | None
) -> Callable:
    """(flat [S, P], batch [S, B, T+1], lengths [S, B]) -> (loss [S], gradient [S, P]): the
    loss weights the repeated part ``cfg.repeat_weight`` times (``training.induction.loss``);
    with a mesh each device takes its half of every seed's batch, and one all-reduce
    averages the halves."""

    def loss(flat: jax.Array, batch: jax.Array, lengths: jax.Array) -> jax.Array:
        logits = nnx.merge(graphdef, unravel(flat))(batch[:, :-1])
        weights = position_weights(lengths, cfg.context, cfg.repeat_weight)
        return weighted_cross_entropy(logits, batch[:, 1:], weights)

    grads = jax.vmap(jax.value_and_grad(loss))
    if mesh is None:
        return grads
    n = mesh.devices.size

    def shard(flat: jax.Array, batch: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        flat = jax.lax.pcast(flat, "data", to="varying")  # else one all-reduce per use
        value, grad = grads(flat, batch, lengths)
        return jax.lax.psum(value, "data") / n, jax.lax.psum(grad, "data") / n

    replicated, split = PartitionSpec(), PartitionSpec(None, "data")
    return jax.shard_map(
        shard, mesh=mesh, in_specs=(replicated, split, split), out_specs=(replicated, replicated)
    )


def evaluator(
    graphdef: nnx.GraphDef, unravel: Callable, tokens: np.ndarray, mask: np.ndarray
) -> Callable:
    """flat [P] -> held-out loss over every position, over the repeated part only, and at
    each position [T] (what a loss-by-position view over training draws)."""
    lines, weights = jnp.asarray(tokens), jnp.asarray(mask, jnp.float32)

    def evaluate(flat: jax.Array) -> dict[str, jax.Array]:
        logits = nnx.merge(graphdef, unravel(flat))(lines[:, :-1])
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, lines[:, 1:])
        repeat = (losses * weights).sum() / weights.sum()
        return {"valid_loss": losses.mean(), "repeat_loss": repeat, "by_position": losses.mean(0)}

    return evaluate


def build_chunk_fn(
    graphdef: nnx.GraphDef,
    unravel: Callable,
    optimizer: optax.GradientTransformation,
    cfg: InductionConfig,
    max_chunk: int,
    mesh: Mesh | None,
) -> Callable:
    """One jitted call trains every seed ``n`` steps (n dynamic, one compilation) and
    evaluates them: (flat, opt_state, keys, start, n) -> (flat, opt_state, losses [C, S],
    evaluations [S])."""
    tokens, lengths, _ = heldout(cfg)
    evaluate = jax.vmap(evaluator(graphdef, unravel, tokens, repeated_mask(lengths, cfg.context)))
    gradients = seed_gradients(graphdef, unravel, cfg, mesh)

    def draw(key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
        return sample(jax.random.fold_in(key, step), cfg, cfg.batch_size)[:2]

    @jax.jit
    def run_chunk(flat, opt_state, keys, start, n):
        steps = start + 1 + jnp.arange(max_chunk)
        # every step's batches at once ([C, S, B, T+1]): threefry runs as a loop on the CPU
        batches, lengths = jax.vmap(lambda s: jax.vmap(draw, (0, None))(keys, s))(steps)

        def body(i, carry):
            flat, opt_state, losses = carry
            loss, grads = gradients(flat, batches[i], lengths[i])
            updates, opt_state = jax.vmap(optimizer.update)(grads, opt_state, flat)
            return flat + updates, opt_state, losses.at[i].set(loss)

        losses = jnp.zeros((max_chunk, flat.shape[0]), jnp.float32)
        flat, opt_state, losses = jax.lax.fori_loop(0, n, body, (flat, opt_state, losses))
        return flat, opt_state, losses, evaluate(flat)

    return run_chunk


def _init(cfg: InductionConfig, seeds: Sequence[int]) -> tuple[Any, Callable, jax.Array]:
    """Graph definition, unravel and the stacked flat parameters [S, P] of every seed."""
    mc = cfg.model()
    graphdef, template = abstract_model(mc)
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), template)
    unravel = ravel_pytree(zeros)[1]  # the layout every seed's flat vector follows

    def init(seed: jax.Array) -> jax.Array:  # one compilation for every seed
        key = jax.random.key(seed)  # what nnx.Rngs(params=seed) makes of an int seed
        return ravel_pytree(nnx.state(init_model(mc, key), nnx.Param))[0]  # type: ignore[arg-type]

    flat = jax.jit(jax.vmap(init))(jnp.asarray(list(seeds), jnp.uint32))
    return graphdef, unravel, flat


def _open_runs(
    root: Path, names: list[str], metas: list[dict[str, Any]], overwrite: bool, out: TextIO
) -> list[Path]:
    """Every refusal for every run first (nothing written), then the folders with run.json."""
    paths = []
    for name, meta in zip(names, metas, strict=True):
        check_run_name(name)
        if not overwrite and (ckpt.run_dir(root, name) / ckpt.RUN_FILE).exists():
            raise TrainError(
                f"run {name!r} already exists in {root}; use --overwrite or another --run name"
            )
        paths.append(prepare_run(root, name, meta, resume=False, overwrite=overwrite))
    for name, meta in zip(names, metas, strict=True):
        open_run(root, name, meta, (None, None), resume=False, overwrite=overwrite, out=out)
    return paths


class _Writers:
    """Each seed's metrics record, then its step (as ``training.run_writer``), per chunk."""

    def __init__(self, paths: list[Path], unravel: Callable):
        self.paths, self.unravel = paths, unravel
        self.save_s = 0.0

    def record(self, step: int, first: int, chunk_out: tuple) -> dict[str, np.ndarray]:
        """Blocks until the chunk has finished; returns its evaluations [S] on the host."""
        flat, _, losses, evals = chunk_out
        t0 = time.perf_counter()
        flat, losses = np.asarray(flat), np.asarray(losses)[: max(step - first + 1, 0)]
        evals = {k: np.asarray(v) for k, v in evals.items()}
        for s, path in enumerate(self.paths):
            valid = float(evals["valid_loss"][s])
            record = {
                "step": step,
                "first_step": first,
                "train_loss": [round(float(x), 6) for x in losses[:, s]],
                "valid_loss": valid,
                "repeat_loss": float(evals["repeat_loss"][s]),
                "loss_by_position": [round(float(x), 6) for x in evals["by_position"][s]],
            }
            ckpt.append_metrics(path, record)
            arrays = flat_params(self.unravel(flat[s]))
            ckpt.save_step(
                path, step, arrays, {"step": step, "valid_loss": valid, "time": time.time()}
            )
        self.save_s += time.perf_counter() - t0
        return evals


def train_induction(
    root: str | Path,
    name: str,
    cfg: InductionConfig,
    seeds: Sequence[int],
    *,
    overwrite: bool = False,
    progress: bool = True,
    out: TextIO | None = None,
) -> InductionSummary:
    """Train ``seeds`` together, writing ``root/{name}-s{seed}`` for each."""
    t_entry = time.perf_counter()
    root, out = Path(root), out or sys.stderr
    if not seeds or len(set(seeds)) != len(seeds):
        raise TrainError(f"seeds must be distinct and at least one, got {list(seeds)}")
    names = run_names(name, seeds)
    metas = [run_metadata(cfg, seed, seeds) for seed in seeds]
    paths = _open_runs(root, names, metas, overwrite, out)
    with write_errors(paths[0]):
        graphdef, unravel, flat = _init(cfg, seeds)
        optimizer = optax.adamw(cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        schedule = cfg.schedule()
        mesh = data_mesh(cfg.batch_size)
        run_chunk = build_chunk_fn(
            graphdef, unravel, optimizer, cfg, int(np.diff(schedule).max()), mesh
        )
        keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
        state = replicate((flat, jax.vmap(optimizer.init)(flat), keys), cfg.batch_size)
        writers = _Writers(paths, unravel)
        timings = {"setup_s": time.perf_counter() - t_entry}
        evals = _run_chunks(run_chunk, state, schedule, writers, progress, out, timings)
        timings["save_s"] = writers.save_s
        timings["total_s"] = time.perf_counter() - t_entry
    return InductionSummary(
        runs=paths,
        steps=schedule,
        valid_loss=[float(x) for x in evals["valid_loss"]],
        repeat_loss=[float(x) for x in evals["repeat_loss"]],
        timings=timings,
    )


def _run_chunks(
    run_chunk: Callable,
    state: tuple[Any, Any, Any],
    schedule: list[int],
    writers: _Writers,
    progress: bool,
    out: TextIO,
    timings: dict[str, float],
) -> dict[str, np.ndarray]:
    """Step 0 evaluated and saved, then every chunk; a chunk is written while the next
    one trains (JAX dispatches asynchronously), steps in order."""
    from tqdm import tqdm

    flat, opt_state, keys = state
    t0 = time.perf_counter()
    chunk_out = run_chunk(flat, opt_state, keys, 0, 0)  # compiles; evaluation only
    evals = writers.record(0, 1, chunk_out)
    timings["compile_s"] = time.perf_counter() - t0
    bar = tqdm(total=schedule[-1], unit="step", disable=not progress, file=out)
    pending, start = None, 0
    t_steps = time.perf_counter()
    for step in schedule[1:]:
        chunk_out = run_chunk(flat, opt_state, keys, start, step - start)
        if pending is not None:
            evals = writers.record(*pending)
            bar.update(pending[0] - pending[1] + 1)
        flat, opt_state = chunk_out[0], chunk_out[1]
        pending, start = (step, start + 1, chunk_out), step
    if pending is not None:
        evals = writers.record(*pending)
        bar.update(pending[0] - pending[1] + 1)
    bar.close()
    timings["steps_s"] = time.perf_counter() - t_steps
    return evals
