"""A training run: refusals, the run folder and its metadata, and the loop over checkpoint
chunks that saves as it goes (the compiled steps themselves are in ``training.steps``)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import platform
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np
import optax

from training import checkpoint as ckpt
from training.config import TrainConfig
from training.corpus import Corpus, check_fits
from training.model.config import ModelConfig
from training.model.gpt import init_params
from training.model.params import (
    abstract_model,
    flat_params,
    flatten_tree,
    unflatten_params,
    unflatten_tree,
)
from training.schedule import checkpoint_steps
from training.steps import build_chunk_fn, eval_rows, placeholders, replicate
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
        _tidy(path)
        if not ckpt.list_steps(path):
            raise TrainError(f"run {name!r} has no complete step to resume from; use --overwrite")
    elif resume and not existing.exists():
        raise TrainError(f"nothing to resume: no run named {name!r} in {root}")
    _check_writable(root)
    return path, meta, tokenizer


def _tidy(path: Path) -> None:
    """Put back or remove what an interrupted save left, before steps are listed."""
    try:
        ckpt.clean_partial(path)
    except OSError as err:
        raise TrainError(f"cannot tidy run folder {path}: {err.strerror or err}") from None


def _whole_step(path: Path, name: str, mc: ModelConfig, opt_template) -> tuple[int, Any, Any]:
    """The newest step whose parameters and optimizer state both load: a truncated or
    missing latest step falls back to the one before (both keep optimizer state)."""
    problem = None
    for step in reversed(ckpt.list_steps(path)):
        try:
            opt_flat = ckpt.load_optimizer(path, step)
            if opt_flat is None:
                problem = problem or f"step {step} has no optimizer state"
                continue
            _, params = unflatten_params(mc, ckpt.load_params(path, step))
            return step, params, unflatten_tree(opt_template, opt_flat)
        except ValueError as err:  # CheckpointError, ParamsError, a shape that does not fit
            problem = problem or str(err)
    raise TrainError(
        f"run {name!r} has no step with both parameters and optimizer state to resume from "
        f"({problem}); use --overwrite"
    )


def _trim_metrics(path: Path, start: int, out) -> None:
    """Keep one record per step up to ``start`` (a kill can leave later or repeated ones);
    bad lines are dropped with a notice naming the file and the first bad line."""
    read = ckpt.read_metrics_checked(path, upto=start)
    if read.skipped:
        notice = read.notice(str(path / ckpt.METRICS_FILE))
        print(f"interp-train: warning: {notice}; they are dropped", file=out)
    ckpt.rewrite_metrics(path, ckpt.increasing(read.records))


def _open_run(
    root: Path,
    name: str,
    path: Path,
    meta: dict,
    tc: TrainConfig,
    params,
    opt_state,
    *,
    resume: bool,
    overwrite: bool,
    out,
) -> tuple[int | None, Any, Any]:
    """The step to resume from and its state (steps and metrics after it are dropped), or
    None and the fresh state for a new run folder."""
    if not (resume and (path / ckpt.RUN_FILE).exists()):
        if overwrite and path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        ckpt.write_json_atomic(path / ckpt.RUN_FILE, meta)
        return None, params, opt_state
    start, params, opt_state = _whole_step(
        path, name, ModelConfig.from_dict(meta["model"]), opt_state
    )
    later = [step for step in ckpt.list_steps(path) if step > start]
    if later:  # never silently: say which steps go and why
        print(
            f"interp-train: warning: resuming from step {start}; removing the later "
            f"step(s) {', '.join(map(str, later))}, whose parameters or optimizer state "
            "cannot be loaded",
            file=out,
        )
    for step in later:
        ckpt.remove_step(path, step)
    _trim_metrics(path, start, out)
    ckpt.write_json_atomic(
        path / ckpt.RUN_FILE, {**ckpt.read_run(root, name).meta, "train": tc.to_dict()}
    )
    return start, params, opt_state


@contextlib.contextmanager
def _write_errors(path: Path):
    """A failed write (a full disk, a folder made read-only) is one line for the user."""
    try:
        yield
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise ckpt.CheckpointError(
            f"cannot write run {path.name!r}: {err.strerror or err}{where}; "
            "the steps saved so far are kept (--resume continues from them)"
        ) from None


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
) -> TrainSummary:
    """Train a run into ``root/name``, saving the schedule's checkpoints as it goes."""
    t_entry = time.perf_counter()
    root, out = Path(root), out or sys.stderr
    path, meta, tokenizer = prepare_run(
        root, name, mc, tc, corpus, resume=resume, overwrite=overwrite
    )
    with _write_errors(path):
        return _train(
            root, name, path, meta, tokenizer, tc, corpus, resume, overwrite, progress, out, t_entry
        )


