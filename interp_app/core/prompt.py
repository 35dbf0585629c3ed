"""A prompt as the model sees it: its last tokens, padded to a fixed length.

The length is the model's context, but at most :data:`MAX_PROMPT_TOKENS`: an imported GPT-2
reads 1,024 positions, and padding every prompt to that would make each pass (and each
patching sweep, one pass per position) cost a hundred times the prompt's own length. The
article's runs (context 12) are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.tokenizer import TextTokenizer

MAX_PROMPT_TOKENS = 128


def window(context: int, cap: int = MAX_PROMPT_TOKENS) -> int:
    """How many tokens the app analyses (and pads to) for a model of this context."""
    return min(context, cap)


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model sees it: at most ``window`` tokens, padded to ``window``."""

    text: str
    words: tuple[str, ...]  # token labels as shown (chips), after truncation
    ids: tuple[int, ...]  # real tokens, unknown words as UNKNOWN
    padded: tuple[int, ...]  # ids + padding up to the window
    unknown: tuple[str, ...]  # typed words outside a word vocabulary
    dropped: int  # leading tokens cut to fit the window

    @property
    def length(self) -> int:
        return len(self.ids)


def encode_prompt(
    tokenizer: TextTokenizer, context: int, text: str, cap: int = MAX_PROMPT_TOKENS
) -> Prompt:
    """Keep the last ``window(context, cap)`` tokens (the ones next to the prediction)."""
    size = window(context, cap)
    pieces = tokenizer.pieces(text)
    dropped = max(0, len(pieces.ids) - size)
    ids, words = pieces.ids[dropped:], pieces.labels[dropped:]
    return Prompt(
        text=text,
        words=words,
        ids=ids,
        padded=ids + (tokenizer.padding_id,) * (size - len(ids)),
        unknown=tuple(w for w in pieces.unknown[dropped:] if w),
        dropped=dropped,
    )


def display_words(prompt: Prompt, vocab: tuple[str, ...] = ()) -> list[str]:
    """Token labels as shown: as typed, words outside a word vocabulary as UNKNOWN, the
    pieces of a sub-word tokenizer as cut from the text (``vocab``: kept for callers)."""
    return list(prompt.words)
