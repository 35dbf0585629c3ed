"""Word-level tokenizer, as in the article: lower-case, split on word characters.

:class:`TextTokenizer` is what the app asks of any run's tokenizer: this word tokenizer,
or the Hugging Face and byte-level ones of runs that ``interp-train`` did not make
(``training.hf_tokenizer``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

UNKNOWN = "UNKNOWN"
PADDING = "PADDING"
_WORD = re.compile(r"\w+")


def split_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Pieces:
    """A text as tokens: the ids, what each token's chip shows and, per token, the typed
    word when it is not in a word vocabulary ("" when it is; empty for sub-word
    tokenizers, which have no unknown words)."""

    ids: tuple[int, ...]
    labels: tuple[str, ...]
    unknown: tuple[str, ...] = ()


class TextTokenizer(Protocol):
    """What the app reads of a run's tokenizer, whatever made it."""

    @property
    def kind(self) -> str:
        """``words``, ``huggingface`` or ``bytes`` (as ``run.json`` names it)."""
        ...

    @property
    def vocab(self) -> tuple[str, ...]:
        """One unique label per id of the model's vocabulary (targets are picked by label)."""
        ...

    @property
    def index(self) -> Mapping[str, int]:
        """Label -> id."""
        ...

    @property
    def padding_id(self) -> int: ...

    @property
    def special(self) -> frozenset[str]:
        """Labels that are never a default target (padding, ids without a token)."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def pieces(self, text: str) -> Pieces: ...


@dataclass(frozen=True)
class Tokenizer:
    """A fixed vocabulary; saved with every run so a run decodes the same way forever."""

    vocab: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocabulary has duplicate entries")
        if UNKNOWN not in self.vocab or PADDING not in self.vocab:
            raise ValueError(f"vocabulary must contain {UNKNOWN} and {PADDING}")

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Tokenizer:
        """Sorted words first, then the two special tokens: deterministic for a given text."""
        words = sorted({w for line in lines for w in split_words(line)})
        return cls(tuple(words) + (UNKNOWN, PADDING))

    @cached_property
    def index(self) -> dict[str, int]:
        """Built once: rebuilding it per ``encode`` made a 50,000-line corpus take minutes."""
        return {w: i for i, w in enumerate(self.vocab)}

    @cached_property
    def unknown_id(self) -> int:
        return self.index[UNKNOWN]

    @cached_property
    def padding_id(self) -> int:
        return self.index[PADDING]

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        index = self.index
        unk = self.unknown_id
        return [index.get(w, unk) for w in split_words(text)]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.vocab[int(i)] for i in ids]

    def unknown_words(self, text: str) -> list[str]:
        index = self.index
        return [w for w in split_words(text) if w not in index]

    @property
    def kind(self) -> str:
        return "words"

    @property
    def special(self) -> frozenset[str]:
        return frozenset((UNKNOWN, PADDING))

    def pieces(self, text: str) -> Pieces:
        """Each word as typed (lower-cased), a word outside the vocabulary as UNKNOWN."""
        words = split_words(text)
        ids = self.encode(text)
        unk = self.unknown_id
        labels = tuple(UNKNOWN if i == unk else w for w, i in zip(words, ids, strict=True))
        unknown = tuple(w if i == unk else "" for w, i in zip(words, ids, strict=True))
        return Pieces(tuple(ids), labels, unknown)
