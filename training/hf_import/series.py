"""A Hugging Face source (one folder or a series of step folders) as a run in the root.

Every step is checked (configs equal, every tensor's name and shape from the headers) and
the tokenizer found before anything is written; the run is then built in a hidden folder
of the root and renamed into place, so an interruption leaves no half run under its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from training import checkpoint as ckpt
from training.atomic import fsync_dir, write_new
from training.hf_import import leftovers
from training.hf_import.config_map import difference
from training.hf_import.convert import CheckedStep, check_step, read_step
from training.hf_import.discover import MAX_STEP, find_steps, trainer_state
from training.hf_import.errors import HFImportError
from training.run_meta import TOKENIZER_FILE, external_metadata

PROG = "interp-import"
ARCH_NAMES = {"gpt2": "GPT2LMHeadModel", "neox": "GPTNeoXForCausalLM"}


def _same_config(steps: list[CheckedStep]) -> None:
    first = steps[0]
    for s in steps[1:]:
        diff = difference(first.spec, s.spec)
        if diff:
            raise HFImportError(
                f"steps differ in their config.json: {s.folder.name} vs {first.folder.name}: {diff}"
            )


def _tokenizer(src: Path, steps: list[CheckedStep], out: TextIO) -> tuple[dict, Path | None]:
    """(run.json's tokenizer entry, the file to copy): the first ``tokenizer.json`` of the
    step folders, else the source's; byte-level ids when there is none and the vocabulary
    can hold them."""
    candidates = [s.folder / TOKENIZER_FILE for s in steps] + [src / TOKENIZER_FILE]
    found = next((p for p in candidates if p.is_file()), None)
    vocab = steps[0].spec.config.vocab_size
    if found is None:
        if vocab < 256:
            raise HFImportError(
                f"no {TOKENIZER_FILE} in {src} or its step folders, and vocab_size {vocab} is "
                f"too small for byte-level ids (256); put the model's {TOKENIZER_FILE} in {src}"
            )
        print(
            f"{PROG}: no {TOKENIZER_FILE} in {src} or its step folders: "
            "tokens are shown as bytes (id i < 256 is byte i)",
            file=out,
        )
        return {"tokenizer": {"kind": "bytes"}}, None
    from tokenizers import Tokenizer

    try:
        ids = Tokenizer.from_file(str(found)).get_vocab(with_added_tokens=True).values()
    except Exception as err:  # tokenizers raises its own exception type
        raise HFImportError(f"{found} is not a readable tokenizers file: {err}") from None
    top = max(ids, default=-1)
    if top >= vocab:
        raise HFImportError(
            f"{found} has token id {top} but the model's vocab_size is {vocab} (ids 0..{vocab - 1})"
        )
    return {"tokenizer": {"kind": "huggingface", "file": TOKENIZER_FILE}}, found


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def metrics(src: Path, steps: list[CheckedStep]) -> list[dict[str, Any]]:
    """Metrics records from the latest ``trainer_state.json`` (the HF Trainer's
    ``log_history``: ``loss`` and ``eval_loss`` by step); none when there is none."""
    state = None
    for folder in [s.folder for s in reversed(steps)] + [src]:
        state = trainer_state(folder)
        if state is not None:
            break
    history = state.get("log_history") if state else None
    by_step: dict[int, dict[str, Any]] = {}
    for entry in history if isinstance(history, list) else []:
        step = entry.get("step") if isinstance(entry, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
            continue
        rec = by_step.setdefault(
            step, {"step": step, "first_step": step, "train_loss": [], "valid_loss": None}
        )
        if _number(entry.get("loss")):
            rec["train_loss"] = [float(entry["loss"])]
        if _number(entry.get("eval_loss")):
            rec["valid_loss"] = float(entry["eval_loss"])
    return [by_step[s] for s in sorted(by_step)]


def _digest(params: dict[str, np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(params):
        h.update(name.encode())
        h.update(params[name].tobytes())
    return h.digest()


def _write_steps(run: Path, steps: list[CheckedStep], valid: dict[int, Any], out: TextIO) -> None:
    """Each step converted and saved in turn (one in memory at a time), a bar for each."""
    seen: dict[bytes, int] = {}
    for s in steps:
        with tqdm(total=s.n_tensors, desc=f"step {s.step}", unit="tensor", file=out) as bar:
            params = read_step(
                s, tick=bar.update, warn=lambda m: bar.write(f"{PROG}: {m}", file=out)
            )
            digest = _digest(params)
            if digest in seen:
                bar.write(
                    f"{PROG}: step {s.step} holds the same weights as step {seen[digest]}", file=out
                )
            seen.setdefault(digest, s.step)
            sidecar = {"step": s.step, "valid_loss": valid.get(s.step), "source": s.folder.name}
            ckpt.save_step(run, s.step, params, sidecar)


def _into_place(tmp: Path, final: Path) -> None:
    """Rename the finished run into place; a run it replaces is deleted only afterwards
    (a kill in between leaves it aside for the next import to put back: ``leftovers``)."""
    aside = None
    if final.exists():
        aside = leftovers.aside_name(final.parent, final.name)
        os.rename(final, aside)
    try:
        os.rename(tmp, final)
    except BaseException:
        if aside is not None:
            os.rename(aside, final)
        raise
    fsync_dir(final.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _root(root: str | Path) -> Path:
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise HFImportError(f"ROOT {root} is not a folder")
    return root


def import_series(
    src: str | Path,
    root: str | Path,
    name: str,
    *,
    overwrite: bool = False,
    out: TextIO | None = None,
) -> Path:
    """Import ``src`` as run ``name`` under ``root``; returns the run's folder. Refusals are
    ``ValueError`` (``HFImportError``, ``CheckpointError``) with nothing written. Progress
    bars and notes go to ``out`` (``sys.stderr`` at the time of the call by default)."""
    out = sys.stderr if out is None else out
    ckpt.check_run_name(name)
    root, src = _root(root), Path(src)
    notes: list[str] = []
    steps = [check_step(f.path, f.step) for f in find_steps(src, notes.append)]
    _same_config(steps)
    final = ckpt.run_dir(root, name)
    tokenizer, tok_file = _tokenizer(src, steps, out)
    leftovers.tidy(root, name, notes.append)
    for line in notes:
        print(f"{PROG}: {line}", file=out)
    if final.exists() and not overwrite:
        raise HFImportError(f"run {name!r} already exists in {root}; --overwrite replaces it")
    records = metrics(src, steps)
    spec = steps[0].spec
    source = {
        "kind": "huggingface",
        "path": str(src.resolve()),
        "architecture": ARCH_NAMES[spec.arch],
    }
    made_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    tmp = leftovers.new_build_dir(root, name)
    try:
        ckpt.write_json_atomic(
            tmp / ckpt.RUN_FILE, external_metadata(spec.config, tokenizer, source)
        )
        if tok_file is not None:
            write_new(tmp / TOKENIZER_FILE, tok_file.read_bytes())
        _write_steps(tmp, steps, {r["step"]: r["valid_loss"] for r in records}, out)
        for rec in records:
            ckpt.append_metrics(tmp, rec)
        _into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made_root:
            with contextlib.suppress(OSError):
                root.rmdir()  # only if it is still empty
        raise
    return final
