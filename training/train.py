"""A training run: from a corpus to a run folder of checkpoints, saved as training goes.

``train`` is the whole of it: ``training.prepare`` refuses what cannot run (before anything
is written), ``training.resume`` opens the run folder (new, or from its newest whole
step), ``training.steps`` compiles the steps between two checkpoints into one call, and
``training.run_writer`` saves each checkpoint while the next chunk trains.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np
import optax

from training import checkpoint as ckpt
from training import distributed
from training.config import TrainConfig
from training.corpus import Corpus
from training.distributed import Cluster
from training.model.config import ModelConfig
from training.model.gpt import init_params
from training.model.params import abstract_model
from training.prepare import (
    TrainError,
    check_run_name,
    describe_run,
    prepare_run,
    run_metadata,
)
from training.resume import open_run
from training.run_writer import RunWriter, write_errors
from training.schedule import checkpoint_steps
from training.steps import build_chunk_fn, eval_rows, placeholders, replicate
from training.tokenizer import Tokenizer

__all__ = [
    "TrainError",
    "TrainSummary",
    "encode_lines",
    "make_optimizer",
    "prepare_run",
    "run_metadata",
    "top_predictions",
    "train",
    "validation_prompt",
]


@dataclass
class TrainSummary:
    run_path: Path
    steps: list[int]
    train_loss: float
    valid_loss: float
    top: list[tuple[str, float]]
    prompt: str
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def encode_lines(tokenizer: Tokenizer, lines: tuple[str, ...], context: int) -> np.ndarray:
    """[N, context + 1] token ids, padded: inputs are [:, :-1], next-token targets [:, 1:]."""
    out = np.full((len(lines), context + 1), tokenizer.padding_id, np.int32)
    for i, line in enumerate(lines):
        ids = tokenizer.encode(line)[: context + 1]
        out[i, : len(ids)] = ids
    return out


def make_optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    return optax.adamw(tc.lr, weight_decay=tc.weight_decay)


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
    out: TextIO | None = None,
    cluster: Cluster = distributed.SINGLE,
) -> TrainSummary:
    """Train a run into ``root/name``, saving the schedule's checkpoints as it goes.

    With a ``cluster`` of several processes (joined by ``distributed.initialize``) every
    process trains its share of each batch and process 0 alone writes the run."""
    t_entry = time.perf_counter()
    root, out = Path(root), out or sys.stderr
    meta, tokenizer, path = _refuse_then_prepare(
        root, name, mc, tc, corpus, cluster, resume=resume, overwrite=overwrite
    )
    with write_errors(path):
        t_start = time.perf_counter()
        mc = ModelConfig.from_dict(meta["model"])  # with the corpus's vocabulary size
        optimizer = make_optimizer(tc)
        schedule = checkpoint_steps(tc.steps, tc.save_every, tc.log_spaced)
        run_chunk, shapes = _build_run_chunk(mc, tc, corpus, tokenizer, optimizer, schedule)

        def open_folder(fresh: tuple[Any, Any]) -> tuple[int | None, tuple[Any, Any]]:
            opened = distributed.on_writer(
                cluster,
                lambda: open_run(
                    root, name, meta, fresh, resume=resume, overwrite=overwrite, out=out
                ),
                "open the run folder",
            )
            return distributed.share_start(cluster, opened, fresh)

        timings: dict[str, float] = {}
        resumed_at, state = _compile_and_init(
            run_chunk, shapes, optimizer, mc, tc, open_folder, timings, cluster.multi
        )
        timings["setup_s"] = time.perf_counter() - t_entry  # corpus to a ready, compiled loop
        writer = RunWriter(path) if cluster.writer else None
        progress = progress and cluster.writer
        evals = _run_chunks(
            run_chunk, tc, schedule, resumed_at, state, writer, progress, out, timings
        )
        timings["save_s"] = writer.save_s if writer else 0.0
        timings["total_s"] = time.perf_counter() - t_start
        return _summary(path, evals, corpus, tokenizer, mc.context, timings)


def _refuse_then_prepare(
    root: Path,
    name: str,
    mc: ModelConfig,
    tc: TrainConfig,
    corpus: Corpus,
    cluster: Cluster,
    *,
    resume: bool,
    overwrite: bool,
) -> tuple[dict, Tokenizer, Path]:
    """The run's metadata, tokenizer and folder, every refusal raised first: nothing is
    written until the run name, corpus, cluster and folder have all been accepted."""
    check_run_name(name)
    meta, tokenizer = describe_run(mc, tc, corpus)
    distributed.check_same_run(cluster, meta)
    if cluster.multi and tc.batch_size % jax.device_count():
        raise TrainError(
            f"--batch {tc.batch_size} does not split evenly over the cluster's "
            f"{jax.device_count()} devices"
        )
    opened = distributed.on_writer(
        cluster,
        lambda: prepare_run(root, name, meta, resume=resume, overwrite=overwrite),
        "open the run",
    )
    return meta, tokenizer, opened or ckpt.run_dir(root, name)


def _build_run_chunk(
    mc: ModelConfig,
    tc: TrainConfig,
    corpus: Corpus,
    tokenizer: Tokenizer,
    optimizer: optax.GradientTransformation,
    schedule: list[int],
) -> tuple[Callable, Any]:
    """The chunk call (``training.steps``) over the encoded corpus, and the model's
    abstract shapes: one call sized for the schedule's longest gap between checkpoints."""
    data = encode_lines(tokenizer, corpus.train, mc.context)
    valid = encode_lines(tokenizer, corpus.valid, mc.context)
    graphdef, shapes = abstract_model(mc)
    max_chunk = int(np.diff(schedule).max())
    eval_batch = eval_rows(mc.context, mc.vocab_size)
    run_chunk = build_chunk_fn(
        graphdef, optimizer, data, valid, tc.batch_size, max_chunk, eval_batch
    )
    return run_chunk, shapes


