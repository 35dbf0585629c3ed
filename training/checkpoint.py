"""The run folder: metadata, a metrics log and a series of atomically written steps.

::

    <root>/<run>/run.json              configs, vocabulary, corpus fingerprint, versions
    <root>/<run>/metrics.jsonl         one line per training chunk (train loss per step)
    <root>/<run>/steps/step-000000100/ params.safetensors, step.json [, opt.safetensors]

A step folder is built under a temporary name and renamed into place, so a step is listed
complete or not at all. Listing reads folder names and sidecars only; parameters are
safetensors (data, never code).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from training.config import ModelConfig, TrainConfig
from training.tokenizer import Tokenizer

FORMAT = 1
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
STEPS_DIR = "steps"
PARAMS_FILE = "params.safetensors"
OPT_FILE = "opt.safetensors"
SIDECAR = "step.json"
_STEP_DIR = re.compile(r"^step-(\d{9})$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class CheckpointError(ValueError):
    """A run or step that cannot be read or written; the message is for the user."""


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: never a path, never ``..``."""
    if not isinstance(name, str) or not _RUN_NAME.match(name) or ".." in name:
        raise CheckpointError(
            f"invalid run name {name!r}: use letters, digits, '.', '_' or '-' (no paths)"
        )
    return name


def run_dir(root: str | Path, name: str) -> Path:
    """The run's folder, guaranteed to lie inside ``root``."""
    check_run_name(name)
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise CheckpointError(f"run {name!r} resolves outside the checkpoint root")
    return path


def step_dir(run: Path, step: int) -> Path:
    return run / STEPS_DIR / f"step-{step:09d}"


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    model: ModelConfig
    train: TrainConfig
    tokenizer: Tokenizer
    meta: dict[str, Any]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_run(root: str | Path, name: str) -> RunInfo:
    path = run_dir(root, name)
    meta_path = path / RUN_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"no run named {name!r} in {Path(root)}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return RunInfo(
            name=name,
            path=path,
            model=ModelConfig.from_dict(meta["model"]),
            train=TrainConfig.from_dict(meta["train"]),
            tokenizer=Tokenizer(tuple(meta["vocab"])),
            meta=meta,
        )
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"run {name!r} has an unreadable {RUN_FILE}: {err}") from None


def list_runs(root: str | Path) -> list[str]:
    """The runs a lookup finds, by the lookup's own rule (``run_dir``): a plain name, inside
    the root (a symlink that leads out is ignored), with a run.json. A run folder this
    process may not open is skipped here; the app names it as a problem."""
    base = Path(root)
    if not base.is_dir():
        return []
    names = []
    for entry in os.scandir(base):
        try:
            path = run_dir(base, entry.name)
            if path.is_dir() and (path / RUN_FILE).is_file():
                names.append(entry.name)
        except (CheckpointError, OSError):
            continue
    return sorted(names)


def list_steps(run: Path) -> list[int]:
    """Complete steps, from folder names alone (a step folder only exists once complete)."""
    steps_path = run / STEPS_DIR
    if not steps_path.is_dir():
        return []
    steps = []
    for entry in os.scandir(steps_path):
        m = _STEP_DIR.match(entry.name)
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def read_sidecar(run: Path, step: int) -> dict[str, Any]:
    try:
        return json.loads((step_dir(run, step) / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"step {step} has an unreadable {SIDECAR}: {err}") from None


def load_params(run: Path, step: int) -> dict[str, np.ndarray]:
    """One step's parameters as named arrays; needs no optimizer state and no model objects."""
    path = step_dir(run, step) / PARAMS_FILE
    if not path.is_file():
        raise CheckpointError(f"step {step} of run {run.name!r} does not exist")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"step {step} of run {run.name!r} is corrupt: {err}") from None


def load_optimizer(run: Path, step: int) -> dict[str, np.ndarray] | None:
    path = step_dir(run, step) / OPT_FILE
    return load_file(str(path)) if path.is_file() else None


def save_step(
    run: Path,
    step: int,
    params: Mapping[str, np.ndarray],
    sidecar: Mapping[str, Any],
    optimizer: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a step under a temporary name, then rename it into place in one atomic move."""
    steps_path = run / STEPS_DIR
    steps_path.mkdir(parents=True, exist_ok=True)
    final = step_dir(run, step)
    tmp = Path(tempfile.mkdtemp(dir=steps_path, prefix=f".tmp-{step:09d}-"))
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in params.items()}, str(tmp / PARAMS_FILE))
        if optimizer is not None:
            save_file(
                {k: np.ascontiguousarray(v) for k, v in optimizer.items()}, str(tmp / OPT_FILE)
            )
        (tmp / SIDECAR).write_text(json.dumps(dict(sidecar), sort_keys=True), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(steps_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def drop_optimizer(run: Path, keep_step: int) -> None:
    """Optimizer state is only needed to resume: keep it for the latest step alone."""
    for step in list_steps(run):
        if step != keep_step:
            (step_dir(run, step) / OPT_FILE).unlink(missing_ok=True)


def clean_partial(run: Path) -> None:
    """Remove leftovers of a save that was interrupted (never listed as steps)."""
    steps_path = run / STEPS_DIR
    if steps_path.is_dir():
        for entry in steps_path.iterdir():
            if entry.name.startswith(".tmp-"):
                shutil.rmtree(entry, ignore_errors=True)


def append_metrics(run: Path, record: Mapping[str, Any]) -> None:
    with open(run / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(dict(record)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_metrics(run: Path, upto: int | None = None) -> list[dict[str, Any]]:
    """Chunk records in order; a torn last line (killed mid-write) is skipped."""
    path = run / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if upto is None or rec.get("step", 0) <= upto:
            records.append(rec)
    return records


def rewrite_metrics(run: Path, records: list[dict[str, Any]]) -> None:
    path = run / METRICS_FILE
    fd, tmp = tempfile.mkstemp(dir=run, prefix=".metrics.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(tmp, path)


def loss_history(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train steps, train loss, checkpoint steps, validation loss) for the loss curve."""
    complete = set(list_steps(run))
    last = max(complete) if complete else -1
    t_steps, t_loss, v_steps, v_loss = [], [], [], []
    for rec in read_metrics(run, upto=last):
        first = rec.get("first_step", rec["step"])
        losses = rec.get("train_loss", [])
        t_steps.extend(range(first, first + len(losses)))
        t_loss.extend(losses)
        if rec.get("valid_loss") is not None:
            v_steps.append(rec["step"])
            v_loss.append(rec["valid_loss"])
    return (np.asarray(t_steps), np.asarray(t_loss), np.asarray(v_steps), np.asarray(v_loss))
