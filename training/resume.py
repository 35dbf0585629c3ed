"""Where a run starts: a new run folder, or the newest whole step of an existing one.

A step is whole when both its parameters and its optimizer state load; a truncated or
missing latest step falls back to the one before (the last two saved steps keep optimizer
state). Steps and metrics records after the step resumed from are removed, saying which.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, TextIO

from training import checkpoint as ckpt
from training.model.config import ModelConfig
from training.model.params import unflatten_params, unflatten_tree
from training.prepare import TrainError


def open_run(
    root: Path,
    name: str,
    meta: dict[str, Any],
    state: tuple[Any, Any],
    *,
    resume: bool,
    overwrite: bool,
    out: TextIO,
) -> tuple[int | None, tuple[Any, Any]]:
    """The step to resume from and its (parameters, optimizer state), or None and the fresh
    ``state`` after writing ``meta`` into a new run folder."""
    path = ckpt.run_dir(root, name)
    if not (resume and (path / ckpt.RUN_FILE).exists()):
        if overwrite and path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        ckpt.write_json_atomic(path / ckpt.RUN_FILE, meta)
        return None, state
    mc = ModelConfig.from_dict(meta["model"])
    start, params, opt_state = whole_step(path, name, mc, state[1])
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
    trim_metrics(path, start, out)
    stored = ckpt.read_run(root, name).meta
    ckpt.write_json_atomic(path / ckpt.RUN_FILE, {**stored, "train": meta["train"]})
    return start, (params, opt_state)


def whole_step(path: Path, name: str, mc: ModelConfig, opt_template: Any) -> tuple[int, Any, Any]:
    """The newest step whose parameters and optimizer state both load, and those two."""
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


def trim_metrics(path: Path, start: int, out: TextIO) -> None:
    """Keep one record per step up to ``start`` (a kill can leave later or repeated ones);
    bad lines are dropped with a notice naming the file and the first bad line."""
    read = ckpt.read_metrics_checked(path, upto=start)
    if read.skipped:
        notice = read.notice(str(path / ckpt.METRICS_FILE))
        print(f"interp-train: warning: {notice}; they are dropped", file=out)
    ckpt.rewrite_metrics(path, ckpt.increasing(read.records))
