"""Files written whole or not at all, with the umask's mode.

A file is written under a temporary name next to its place and renamed into it, so a
reader sees the old file or the new one, never half of one. Files and folders follow the
umask like any others (temporary names are made here, not by ``tempfile``, whose files are
owner-only, as ``safetensors``' ``save_file`` makes its files).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(folder: Path, prefix: str, suffix: str = "") -> Path:
    return folder / f"{prefix}{secrets.token_hex(6)}{suffix}"


def _new_tmp_file(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """A new file opened for writing, with the umask's mode (``mkstemp`` makes it 0600, so
    a run trained by one user could not be served by another)."""
    while True:
        path = tmp_name(folder, prefix, suffix)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def new_tmp_dir(folder: Path, prefix: str) -> Path:
    """A new folder with the umask's mode (``mkdtemp`` makes it 0700)."""
    while True:
        path = tmp_name(folder, prefix)
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with the umask's mode and write it to disk (``safetensors``'
    ``save_file`` creates its files 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_tensors(path: Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Named arrays as a new safetensors file, flushed to disk."""
    write_new(path, save({k: np.ascontiguousarray(v) for k, v in tensors.items()}))


def write_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write a temporary file next to ``path``, then replace ``path`` with it; the temporary
    file is removed if anything fails (a full disk must not leave ``.*.tmp`` behind)."""
    fd, tmp = _new_tmp_file(path.parent, f".{path.stem}.", ".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, [json.dumps(data, indent=2, sort_keys=True)])
