"""Tokenizers of runs that ``interp-train`` did not make (``training.run_meta``): a Hugging
Face ``tokenizers`` file, or byte-level ids when a model came without one.

Both give what the app reads of any tokenizer (``training.tokenizer.TextTokenizer``): one
unique, readable label per id of the *model's* vocabulary (Pythia's 50,304 ids outnumber
its tokenizer's tokens; the spare ids read ``<id 50300>``), and a prompt's pieces as the
text it was cut from (``text[a:b]`` of each token's character span). A character whose
bytes are split over several tokens is marked on each of them (``🙂·1/2``, ``🙂·2/2``): the
tokens do not each stand for a character.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from training.tokenizer import Pieces, TextTokenizer, Tokenizer

PART = "·"  # between a split character and its part number: "🙂·1/2"


def placeholder(i: int) -> str:
    """The label of an id the tokenizer has no token for."""
    return f"<id {i}>"


@cache
def _byte_chars() -> dict[str, int]:
    """GPT-2's byte-level alphabet, char -> byte (``Ġ`` is the space): printable bytes
    stand for themselves, the others are shifted past 255."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def readable(token: str) -> str:
    """A byte-level token as the text it stands for (``Ġcat`` -> `` cat``); bytes that are
    not whole UTF-8 characters as ``\\xe2``; a token of another alphabet as it is."""
    table = _byte_chars()
    if not token or any(c not in table for c in token):
        return token
    return bytes(table[c] for c in token).decode("utf-8", errors="backslashreplace")


def unique_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """Labels pick targets, so each must name one id: the first id of a label keeps it, a
    repeat gets its id appended (again, while that too is taken: ``["x", "x <id 2>", "x"]``
    would else name id 1 twice)."""
    first: dict[str, int] = {}
    for i, label in enumerate(labels):
        first.setdefault(label, i)
    taken = set(first)
    out = []
    for i, label in enumerate(labels):
        if first[label] != i:
            while label in taken:
                label = f"{label} {placeholder(i)}"
            taken.add(label)
        out.append(label)
    return tuple(out)


def piece_labels(text: str, spans: Sequence[tuple[int, int]]) -> tuple[str, ...]:
    """``text[a:b]`` per token; tokens whose spans overlap (one character's bytes split over
    them) each marked with their part of the run: ``🙂·1/2``."""
    labels = [text[a:b] for a, b in spans]
    groups: list[list[int]] = []
    for i, (a, _) in enumerate(spans):
        if groups and a < spans[i - 1][1]:
            groups[-1].append(i)
        else:
            groups.append([i])
    for group in groups:
        if len(group) > 1:
            for k, i in enumerate(group, 1):
                labels[i] = f"{labels[i]}{PART}{k}/{len(group)}"
    return tuple(labels)


