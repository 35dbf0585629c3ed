"""The one shared selection: its defaults, its URL form, and how bad values fall back.

Pure functions over the run store's listings; the callbacks only call these.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

from interp_app.core.heads import head_name, parse_head

DEFAULT_RUN = "fruits"
DEFAULT_PROMPT = "i like spicy so i like"
DEFAULT_HEAD = (1, 0)
DEFAULT_CORRUPT = "i like sweet so i like"
# A run that interp-train did not make has no corpus to take its defaults from: run.json's
# optional "prompt" and "corrupt", else these (one name apart: one token in GPT-2's BPE).
GENERIC_PROMPT = "When Mary and John went to the store, John gave a drink to"
GENERIC_CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ABLATION_MODES = ("zero", "mean", "valid-mean")
MAX_TEXT_CHARS = 2000  # prompts and corrupted prompts: far beyond any context
_INTEGER = re.compile(r"\s*[+-]?\d{1,18}\s*")


def as_int(value: object) -> int | None:
    """An integer from untrusted input (JSON or URL): ints, integral finite floats and short
    digit strings; never a bool, NaN or an infinity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


def as_float(value: object) -> float | None:
    """A finite number from untrusted input (a click's coordinate), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Selection:
    run: str
    step: int
    prompt: str
    pos: int
    target: str
    layer: int
    head: int
    ablate: tuple[str, ...] = ()  # ablated heads, sorted names
    mode: str = "zero"  # ablation mode: zero or mean
    corrupt: str = DEFAULT_CORRUPT  # the corrupted prompt for activation patching

    @property
    def head_name(self) -> str:
        return head_name(self.layer, self.head)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        parsed = cls.parse(data)
        if parsed is None:
            raise ValueError("not a selection")
        return parsed

    @classmethod
    def parse(cls, data: object) -> Selection | None:
        """The selection a stored dict describes, or None when any field is missing or of
        the wrong type (the store is client data: anyone can send anything)."""
        if not isinstance(data, dict):
            return None
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name, f.default)
            if f.name == "ablate":
                if not isinstance(value, list | tuple) or len(value) > 4096:
                    return None
                if not all(isinstance(v, str) for v in value):
                    return None
                value = tuple(value)
            elif f.name in ("step", "pos", "layer", "head"):
                if isinstance(value, bool) or not isinstance(value, int):
                    return None
            elif not isinstance(value, str):
                return None
            values[f.name] = value
        return cls(**values)

    def to_query(self) -> str:
        query: dict[str, Any] = {
            "run": self.run,
            "step": self.step,
            "prompt": self.prompt,
            "pos": self.pos,
            "target": self.target,
            "head": self.head_name,
        }
        if self.ablate:
            query["ablate"] = ",".join(self.ablate)
            query["ablate_mode"] = self.mode
        if self.corrupt != DEFAULT_CORRUPT:
            query["corrupt"] = self.corrupt
        return "?" + urlencode(query)

    def with_(self, **changes: Any) -> Selection:
        return replace(self, **changes)


def run_prompts(meta: dict[str, Any]) -> tuple[str, str]:
    """(default prompt, default corrupted prompt) of a run: ``run.json``'s own ``prompt``
    and ``corrupt`` when given (the induction lab names a held-out sequence with a repeat),
    else the article's for a run trained on words (``interp-train``'s, or a word
    vocabulary), else a generic English pair."""

    def given(key: str) -> str | None:
        value = meta.get(key)
        ok = isinstance(value, str) and value.strip() and len(value) <= MAX_TEXT_CHARS
        return value if ok and isinstance(value, str) else None

    words = meta.get("train") is not None or "vocab" in meta
    default = (DEFAULT_PROMPT, DEFAULT_CORRUPT) if words else (GENERIC_PROMPT, GENERIC_CORRUPT)
    prompt = given("prompt")
    if words and prompt is None:
        return default
    return prompt or default[0], given("corrupt") or default[1]


def shown(value: object, limit: int = 40) -> str:
    """A user's value quoted for a notice, cut short (a notice must not echo a megabyte)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_query(search: str | None) -> dict[str, str]:
    """``?a=1&b=2`` -> {'a': '1', 'b': '2'} (last value wins; nothing is trusted yet)."""
    if not search:
        return {}
    return {k: v[-1] for k, v in parse_qs(search.lstrip("?"), keep_blank_values=True).items()}


def pick_run(runs: list[str], wanted: str | None) -> tuple[str | None, str | None]:
    """(run, notice). Unknown or path-like names fall back to the default run."""
    if not runs:
        return None, None
    fallback = DEFAULT_RUN if DEFAULT_RUN in runs else runs[0]
    if wanted is None or wanted == "":
        return fallback, None
    if wanted in runs:
        return wanted, None
    return fallback, f"run {shown(wanted)} does not exist; showing {fallback!r}"


def pick_step(steps: list[int], wanted: str | int | None) -> tuple[int, str | None]:
    last = steps[-1]
    if wanted is None or wanted == "":
        return last, None
    value = as_int(wanted)
    if value is None:
        return last, f"step {shown(wanted)} is not a number; showing step {last}"
    if value in steps:
        return value, None
    return last, f"step {value} does not exist in this run; showing step {last}"


def pick_head(
    n_layers: int, n_heads: int, wanted: str | None
) -> tuple[tuple[int, int], str | None]:
    default = (min(DEFAULT_HEAD[0], n_layers - 1), min(DEFAULT_HEAD[1], n_heads - 1))
    if not wanted:
        return default, None
    parsed = parse_head(wanted, n_layers, n_heads)
    if parsed is None:
        return default, f"head {shown(wanted)} does not exist; showing {head_name(*default)}"
    return parsed, None


def pick_pos(length: int, wanted: str | int | None) -> tuple[int, str | None]:
    last = max(length - 1, 0)
    if wanted is None or wanted == "":
        return last, None
    value = as_int(wanted)
    if value is None:
        return last, f"position {shown(wanted)} is not a number; showing the last position"
    if 0 <= value < length:
        return value, None
    return last, f"position {value} is outside the prompt; showing the last position"


def pick_ablation(
    n_layers: int, n_heads: int, wanted: str | None, mode: str | None
) -> tuple[tuple[str, ...], str, list[str]]:
    """Valid ablated heads (sorted, unique) and mode. At most one entry per head is read, and
    what was dropped is summarised in one notice (a forged list must not echo itself)."""
    notes = []
    names: set[str] = set()
    parts = [p.strip() for p in (wanted if isinstance(wanted, str) else "").split(",")]
    parts = [p for p in parts if p]
    limit = n_layers * n_heads
    bad = []
    for part in parts[:limit]:
        parsed = parse_head(part, n_layers, n_heads)
        if parsed is None:
            bad.append(part)
        else:
            names.add(head_name(*parsed))
    ignored = len(parts) - min(len(parts), limit)
    if bad or ignored:
        what = [", ".join(shown(b) for b in bad[:3]) + (", …" if len(bad) > 3 else "")]
        what = [f"{what[0]} (no such head)"] if bad else []
        if ignored:
            what.append(f"{ignored:,} entries beyond the model's {limit} heads")
        notes.append(f"cannot ablate {' and '.join(what)}")
    if mode in (None, ""):
        mode = "zero"
    elif mode not in ABLATION_MODES:
        notes.append(
            f"ablation mode {shown(mode)} is not one of {', '.join(ABLATION_MODES)}; using zero"
        )
        mode = "zero"
    return tuple(sorted(names)), mode, notes
