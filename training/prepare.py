"""Before a run trains: every refusal, before anything is written, and the run's metadata."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import platform
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training import checkpoint as ckpt
from training.config import TrainConfig
from training.corpus import Corpus, check_fits
from training.model.config import ModelConfig
from training.tokenizer import Tokenizer


class TrainError(ValueError):
    """A refusal before anything is written; the CLI prints it as one line."""


@contextlib.contextmanager
def refusing_os_errors(what: str) -> Iterator[None]:
    """An ``OSError`` inside becomes a :class:`TrainError` saying ``what: reason``."""
    try:
        yield
    except OSError as err:
        raise TrainError(f"{what}: {err.strerror or err}") from None


def check_run_name(name: str) -> None:
    try:
        ckpt.check_run_name(name)
    except ckpt.CheckpointError as err:
        raise TrainError(str(err)) from None


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
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "safetensors", "tokenizers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


def same_run(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a stored run and a requested one (total steps may grow on resume)."""
    diffs = []
    try:  # compared as configs: fields added since the run was written take their defaults
        same_model = ModelConfig.from_dict(old.get("model", {})) == ModelConfig.from_dict(
            new["model"]
        )
    except (TypeError, ValueError):
        same_model = False
    if not same_model:
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


def describe_run(mc: ModelConfig, tc: TrainConfig, corpus: Corpus) -> tuple[dict, Tokenizer]:
    """The run's metadata and its tokenizer: the corpus decides the vocabulary (refused if
    a line does not fit the context)."""
    check_fits(corpus, mc.context)
    tokenizer = Tokenizer.from_lines(corpus.train)
    mc = dataclasses.replace(mc, vocab_size=len(tokenizer))
    return run_metadata(mc, tc, tokenizer, corpus), tokenizer


def prepare_run(root: Path, name: str, meta: dict, *, resume: bool, overwrite: bool) -> Path:
    """The run's folder, once every refusal about it has passed; nothing is written."""
    if root.exists() and not root.is_dir():
        raise TrainError(f"cannot write to checkpoint root {root}: it is not a folder")
    path = ckpt.run_dir(root, name)
    exists = (path / ckpt.RUN_FILE).exists()
    if exists and not overwrite:
        _check_existing(root, name, meta, resume)
    elif resume and not exists:
        raise TrainError(f"nothing to resume: no run named {name!r} in {root}")
    _check_writable(root)
    return path


def _check_existing(root: Path, name: str, meta: dict[str, Any], resume: bool) -> None:
    """An existing run may only be resumed, with the same configs and corpus, from a step."""
    path = ckpt.run_dir(root, name)
    stored = ckpt.read_run(root, name).meta
    if not isinstance(stored.get("train"), dict):  # imported, or written by a user's loop
        source = (stored.get("source") or {}).get("kind", "elsewhere")
        raise TrainError(
            f"run {name!r} was not made by interp-train (it came from {source}), so it "
            "cannot be resumed here; use another --run name or --overwrite"
        )
    diffs = same_run(stored, meta)
    if diffs:
        raise TrainError(
            f"run {name!r} already exists with a different {', '.join(diffs)}; "
            "use --overwrite to replace it or another --run name"
        )
    if not resume:
        raise TrainError(f"run {name!r} already exists; use --resume to continue it or --overwrite")
    with refusing_os_errors(f"cannot tidy run folder {path}"):
        ckpt.clean_partial(path)  # put back or remove what an interrupted save left
    if not ckpt.list_steps(path):
        raise TrainError(f"run {name!r} has no complete step to resume from; use --overwrite")


def _check_writable(root: Path) -> None:
    with refusing_os_errors(f"cannot write to checkpoint root {root}"):
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("")
        probe.unlink()
