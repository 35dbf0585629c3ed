"""The one shared selection: its defaults, its URL form, and how bad values fall back.

Pure functions over the run store's listings; the callbacks only call these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

from interp_app.analysis import head_name, parse_head

DEFAULT_RUN = "fruits"
DEFAULT_PROMPT = "i like spicy so i like"
DEFAULT_HEAD = (1, 0)
DEFAULT_CORRUPT = "i like sweet so i like"
ABLATION_MODES = ("zero", "mean")


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
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["ablate"] = tuple(fields.get("ablate", ()))
        return cls(**fields)

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
    try:
        value = int(wanted)
    except (TypeError, ValueError):
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
    try:
        value = int(wanted)
    except (TypeError, ValueError):
        return last, f"position {shown(wanted)} is not a number; showing the last position"
    if 0 <= value < length:
        return value, None
    return last, f"position {value} is outside the prompt; showing the last position"


def pick_ablation(
    n_layers: int, n_heads: int, wanted: str | None, mode: str | None
) -> tuple[tuple[str, ...], str, list[str]]:
    """Valid ablated heads (sorted, unique) and mode; every dropped value is reported."""
    notes = []
    names: set[str] = set()
    for part in (wanted or "").split(","):
        part = part.strip()
        if not part:
            continue
        parsed = parse_head(part, n_layers, n_heads)
        if parsed is None:
            notes.append(f"cannot ablate {shown(part)}: no such head")
        else:
            names.add(head_name(*parsed))
    if mode in (None, ""):
        mode = "zero"
    elif mode not in ABLATION_MODES:
        notes.append(
            f"ablation mode {shown(mode)} is not one of {', '.join(ABLATION_MODES)}; using zero"
        )
        mode = "zero"
    return tuple(sorted(names)), mode, notes
