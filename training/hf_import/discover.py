"""Which folders of a Hugging Face source are steps, and which step each one is.

A source is either one model folder (it holds ``config.json``: one step, numbered by its
``trainer_state.json`` when there is one, else 0) or a folder of step folders named
``step1000``, ``checkpoint-1000`` (the HF Trainer's) or ``1000``, sorted numerically.

The HF Trainer's ``output_dir`` is both: step folders and, after ``trainer.save_model()``,
a model of its own. Its own model is then one more step when its ``trainer_state.json``
names a step no step folder has; at a step folder's step it is left out with a note (the
step folder is that step). Without a ``trainer_state.json`` its step is unknown, and the
import is refused naming the two ways on, rather than guessing a step number for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.hf_import.errors import HFImportError

CONFIG_FILE = "config.json"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^(?:step|checkpoint-)?([0-9]+)$")  # ASCII digits only
MAX_STEP = 999_999_999  # a run's step folders have nine digits (training.series_checks.MAX_STEP)


@dataclass(frozen=True)
class StepFolder:
    step: int
    path: Path


def read_json(path: Path) -> Any:
    """A JSON file the user gave us; unreadable or invalid is one line naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise HFImportError(f"cannot read {path}: {err.strerror or err}") from None
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError alike
        raise HFImportError(f"{path} is not valid JSON: {err}") from None


def trainer_state(folder: Path) -> dict[str, Any] | None:
    """The HF Trainer's ``trainer_state.json`` in ``folder``, None when there is none."""
    path = folder / TRAINER_STATE
    if not path.is_file():
        return None
    state = read_json(path)
    if not isinstance(state, dict):
        raise HFImportError(f"{path} is not a JSON object")
    return state


def _own_step(folder: Path) -> int | None:
    """The step ``trainer_state.json`` names; None when there is no such file."""
    state = trainer_state(folder)
    if state is None:
        return None
    step = state.get("global_step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        raise HFImportError(
            f"{folder / TRAINER_STATE}: global_step {step!r} is not a step in 0..{MAX_STEP}"
        )
    return step


def _step_folders(src: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for entry in sorted(src.iterdir()):
        m = _STEP_DIR.match(entry.name)
        if not m or not entry.is_dir():
            continue
        step = int(m.group(1))
        if step > MAX_STEP:
            raise HFImportError(
                f"{entry}: step {step} is past {MAX_STEP}, the largest step a run can hold"
            )
        if step in found:
            raise HFImportError(
                f"{found[step].name} and {entry.name} in {src} are both step {step}"
            )
        found[step] = entry
    return found


def _with_own_model(src: Path, found: dict[int, Path], note: Callable[[str], object]) -> None:
    """An output_dir's own model joins its step folders when its step is a new one."""
    first, last = found[min(found)].name, found[max(found)].name
    step = _own_step(src)
    if step is None:
        raise HFImportError(
            f"{src} holds a model of its own ({CONFIG_FILE}) and step folders "
            f"{first}..{last}, and no {TRAINER_STATE} says which step its own model is: "
            f"write one with its global_step (trainer.save_state() does), or move the own "
            f"model's files out of {src} to import the step folders alone"
        )
    if step in found:
        note(
            f"the model in {src} itself is step {step} ({TRAINER_STATE}), the step of "
            f"{found[step].name}: it is left out, {found[step].name} is step {step}"
        )
        return
    found[step] = src


def find_steps(src: Path, note: Callable[[str], object] = lambda _: None) -> list[StepFolder]:
    """The source's steps in increasing order; a source with none is refused. ``note``
    gets a line when the source's own model is left out (module docstring)."""
    if not src.exists():
        raise HFImportError(f"{src} does not exist")
    if not src.is_dir():
        raise HFImportError(f"{src} is not a folder (give the folder holding config.json)")
    found = _step_folders(src)
    if (src / CONFIG_FILE).is_file():
        if not found:
            own = _own_step(src)
            return [StepFolder(0 if own is None else own, src)]
        _with_own_model(src, found, note)
    if not found:
        raise HFImportError(
            f"no {CONFIG_FILE} in {src} and no step folders in it "
            "(named like step1000, checkpoint-1000 or 1000)"
        )
    return [StepFolder(step, found[step]) for step in sorted(found)]
