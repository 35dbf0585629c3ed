"""A prompt as the model sees it: the last ``context`` tokens, padded to ``context``."""

from __future__ import annotations

from dataclasses import dataclass

from training.tokenizer import Tokenizer, split_words


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model sees it: at most ``context`` tokens, padded to ``context``."""

    text: str
    words: tuple[str, ...]  # as typed (lower-cased), after truncation
    ids: tuple[int, ...]  # real tokens, unknown words as UNKNOWN
    padded: tuple[int, ...]  # ids + PADDING up to the context
    unknown: tuple[str, ...]
    dropped: int  # leading tokens cut to fit the context

    @property
    def length(self) -> int:
        return len(self.ids)


def encode_prompt(tokenizer: Tokenizer, context: int, text: str) -> Prompt:
    """Keep the last ``context`` tokens (the ones next to the prediction) of a long prompt."""
    words = split_words(text)
    ids = tokenizer.encode(text)
    dropped = max(0, len(ids) - context)
    words, ids = words[dropped:], ids[dropped:]
    padded = tuple(ids) + (tokenizer.padding_id,) * (context - len(ids))
    return Prompt(
        text=text,
        words=tuple(words),
        ids=tuple(ids),
        padded=padded,
        unknown=tuple(tokenizer.unknown_words(" ".join(words))),
        dropped=dropped,
    )


def display_words(prompt: Prompt, vocab: tuple[str, ...]) -> list[str]:
    """Token labels as typed, with words outside the vocabulary shown as UNKNOWN."""
    return [
        vocab[i] if vocab[i] == "UNKNOWN" else w
        for w, i in zip(prompt.words, prompt.ids, strict=True)
    ]