def _train(
    root: Path,
    name: str,
    path: Path,
    meta: dict,
    tokenizer: Tokenizer,
    tc: TrainConfig,
    corpus: Corpus,
    resume: bool,
    overwrite: bool,
    progress: bool,
    out,
    t_entry: float,
) -> TrainSummary:
    """The run itself, once every refusal has passed (``t_entry``: when ``train`` began)."""
    mc = ModelConfig.from_dict(meta["model"])
    t_start = time.perf_counter()
    optimizer = make_optimizer(tc)
    schedule = checkpoint_steps(tc.steps, tc.save_every, tc.log_spaced)

    data = encode_lines(tokenizer, corpus.train, mc.context)
    valid = encode_lines(tokenizer, corpus.valid, mc.context)
    graphdef, shapes = abstract_model(mc)
    gaps = np.diff(schedule)
    eval_batch = eval_rows(mc.context, mc.vocab_size)
    run_chunk = build_chunk_fn(
        graphdef, optimizer, data, valid, tc.batch_size, int(gaps.max()), eval_batch
    )
    base_key = jax.random.key(tc.seed)
    timings = {"save_s": 0.0}

    with ThreadPoolExecutor(max_workers=1) as pool:
        # XLA compiles the training loop on placeholders while the weights are initialised
        # (both compilations use both cores only part of the time).
        t0 = time.perf_counter()
        warm = pool.submit(
            run_chunk, *placeholders(shapes, optimizer, tc.batch_size), base_key, 0, 0
        )
        _, params = init_params(mc, tc.seed)  # same graph definition as the abstract model
        opt_state = jax.jit(optimizer.init)(params)
        timings["init_s"] = time.perf_counter() - t0
        resumed_at, params, opt_state = _open_run(
            root,
            name,
            path,
            meta,
            tc,
            params,
            opt_state,
            resume=resume,
            overwrite=overwrite,
            out=out,
        )
        params, opt_state = replicate((params, opt_state), tc.batch_size)
        warm.result()
        timings["compile_s"] = time.perf_counter() - t0
        timings["setup_s"] = time.perf_counter() - t_entry  # corpus to a ready, compiled loop

    window = ckpt.OptimizerWindow.of_run(path)

    def save(step: int, params, opt_state, valid_loss: float | None) -> None:
        t0 = time.perf_counter()
        sidecar = {"step": step, "valid_loss": valid_loss, "time": time.time()}
        ckpt.save_step(path, step, flat_params(params), sidecar, flatten_tree(opt_state))
        window.saved(step)
        timings["save_s"] += time.perf_counter() - t0

    start = resumed_at or 0
    t0 = time.perf_counter()
    params, opt_state, _, evals = run_chunk(params, opt_state, base_key, start, 0)  # compiled
    jax.block_until_ready(evals)
    timings["first_eval_s"] = time.perf_counter() - t0  # the whole corpus, before any step
    if resumed_at is None:  # a resumed run has step 0 and its record already
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
        top=top_predictions(np.asarray(evals["prompt_logits"])[prompt_end], tokenizer),
        prompt=prompt,
        timings=timings,
    )


def _progress(total: int, initial: int, enabled: bool, out) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", disable=not enabled, file=out, dynamic_ncols=True
    )
