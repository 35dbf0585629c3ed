"""The training text: the built-in fruits corpus, or any UTF-8 file with one sequence a line."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from training.tokenizer import split_words


class CorpusError(ValueError):
    """A corpus that cannot be trained on; the message is shown to the user as is."""


@dataclass(frozen=True)
class Corpus:
    train: tuple[str, ...]
    valid: tuple[str, ...]
    source: str

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for part in (self.train, self.valid):
            h.update("\n".join(part).encode())
            h.update(b"\x00")
        return h.hexdigest()


def _clean(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if split_words(line))


def _read(path: Path, what: str) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise CorpusError(f"{what} path is a folder, not a file: {path}") from None
    except UnicodeDecodeError:
        raise CorpusError(f"{what} file is not UTF-8 text: {path}") from None
    lines = _clean(text)
    if not lines:
        raise CorpusError(f"{what} file has no words: {path}")
    return lines


def builtin_corpus() -> Corpus:
    """The seed article's 19 sentences about fruits and tastes, and its held-out sentence."""
    data = resources.files("training") / "data"
    train = _clean((data / "fruits-train.txt").read_text(encoding="utf-8"))
    valid = _clean((data / "fruits-valid.txt").read_text(encoding="utf-8"))
    return Corpus(train, valid, "built-in fruits")


def load_corpus(train_path: str | Path | None, valid_path: str | Path | None) -> Corpus:
    """Built-in corpus when no path is given; a custom corpus without --valid validates on train."""
    if train_path is None:
        if valid_path is not None:
            builtin = builtin_corpus()
            return Corpus(builtin.train, _read(Path(valid_path), "validation"), "built-in fruits")
        return builtin_corpus()
    train = _read(Path(train_path), "corpus")
    valid = _read(Path(valid_path), "validation") if valid_path is not None else train
    return Corpus(train, valid, str(train_path))


def check_fits(corpus: Corpus, context: int) -> None:
    """A line longer than the context would be cut silently: refuse it instead."""
    for name, lines in (("corpus", corpus.train), ("validation", corpus.valid)):
        for number, line in enumerate(lines, 1):
            n = len(split_words(line))
            if n > context:
                raise CorpusError(
                    f"{name} line {number} has {n} words, more than the context ({context}): "
                    f"{line[:60]!r}"
                )
