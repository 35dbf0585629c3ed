"""Writing a run as it trains: a metrics record and a checkpoint for each scheduled step.

The run folder must exist (``training.resume.open_run`` makes it and writes ``run.json``).
Each checkpoint is one metrics record (the train losses of the steps since the last one,
and the validation loss) followed by the step itself (parameters, sidecar, optimizer
state); saving drops the optimizer state of the step that leaves the resume window.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from training import checkpoint as ckpt
from training.model.params import flat_params, flatten_tree


class RunWriter:
    def __init__(self, path: Path):
        self.path = path
        self.window = ckpt.OptimizerWindow.of_run(path)
        self.save_s = 0.0  # time spent saving steps

    def record(
        self,
        step: int,
        first_step: int,
        train_loss: Iterable[float],
        valid_loss: float,
        params: Any,
        opt_state: Any,
    ) -> None:
        """Steps ``first_step .. step`` trained (none for step 0): their record, then step."""
        ckpt.append_metrics(
            self.path,
            {
                "step": step,
                "first_step": first_step,
                "train_loss": [round(float(x), 6) for x in train_loss],
                "valid_loss": valid_loss,
            },
        )
        self.save(step, params, opt_state, valid_loss)

    def save(self, step: int, params: Any, opt_state: Any, valid_loss: float | None) -> None:
        t0 = time.perf_counter()
        sidecar = {"step": step, "valid_loss": valid_loss, "time": time.time()}
        ckpt.save_step(self.path, step, flat_params(params), sidecar, flatten_tree(opt_state))
        self.window.saved(step)
        self.save_s += time.perf_counter() - t0


@contextlib.contextmanager
def write_errors(path: Path) -> Iterator[None]:
    """A failed write (a full disk, a folder made read-only) is one line for the user."""
    try:
        yield
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise ckpt.CheckpointError(
            f"cannot write run {path.name!r}: {err.strerror or err}{where}; "
            "the steps saved so far are kept (--resume continues from them)"
        ) from None
