"""Safetensors files of float tensors, read as safetensors checks them and memory-mapped
when large, written with their data aligned for XLA.

Split out of ``training.checkpoint`` (which re-exports these names): this is the one file
format under a step folder, apart from where steps live and how they are renamed in.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from safetensors.numpy import save

__all__ = [
    "ALIGN",
    "FLOAT_DTYPES",
    "LAZY_BYTES",
    "CheckpointError",
    "read_tensors",
    "write_params",
]

#: Parameter dtypes a step may store (safetensors names): computed in float32, kept as stored.
FLOAT_DTYPES: dict[str, np.dtype] = {
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
}
#: Parameter files at least this large are memory-mapped, not read: their pages are the
#: kernel's page cache, read when used. Smaller ones are read whole (one mapping holds one
#: file descriptor, and a cache of 512 small steps would hold 512 of them).
LAZY_BYTES = 1 << 20
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on a header
#: Where a step's tensor data starts in its file: XLA's CPU client takes a 64-byte-aligned
#: host array as it is, without a copy, so a mapped step's weights go into the forward
#: pass straight from the page cache (tensors whose byte sizes are multiples of 64, as
#: every one of GPT-2's, stay aligned after the first).
ALIGN = 64


class CheckpointError(ValueError):
    """A run or step that cannot be read or written; the message is for the user.

    Defined here, the lowest layer that raises it; ``training.checkpoint`` re-exports it."""


def read_tensors(
    path: Path, lazy_bytes: int = LAZY_BYTES, where: str = ""
) -> dict[str, np.ndarray]:
    """A safetensors file of float tensors as read-only arrays, memory-mapped when the file
    has ``lazy_bytes`` or more.

    ``safetensors.numpy.load_file`` copies every tensor onto the heap (and reads no BF16);
    a mapped step costs page cache, read as it is used, and a step written again is a new
    file (atomic renames), so a mapping never sees a file change under it. The header is
    checked as safetensors checks it: known dtypes, sizes that match the shapes, and
    tensors that tile the data exactly (a truncated file is refused, never half read)."""
    where = where or str(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        header, start = _read_header(fh, size, where)
        if size >= lazy_bytes and size > start:
            buffer: bytes | mmap.mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            buffer = fh.read(size - start)
            start = 0
    spans = []
    out = {}
    for name, entry in header.items():
        dtype, shape, begin, end = _entry(name, entry, where)
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dtype.itemsize:
            raise CheckpointError(f"{where} is corrupt: tensor {name} has the wrong byte size")
        spans.append((begin, end))
        out[name] = np.frombuffer(buffer, dtype, count, start + begin).reshape(shape)
    spans.sort()
    covered = 0
    for begin, end in spans:
        if begin != covered:
            raise CheckpointError(f"{where} is corrupt: its tensors overlap or leave gaps")
        covered = end
    return out


def _read_header(fh: Any, size: int, where: str) -> tuple[dict[str, Any], int]:
    """The header's tensors and where their data starts; the data must fill the file."""
    raw = fh.read(8)
    n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
    if not 0 < n <= min(_MAX_HEADER, size - 8):
        raise CheckpointError(f"{where} is corrupt: not a safetensors file")
    try:
        header = json.loads(fh.read(n))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{where} is corrupt: its header is not JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where} is corrupt: its header is not a table of tensors")
    header.pop("__metadata__", None)
    spans = [e.get("data_offsets") for e in header.values() if isinstance(e, dict)]
    ends = [s[1] for s in spans if isinstance(s, list) and len(s) == 2 and isinstance(s[1], int)]
    end = max(ends, default=0)
    if end != size - 8 - n:
        raise CheckpointError(
            f"{where} is corrupt: its header describes {end} bytes of data, the file holds "
            f"{size - 8 - n} (truncated or overwritten?)"
        )
    return header, 8 + n


def _entry(name: str, entry: Any, where: str) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """One header entry's dtype, shape and byte span, checked."""
    try:
        dtype = FLOAT_DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        ok = all(isinstance(d, int) and d >= 0 for d in (*shape, begin, end)) and begin <= end
    except (KeyError, TypeError, ValueError):
        kind = entry.get("dtype") if isinstance(entry, dict) else None
        if isinstance(kind, str) and kind not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{where}: parameter {name} is stored as {kind}; parameters are "
                f"{', '.join(FLOAT_DTYPES)}"
            ) from None
        ok = False
    if not ok:
        raise CheckpointError(f"{where} is corrupt: tensor {name} has an unreadable entry")
    return dtype, shape, begin, end


def write_params(path: Path, tensors: Mapping[str, np.ndarray]) -> None:
    """A new safetensors file (umask's mode, flushed to disk) whose data starts at a
    multiple of :data:`ALIGN`: the header is padded with spaces, as safetensors pads it."""
    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    n = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + n].rstrip(b" ")
    size = -(-(8 + len(header)) // ALIGN) * ALIGN - 8
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(size.to_bytes(8, "little"))
        fh.write(header.ljust(size))
        fh.write(memoryview(data)[8 + n :])
        fh.flush()
        os.fsync(fh.fileno())
