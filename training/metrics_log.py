"""The run's metrics log, ``metrics.jsonl``: one JSON record per training chunk.

A record is ``{"step", "first_step", "train_loss": [one per step], "valid_loss"}``. Records
are appended and flushed to disk as each chunk finishes; reading never raises on the
file's content (a kill can leave a torn last line, a disk error a garbled one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.atomic import write_atomic

METRICS_FILE = "metrics.jsonl"


def append_metrics(run: Path, record: Mapping[str, Any]) -> None:
    with open(run / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(dict(record)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """One metrics line as a record, or None if it is not one: not UTF-8, not JSON, not an
    object with an int ``step``, or an optional field of the wrong type."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep
        return None
    if not isinstance(rec, dict) or not _is_int(rec.get("step")):
        return None
    if "first_step" in rec and not _is_int(rec["first_step"]):
        return None
    losses = rec.get("train_loss", [])
    if not isinstance(losses, list) or not all(_is_number(x) for x in losses):
        return None
    valid = rec.get("valid_loss")
    if valid is not None and not _is_number(valid):
        return None
    return rec


@dataclass(frozen=True)
class MetricsRead:
    """The records of ``metrics.jsonl`` and the 1-based numbers of the lines skipped."""

    records: list[dict[str, Any]]
    skipped: list[int]

    def notice(self, file: str = METRICS_FILE) -> str | None:
        """One line for the user when lines were skipped, else None."""
        if not self.skipped:
            return None
        n = len(self.skipped)
        return f"{file}: {n} bad line{'s' if n > 1 else ''} skipped (first: line {self.skipped[0]})"


def read_metrics_checked(run: Path, upto: int | None = None) -> MetricsRead:
    """Chunk records in order (those after ``upto`` left out) and the lines skipped as bad.

    Never raises on the file's content. A last line without its newline that does not parse
    is a write in progress or torn by a kill: skipped, not reported.
    """
    path = run / METRICS_FILE
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return MetricsRead([], [])
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    records, skipped = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = _parse_record(line)
        if rec is None:
            skipped.append(number)
        elif upto is None or rec["step"] <= upto:
            records.append(rec)
    rec = _parse_record(torn) if torn.strip() else None
    if rec is not None and (upto is None or rec["step"] <= upto):
        records.append(rec)
    return MetricsRead(records, skipped)


def read_metrics(run: Path, upto: int | None = None) -> list[dict[str, Any]]:
    """Chunk records in order; bad lines are skipped (see :func:`read_metrics_checked`)."""
    return read_metrics_checked(run, upto).records


def increasing(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records whose steps strictly increase: a record repeating an earlier step is dropped."""
    out: list[dict[str, Any]] = []
    for rec in records:
        if not out or rec["step"] > out[-1]["step"]:
            out.append(rec)
    return out


def rewrite_metrics(run: Path, records: list[dict[str, Any]]) -> None:
    write_atomic(run / METRICS_FILE, (json.dumps(r) + "\n" for r in records))