def _compile_and_init(
    run_chunk: Callable,
    shapes: Any,
    optimizer: optax.GradientTransformation,
    mc: ModelConfig,
    tc: TrainConfig,
    open_folder: Callable[[tuple[Any, Any]], tuple[int | None, tuple[Any, Any]]],
    timings: dict[str, float],
    multi: bool = False,
) -> tuple[int | None, tuple[Any, Any]]:
    """The step resumed from (None: a new run) and the state placed on the devices, with
    the chunk call compiled: XLA compiles it on placeholders while the weights are
    initialised (both compilations use both cores only part of the time). With several
    processes the warm-up call has finished before the run is opened: processes must meet
    in their collectives in the same order, and opening one broadcasts."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        t0 = time.perf_counter()
        base_key = jax.random.key(tc.seed)
        fake = placeholders(shapes, optimizer, tc.batch_size)
        warm = pool.submit(run_chunk, *fake, base_key, 0, 0)
        _, params = init_params(mc, tc.seed)  # same graph definition as the abstract model
        opt_state = jax.jit(optimizer.init)(params)
        timings["init_s"] = time.perf_counter() - t0
        if multi:
            warm.result()
        resumed_at, state = open_folder((params, opt_state))
        state = replicate(state, tc.batch_size)
        warm.result()
        timings["compile_s"] = time.perf_counter() - t0
    return resumed_at, state


def _run_chunks(
    run_chunk: Callable,
    tc: TrainConfig,
    schedule: list[int],
    resumed_at: int | None,
    state: tuple[Any, Any],
    writer: RunWriter | None,
    progress: bool,
    out: TextIO,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Train from ``resumed_at`` (step 0 of a new run is evaluated and saved first) to the
    end of the schedule, writing each checkpoint (no ``writer``: another process writes);
    the last evaluation."""
    start = resumed_at or 0
    base_key = jax.random.key(tc.seed)
    t0 = time.perf_counter()
    params, opt_state, _, evals = run_chunk(*state, base_key, start, 0)  # evaluation only
    jax.block_until_ready(evals)
    timings["first_eval_s"] = time.perf_counter() - t0  # the whole corpus, before any step
    if resumed_at is None and writer:  # a resumed run has step 0 and its record already
        writer.record(0, 1, [], float(evals["valid_loss"]), params, opt_state)
    bar = _progress(total=tc.steps, initial=start, enabled=progress, out=out)

    def record(first: int, step: int, chunk_out: tuple) -> None:
        """Metrics and checkpoint of one finished chunk (blocks until it has finished)."""
        if writer is None:
            return
        params, opt_state, losses, evals = chunk_out
        losses = np.asarray(losses)[: step - first + 1]  # host slice: a device one compiles per n
        valid_loss = float(evals["valid_loss"])
        writer.record(step, first, losses, valid_loss, params, opt_state)
        bar.update(len(losses))
        bar.set_postfix(loss=f"{float(losses[-1]):.3f}", valid=f"{valid_loss:.3f}")

    # JAX dispatches asynchronously: the next chunk starts before the previous one is
    # written to disk, so saving overlaps training. Steps are still written in order.
    pending = None
    t_steps = time.perf_counter()
    for step in (s for s in schedule if s > start):
        chunk_out = run_chunk(params, opt_state, base_key, start, step - start)
        if pending is not None:
            record(*pending)
        params, opt_state, evals = chunk_out[0], chunk_out[1], chunk_out[3]
        pending = (start + 1, step, chunk_out)
        start = step
    if pending is not None:
        record(*pending)
    bar.close()
    timings["steps_s"] = time.perf_counter() - t_steps
    return evals


def _summary(
    path: Path,
    evals: dict[str, Any],
    corpus: Corpus,
    tokenizer: Tokenizer,
    context: int,
    timings: dict[str, float],
) -> TrainSummary:
    prompt = validation_prompt(corpus)
    # Causal model: the first validation line's logits at the prompt's last token are the
    # prediction after the prompt, already computed in the last chunk call.
    prompt_end = min(len(tokenizer.encode(prompt)), context) - 1
    return TrainSummary(
        run_path=path,
        steps=ckpt.list_steps(path),
        train_loss=float(evals["train_loss"]),
        valid_loss=float(evals["valid_loss"]),
        top=top_predictions(np.asarray(evals["prompt_logits"])[prompt_end], tokenizer),
        prompt=prompt,
        timings=timings,
    )


def _progress(total: int, initial: int, enabled: bool, out: TextIO) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", disable=not enabled, file=out, dynamic_ncols=True
    )
