"""Which folders of a Hugging Face source are steps, and which step each one is.

A source is either one model folder (it holds ``config.json``: one step, numbered by its
``trainer_state.json`` when there is one, else 0) or a folder of step folders named
``step1000``, ``checkpoint-1000`` (the HF Trainer's) or ``1000``, sorted numerically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.hf_import.errors import HFImportError

CONFIG_FILE = "config.json"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^(?:step|checkpoint-)?(\d+)$")


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


def _own_step(folder: Path) -> int:
    state = trainer_state(folder)
    step = 0 if state is None else state.get("global_step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise HFImportError(f"{folder / TRAINER_STATE}: global_step {step!r} is not a step")
    return step


def find_steps(src: Path) -> list[StepFolder]:
    """The source's steps in increasing order; a source with none is refused."""
    if not src.exists():
        raise HFImportError(f"{src} does not exist")
    if not src.is_dir():
        raise HFImportError(f"{src} is not a folder (give the folder holding config.json)")
    if (src / CONFIG_FILE).is_file():
        return [StepFolder(_own_step(src), src)]
    found: dict[int, Path] = {}
    for entry in sorted(src.iterdir()):
        m = _STEP_DIR.match(entry.name)
        if not m or not entry.is_dir():
            continue
        step = int(m.group(1))
        if step in found:
            raise HFImportError(
                f"{found[step].name} and {entry.name} in {src} are both step {step}"
            )
        found[step] = entry
    if not found:
        raise HFImportError(
            f"no {CONFIG_FILE} in {src} and no step folders in it "
            "(named like step1000, checkpoint-1000 or 1000)"
        )
    return [StepFolder(step, found[step]) for step in sorted(found)]
