"""The training loop: AdamW via Optax, the steps between two checkpoints in one compiled call."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import platform
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from training import checkpoint as ckpt
from training.config import ModelConfig, TrainConfig
from training.corpus import Corpus, check_fits
from training.loss import mean_cross_entropy
from training.model import dropout_seed, init_params
from training.params import (
    abstract_model,
    flat_params,
    flatten_tree,
    unflatten_params,
    unflatten_tree,
)
from training.schedule import checkpoint_steps
from training.tokenizer import Tokenizer


class TrainError(ValueError):
    """A refusal before anything is written; the CLI prints it as one line."""


def encode_lines(tokenizer: Tokenizer, lines: tuple[str, ...], context: int) -> np.ndarray:
    """[N, context + 1] token ids, padded: inputs are [:, :-1], next-token targets [:, 1:]."""
    out = np.full((len(lines), context + 1), tokenizer.padding_id, np.int32)
    for i, line in enumerate(lines):
        ids = tokenizer.encode(line)[: context + 1]
        out[i, : len(ids)] = ids
    return out


def make_optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    return optax.adamw(tc.lr, weight_decay=tc.weight_decay)


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
) -> Callable:
    """One jitted call runs ``n`` steps (n dynamic: one compilation serves every gap).

    Inside the loop the parameters and the optimizer's moments are single flat vectors, so
    AdamW is a few fused operations instead of three per parameter array (78 of them,
    0.15 ms of a step); the model reads its arrays as slices of the vector.
    """
    data = jnp.asarray(data)
    valid = jnp.asarray(valid)
    mesh = data_mesh(batch_size)

    @jax.jit
    def run_chunk(params, opt_state, base_key, start, n):
        rows, seeds = step_randomness(base_key, start, max_chunk, batch_size, data.shape[0])
        flat, unravel = ravel_pytree(params)
        grad_fn = jax.value_and_grad(
            lambda flat, *args: sequence_loss(graphdef, unravel(flat), *args)
        )
        if mesh is not None:
            grad_fn = data_parallel(grad_fn, mesh)

        def body(i, carry):
            flat, flat_opt, losses = carry
            loss, grads = grad_fn(flat, data[rows[i]], seeds[i])
            updates, flat_opt = optimizer.update(grads, flat_opt, flat)
            return optax.apply_updates(flat, updates), flat_opt, losses.at[i].set(loss)

        losses = jnp.zeros((max_chunk,), jnp.float32)
        carry = (flat, flat_state(opt_state, params), losses)
        flat, flat_opt, losses = jax.lax.fori_loop(0, n, body, carry)
        opt_state = tree_state(flat_opt, opt_state, params)
        params = unravel(flat)
        # Evaluation in the same compiled call (no extra compilations at step 0 or the end),
        # training and validation lines in one forward pass (half the code to compile).
        both = jnp.concatenate([data, valid])
        logits = nnx.merge(graphdef, params)(both[:, :-1])
        token_losses = optax.softmax_cross_entropy_with_integer_labels(logits, both[:, 1:])
        evals = {
            "train_loss": token_losses[: len(data)].mean(),
            "valid_loss": token_losses[len(data) :].mean(),
            "valid_logits": logits[len(data) :],
        }
        return params, opt_state, losses, evals

    return run_chunk


def _is_like(params) -> Callable[[Any], bool]:
    structure = jax.tree.structure(params)
    return lambda node: jax.tree.structure(node) == structure


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


def top_predictions(
    logits: np.ndarray, tokenizer: Tokenizer, k: int = 5
) -> list[tuple[str, float]]:
    z = np.asarray(logits, np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:k]
    return [(tokenizer.vocab[i], float(probs[i])) for i in order]


def validation_prompt(corpus: Corpus) -> str:
    """The first validation line without its last word: `i like spicy so i like` for fruits."""
    words = corpus.valid[0].split()
    return " ".join(words[:-1]) if len(words) > 1 else corpus.valid[0]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "safetensors"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


def run_metadata(mc: ModelConfig, tc: TrainConfig, tok: Tokenizer, corpus: Corpus) -> dict:
    return {
        "format": ckpt.FORMAT,
        "model": mc.to_dict(),
        "train": tc.to_dict(),
        "vocab": list(tok.vocab),
        "corpus": {
            "source": corpus.source,
            "sha256": corpus.fingerprint(),
            "train_lines": len(corpus.train),
            "valid_lines": len(corpus.valid),
        },
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _same_run(old: dict, new: dict) -> list[str]:
    """What differs between a stored run and a requested one (total steps may grow on resume)."""
    diffs = []
    if old.get("model") != new["model"]:
        diffs.append("model config")
    old_train = {k: v for k, v in old.get("train", {}).items() if k != "steps"}
    new_train = {k: v for k, v in new["train"].items() if k != "steps"}
    if old_train != new_train:
        diffs.append("training config")
    if (
        old.get("vocab") != new["vocab"]
        or old.get("corpus", {}).get("sha256") != new["corpus"]["sha256"]
    ):
        diffs.append("corpus")
    return diffs


@dataclass
class TrainSummary:
    run_path: Path
    steps: list[int]
    train_loss: float
    valid_loss: float
    top: list[tuple[str, float]]
    prompt: str
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise TrainError(f"cannot write to checkpoint root {root}: {err.strerror or err}") from None


def prepare_run(
    root: Path,
    name: str,
    mc: ModelConfig,
    tc: TrainConfig,
    corpus: Corpus,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[Path, dict, Tokenizer]:
    """Every refusal happens here, before anything is written."""
    try:
        ckpt.check_run_name(name)
    except ckpt.CheckpointError as err:
        raise TrainError(str(err)) from None
    check_fits(corpus, mc.context)
    tokenizer = Tokenizer.from_lines(corpus.train)
    mc = dataclasses.replace(mc, vocab_size=len(tokenizer))  # the corpus decides the vocabulary
    meta = run_metadata(mc, tc, tokenizer, corpus)
    if root.exists() and not root.is_dir():
        raise TrainError(f"cannot write to checkpoint root {root}: it is not a folder")
    path = ckpt.run_dir(root, name)
    existing = path / ckpt.RUN_FILE
    if existing.exists() and not overwrite:
        old = ckpt.read_run(root, name).meta
        diffs = _same_run(old, meta)
        if diffs:
            raise TrainError(
                f"run {name!r} already exists with a different {', '.join(diffs)}; "
                "use --overwrite to replace it or another --run name"
            )
        if not resume:
            raise TrainError(
                f"run {name!r} already exists; use --resume to continue it or --overwrite"
            )
        if not ckpt.list_steps(path):
            raise TrainError(f"run {name!r} has no complete step to resume from; use --overwrite")
    elif resume and not existing.exists():
        raise TrainError(f"nothing to resume: no run named {name!r} in {root}")
    _check_writable(root)
    return path, meta, tokenizer


def train(
    root: str | Path,
    name: str,
    mc: ModelConfig,
    tc: TrainConfig,
    corpus: Corpus,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    out=sys.stderr,
) -> TrainSummary:
    """Train a run into ``root/name``, saving the schedule's checkpoints as it goes."""
    root = Path(root)
    path, meta, tokenizer = prepare_run(
        root, name, mc, tc, corpus, resume=resume, overwrite=overwrite
    )
    mc = ModelConfig.from_dict(meta["model"])
    t_start = time.perf_counter()
    optimizer = make_optimizer(tc)
    schedule = checkpoint_steps(tc.steps, tc.save_every, tc.log_spaced)

    data = encode_lines(tokenizer, corpus.train, mc.context)
    valid = encode_lines(tokenizer, corpus.valid, mc.context)
    graphdef, shapes = abstract_model(mc)
    gaps = np.diff(schedule)
    run_chunk = build_chunk_fn(graphdef, optimizer, data, valid, tc.batch_size, int(gaps.max()))
    base_key = jax.random.key(tc.seed)
    timings = {"save_s": 0.0}

    with ThreadPoolExecutor(max_workers=1) as pool:
        # XLA compiles the training loop on placeholders while the weights are initialised
        # (both compilations use both cores only part of the time).
        t0 = time.perf_counter()
        warm = pool.submit(
            run_chunk, *placeholders(shapes, optimizer, tc.batch_size), base_key, 0, 0
        )
        graphdef, params = init_params(mc, tc.seed)
        opt_state = jax.jit(optimizer.init)(params)
        timings["init_s"] = time.perf_counter() - t0
        if resume and (path / ckpt.RUN_FILE).exists():
            done = ckpt.list_steps(path)
            start = done[-1]
            opt_flat = ckpt.load_optimizer(path, start)
            if opt_flat is None:
                raise TrainError(
                    f"step {start} of run {name!r} has no optimizer state to resume from"
                )
            _, params = unflatten_params(mc, ckpt.load_params(path, start))
            opt_state = unflatten_tree(opt_state, opt_flat)
            ckpt.rewrite_metrics(path, ckpt.read_metrics(path, upto=start))
            ckpt.clean_partial(path)
            ckpt.write_json_atomic(
                path / ckpt.RUN_FILE, {**ckpt.read_run(root, name).meta, "train": tc.to_dict()}
            )
        else:
            if overwrite and path.exists():
                shutil.rmtree(path)
            path.mkdir(parents=True, exist_ok=True)
            ckpt.write_json_atomic(path / ckpt.RUN_FILE, meta)
            start = 0
        params, opt_state = replicate((params, opt_state), tc.batch_size)
        warm.result()
        timings["compile_s"] = time.perf_counter() - t0

    def save(step: int, params, opt_state, valid_loss: float | None) -> None:
        t0 = time.perf_counter()
        sidecar = {"step": step, "valid_loss": valid_loss, "time": time.time()}
        ckpt.save_step(path, step, flat_params(params), sidecar, flatten_tree(opt_state))
        ckpt.drop_optimizer(path, step)
        timings["save_s"] += time.perf_counter() - t0

    params, opt_state, _, evals = run_chunk(params, opt_state, base_key, start, 0)  # compiled
    if start == 0:
        v0 = float(evals["valid_loss"])
        ckpt.append_metrics(path, {"step": 0, "first_step": 1, "train_loss": [], "valid_loss": v0})
        save(0, params, opt_state, v0)

    todo = [s for s in schedule if s > start]
    bar = _progress(total=tc.steps, initial=start, enabled=progress, out=out)

    def record(first: int, step: int, chunk_out) -> None:
        """Metrics and checkpoint of one finished chunk (blocks until it has finished)."""
        params, opt_state, losses, evals = chunk_out
        losses = np.asarray(losses)[: step - first + 1]  # host slice: a device one compiles per n
        v_loss = float(evals["valid_loss"])
        metrics = {
            "step": step,
            "first_step": first,
            "train_loss": [round(float(x), 6) for x in losses],
            "valid_loss": v_loss,
        }
        ckpt.append_metrics(path, metrics)
        save(step, params, opt_state, v_loss)
        bar.update(len(losses))
        bar.set_postfix(loss=f"{float(losses[-1]):.3f}", valid=f"{v_loss:.3f}")

    # JAX dispatches asynchronously: the next chunk starts before the previous one is
    # written to disk, so saving overlaps training. Steps are still written in order.
    pending = None
    prev = start
    t_steps = time.perf_counter()
    for step in todo:
        chunk_out = run_chunk(params, opt_state, base_key, prev, step - prev)
        if pending is not None:
            record(*pending)
        params, opt_state, evals = chunk_out[0], chunk_out[1], chunk_out[3]
        pending = (prev + 1, step, chunk_out)
        prev = step
    if pending is not None:
        record(*pending)
    bar.close()
    timings["steps_s"] = time.perf_counter() - t_steps
    timings["total_s"] = time.perf_counter() - t_start

    prompt = validation_prompt(corpus)
    # Causal model: the first validation line's logits at the prompt's last token are the
    # prediction after the prompt, already computed in the last chunk call.
    prompt_end = min(len(tokenizer.encode(prompt)), mc.context) - 1
    return TrainSummary(
        run_path=path,
        steps=ckpt.list_steps(path),
        train_loss=float(evals["train_loss"]),
        valid_loss=float(evals["valid_loss"]),
        top=top_predictions(np.asarray(evals["valid_logits"])[0, prompt_end], tokenizer),
        prompt=prompt,
        timings=timings,
    )


def _progress(total: int, initial: int, enabled: bool, out) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", disable=not enabled, file=out, dynamic_ncols=True
    )
