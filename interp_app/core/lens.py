"""The logit lens of a selection, apart from its view (``view.compute_view``): it reads
every layer boundary's residuals through the whole unembedding, for a panel at the bottom of
the page, so it is computed only when that panel draws (or the prefetcher is asked to)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp_app.core.analyzer import Analyzer
from interp_app.core.lean_step import lens_window, step_lens
from interp_app.core.prompt import display_words
from interp_app.core.selection import Selection


@dataclass(frozen=True)
class Lens:
    """The logit lens of one selection, apart from its :class:`View`: it multiplies every
    layer boundary's residuals by the whole unembedding (~0.4 s at the GPT-2-small shape),
    for a panel at the bottom of the page, so it is computed only when that panel draws."""

    top: np.ndarray  # [L+1, W] the top token's id at positions start .. start + W - 1
    top_words: tuple[tuple[str, ...], ...]  # [L+1][W] its word (not the whole vocabulary)
    prob: np.ndarray  # [L+1, W] its probability
    start: int  # the first position read (``lean_step.lens_window``: W end at the query)
    words: list[str]  # displayed token labels, real positions only
    length: int


def compute_lens(analyzer: Analyzer, sel: Selection) -> Lens:
    """The lens of the selection's (possibly ablated) pass at the positions ending at the
    query; kept per what it reads (its window of positions, not the query, target, head or
    source: a click on a head, a target or a position in the window finds it ready)."""
    start, _ = lens_window(sel.pos, analyzer.encode(sel.run, sel.prompt).length)
    key = ("lens", sel.run, sel.step, sel.prompt, start, sel.ablate, sel.mode)
    return analyzer.memo(sel.run, key, lambda: _lens(analyzer, sel))


def _lens(analyzer: Analyzer, sel: Selection) -> Lens:
    info = analyzer.store.info(sel.run)
    prompt = analyzer.encode(sel.run, sel.prompt)
    cap = analyzer.capture(sel.run, sel.step, prompt, sel.ablate, sel.mode)
    params = analyzer.store.params(sel.run, sel.step)
    top, prob, start = step_lens(
        cap, params, pos=sel.pos, length=prompt.length, eps=info.model.ln_eps
    )
    vocab = info.tokenizer.vocab
    top_words = tuple(tuple(vocab[i] for i in row) for row in top)
    words = display_words(prompt, vocab)
    return Lens(top, top_words, prob, start, words, prompt.length)