def max_id(tokenizer: Any) -> int:
    """The largest id of a ``tokenizers.Tokenizer`` (added tokens too), -1 when it has none:
    an id past the model's vocabulary would index past ``wte`` (ids may leave gaps, so the
    token count is not the bound)."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)


class _Labelled:
    """What both tokenizers derive from their labels: targets are looked up by label."""

    @property
    def vocab(self) -> tuple[str, ...]:
        raise NotImplementedError

    @cached_property
    def index(self) -> Mapping[str, int]:
        return {label: i for i, label in enumerate(self.vocab)}

    @property
    def padding_id(self) -> int:
        """Any id: padding sits after the prompt and attention is causal."""
        return 0


class HFTokenizer(_Labelled):
    """A Hugging Face ``tokenizers`` file, read for a model of ``vocab_size`` ids."""

    kind = "huggingface"

    def __init__(self, tokenizer: Any, vocab_size: int, path: Path | None = None):
        top = max_id(tokenizer)
        if top >= vocab_size:
            raise ValueError(
                f"the tokenizer has token id {top} but the model has {vocab_size} ids "
                f"(0..{vocab_size - 1})"
            )
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.path = path

    @classmethod
    def from_file(cls, path: str | Path, vocab_size: int) -> HFTokenizer:
        from tokenizers import Tokenizer as HFFile  # imported only for runs that use it

        return cls(HFFile.from_file(str(path)), vocab_size, Path(path))

    @cached_property
    def _tokens(self) -> dict[int, str]:
        return {i: t for t, i in self.tokenizer.get_vocab(with_added_tokens=True).items()}

    @cached_property
    def vocab(self) -> tuple[str, ...]:
        """Built once per run (a pass over the vocabulary, never per click)."""
        added = self.tokenizer.get_added_tokens_decoder()
        tokens = self._tokens
        labels = [
            placeholder(i)
            if i not in tokens
            else tokens[i]
            if i in added and added[i].special
            else readable(tokens[i])
            for i in range(self.vocab_size)
        ]
        return unique_labels(labels)

    @cached_property
    def special(self) -> frozenset[str]:
        tokens = self._tokens
        return frozenset(self.vocab[i] for i in range(self.vocab_size) if i not in tokens)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @cached_property
    def trims_offsets(self) -> bool:
        """Whether the post-processor trims spaces off the offsets (a ByteLevel one with
        ``trim_offsets``): ``text[a:b]`` would then lose the leading space, or be empty."""
        try:
            spec = json.loads(self.tokenizer.to_str()).get("post_processor")
        except (ValueError, AttributeError):
            return True  # unknown: the token labels are right either way
        parts = spec.get("processors", [spec]) if isinstance(spec, dict) else []
        return any(isinstance(p, dict) and p.get("trim_offsets") for p in parts)

    def pieces(self, text: str) -> Pieces:
        """``text[a:b]`` per token, or the token's own label (its target label) when the
        spans do not hold the token's text: trimmed offsets, or an empty span."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        ids = tuple(enc.ids)
        if self.trims_offsets:
            return Pieces(ids, tuple(self.vocab[i] for i in ids))
        labels = piece_labels(text, enc.offsets)
        fixed = tuple(
            self.vocab[i] if a == b else lab
            for i, (a, b), lab in zip(ids, enc.offsets, labels, strict=True)
        )
        return Pieces(ids, fixed)


def byte_label(i: int) -> str:
    """Printable ASCII as itself, other bytes as ``<0x0A>``, ids past 255 as ``<id 300>``."""
    if i >= 256:
        return placeholder(i)
    return chr(i) if 0x20 <= i < 0x7F else f"<0x{i:02X}>"


class ByteTokenizer(_Labelled):
    """Id ``i`` < 256 is byte ``i`` of the UTF-8 text: the fallback without a tokenizer."""

    kind = "bytes"

    def __init__(self, vocab_size: int):
        if vocab_size < 256:
            raise ValueError(f"byte-level ids need a vocabulary of 256, not {vocab_size}")
        self.vocab_size = vocab_size

    @cached_property
    def vocab(self) -> tuple[str, ...]:
        return tuple(byte_label(i) for i in range(self.vocab_size))

    @cached_property
    def special(self) -> frozenset[str]:
        return frozenset(self.vocab[256:])

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def pieces(self, text: str) -> Pieces:
        spans = [(i, i + 1) for i, c in enumerate(text) for _ in c.encode("utf-8")]
        return Pieces(tuple(self.encode(text)), piece_labels(text, spans))


def load_tokenizer(meta: Mapping[str, Any], run: Path, vocab_size: int) -> TextTokenizer:
    """The tokenizer ``run.json`` names (``training.run_meta``); ValueError if it cannot be
    read. A Hugging Face file must be a plain name inside the run folder."""
    if "vocab" in meta:
        return Tokenizer(tuple(meta["vocab"]))
    spec = meta.get("tokenizer")
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "bytes":
        return ByteTokenizer(vocab_size)
    if kind == "huggingface":
        name = spec.get("file") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"tokenizer file {name!r} is not a plain file name")
        try:
            return HFTokenizer.from_file(run / name, vocab_size)
        except Exception as err:  # tokenizers raises its own exception type
            raise ValueError(f"tokenizer file {name!r} cannot be read: {err}") from None
    raise ValueError("run.json names no tokenizer (neither 'vocab' nor 'tokenizer')")
