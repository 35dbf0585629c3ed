"""The run folder: metadata, a metrics log and a series of atomically written steps.

::

    <root>/<run>/run.json              configs, vocabulary, corpus fingerprint, versions
    <root>/<run>/metrics.jsonl         one line per training chunk (train loss per step)
    <root>/<run>/steps/step-000000100/ params.safetensors, step.json [, opt.safetensors]

A step folder is built under a temporary name and renamed into place, so a step is listed
complete or not at all. Listing reads folder names and sidecars only; parameters are
safetensors (data, never code). The last two saved steps keep their optimizer state, so a
run whose latest step is damaged still resumes from the one before.

Files are written by ``training.atomic`` (whole or not at all, with the umask's mode); the
metrics log is ``training.metrics_log`` and the safetensors files ``training.tensor_file``,
whose names this module re-exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from training.atomic import (
    fsync_dir,
    new_tmp_dir,
    tmp_name,
    write_json_atomic,
    write_new,
    write_tensors,
)
from training.config import TrainConfig
from training.hf_tokenizer import load_tokenizer
from training.metrics_log import (
    METRICS_FILE,
    MetricsRead,
    append_metrics,
    increasing,
    read_metrics,
    read_metrics_checked,
    rewrite_metrics,
)
from training.model.config import ModelConfig
from training.tensor_file import (
    ALIGN,
    FLOAT_DTYPES,
    LAZY_BYTES,
    CheckpointError,
    read_tensors,
    write_params,
)
from training.tokenizer import TextTokenizer

__all__ = [  # the run folder's format; the metrics log, atomic writes, tensor files re-exported
    "ALIGN",
    "FORMAT",
    "FLOAT_DTYPES",
    "KEEP_OPTIMIZER",
    "LAZY_BYTES",
    "METRICS_FILE",
    "OPT_FILE",
    "PARAMS_FILE",
    "RUN_FILE",
    "SIDECAR",
    "STEPS_DIR",
    "CheckpointError",
    "MetricsRead",
    "OptimizerWindow",
    "RunInfo",
    "append_metrics",
    "check_run_name",
    "clean_partial",
    "drop_optimizer",
    "has_optimizer",
    "increasing",
    "list_runs",
    "list_steps",
    "load_optimizer",
    "load_params",
    "loss_history",
    "read_metrics",
    "read_metrics_checked",
    "read_run",
    "read_tensors",
    "remove_step",
    "rewrite_metrics",
    "run_dir",
    "save_step",
    "step_dir",
    "write_json_atomic",
    "write_params",
    "write_tensors",
]

FORMAT = 1
RUN_FILE = "run.json"
STEPS_DIR = "steps"
PARAMS_FILE = "params.safetensors"
OPT_FILE = "opt.safetensors"
SIDECAR = "step.json"
KEEP_OPTIMIZER = 2  # steps that keep their optimizer state: the latest and the one before
_STEP_DIR = re.compile(r"^step-(\d{9})$")
_ASIDE_DIR = re.compile(r"^\.old-(\d{9})-")  # a step being replaced, moved out of the way
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
    """A run's ``run.json``, read. ``train`` is None for a run that ``interp-train`` did not
    make (``training.run_meta``: an import, a user's own loop)."""

    name: str
    path: Path
    model: ModelConfig
    train: TrainConfig | None
    tokenizer: TextTokenizer
    meta: dict[str, Any]


def read_run(root: str | Path, name: str) -> RunInfo:
    path = run_dir(root, name)
    meta_path = path / RUN_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"no run named {name!r} in {Path(root)}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model = ModelConfig.from_dict(meta["model"])
        return RunInfo(
            name=name,
            path=path,
            model=model,
            train=None if meta["train"] is None else TrainConfig.from_dict(meta["train"]),
            tokenizer=load_tokenizer(meta, path, model.vocab_size),
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
            with open(path / RUN_FILE, "rb"):  # readable by this process, not only present
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


def load_params(run: Path, step: int, lazy_bytes: int | None = None) -> dict[str, np.ndarray]:
    """One step's parameters as named read-only arrays in their stored dtype (float16,
    bfloat16, float32 or float64); needs no optimizer state and no model objects. A file of
    ``lazy_bytes`` (default :data:`LAZY_BYTES`) or more is memory-mapped (see
    :func:`read_tensors`)."""
    lazy_bytes = LAZY_BYTES if lazy_bytes is None else lazy_bytes
    path = step_dir(run, step) / PARAMS_FILE
    where = f"step {step} of run {run.name!r}"
    try:
        if not path.is_file():
            raise CheckpointError(f"{where} does not exist")
        return read_tensors(path, lazy_bytes, where)
    except CheckpointError:
        raise
    except OSError as err:  # another user's owner-only step: unreadable, not corrupt
        raise CheckpointError(f"{where} cannot be read: {err.strerror}") from None


def has_optimizer(run: Path, step: int) -> bool:
    return (step_dir(run, step) / OPT_FILE).is_file()


def load_optimizer(run: Path, step: int) -> dict[str, np.ndarray] | None:
    """The step's optimizer state, None if it has none; a damaged file is a CheckpointError."""
    path = step_dir(run, step) / OPT_FILE
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(
            f"step {step} of run {run.name!r} has a corrupt {OPT_FILE}: {err}"
        ) from None


def save_step(
    run: Path,
    step: int,
    params: Mapping[str, np.ndarray],
    sidecar: Mapping[str, Any],
    optimizer: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a step under a temporary name, then rename it into place in one atomic move.

    A step that already exists is first renamed aside and deleted only once the new one is
    in place: put back if the save fails, and by :func:`clean_partial` after a kill.
    """
    steps_path = run / STEPS_DIR
    steps_path.mkdir(parents=True, exist_ok=True)
    final = step_dir(run, step)
    tmp = new_tmp_dir(steps_path, f".tmp-{step:09d}-")
    aside = None
    try:
        write_params(tmp / PARAMS_FILE, params)
        if optimizer is not None:
            write_tensors(tmp / OPT_FILE, optimizer)
        write_new(tmp / SIDECAR, json.dumps(dict(sidecar), sort_keys=True).encode())
        if final.exists():
            aside = tmp_name(steps_path, f".old-{step:09d}-")
            os.rename(final, aside)
        os.rename(tmp, final)
        fsync_dir(steps_path)
    except BaseException:
        if aside is not None and not final.exists():
            os.rename(aside, final)
            aside = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if aside is not None and final.exists():  # never delete a step not put back
            shutil.rmtree(aside, ignore_errors=True)
    return final


def remove_step(run: Path, step: int) -> None:
    """Rename the step out of the listing first: a kill while deleting never leaves a listed
    step with missing files."""
    steps_path = run / STEPS_DIR
    doomed = tmp_name(steps_path, f".tmp-{step:09d}-removed-")
    os.rename(step_dir(run, step), doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def drop_optimizer(run: Path, step: int) -> None:
    """Delete one step's optimizer state (the step that left the resume window)."""
    (step_dir(run, step) / OPT_FILE).unlink(missing_ok=True)


class OptimizerWindow:
    """The steps that hold optimizer state, newest last: saving a step drops the state of
    the step that falls out of the window, one file, without scanning the run (a scan of
    every step on every save made saving quadratic: 33 ms a save at 1,501 steps)."""

    def __init__(self, run: Path, steps: Iterable[int] = (), keep: int = KEEP_OPTIMIZER):
        self.run = run
        self.keep = keep
        self.steps: deque[int] = deque(steps)

    @classmethod
    def of_run(cls, run: Path, keep: int = KEEP_OPTIMIZER) -> OptimizerWindow:
        """The window of an existing run: its last ``keep`` steps that have optimizer state."""
        return cls(run, [s for s in list_steps(run)[-keep:] if has_optimizer(run, s)], keep)

    def saved(self, step: int) -> None:
        """Record a step just saved with optimizer state; drop the oldest beyond ``keep``."""
        self.steps.append(step)
        while len(self.steps) > self.keep:
            drop_optimizer(self.run, self.steps.popleft())


def clean_partial(run: Path) -> None:
    """Tidy what an interrupted save left: unfinished step folders and ``.*.tmp`` files are
    removed; a step that was renamed aside to be replaced is put back if its replacement
    never arrived."""
    steps_path = run / STEPS_DIR
    if steps_path.is_dir():
        for entry in sorted(steps_path.iterdir()):
            aside = _ASIDE_DIR.match(entry.name)
            if aside and not step_dir(run, int(aside.group(1))).exists():
                os.rename(entry, step_dir(run, int(aside.group(1))))
            elif aside or entry.name.startswith(".tmp-"):
                shutil.rmtree(entry, ignore_errors=True)
    if run.is_dir():
        for entry in run.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                entry.unlink(missing_ok=True)


def loss_history(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train steps, train loss, checkpoint steps, validation loss) for the loss curve."""
    complete = set(list_steps(run))
    last = max(complete) if complete else -1
    t_steps: list[int] = []
    t_loss: list[float] = []
    v_steps: list[int] = []
    v_loss: list[float] = []
    for rec in increasing(read_metrics(run, upto=last)):
        first = rec.get("first_step", rec["step"])
        losses = rec.get("train_loss", [])
        t_steps.extend(range(first, first + len(losses)))
        t_loss.extend(losses)
        if rec.get("valid_loss") is not None:
            v_steps.append(rec["step"])
            v_loss.append(rec["valid_loss"])
    return (np.asarray(t_steps), np.asarray(t_loss), np.asarray(v_steps), np.asarray(v_loss))
