"""Everything the panels show for one selection, computed from one cached capture.

``resolve`` turns untrusted input (URL, clicks, typed text) into a valid selection plus the
notices that say what was ignored; ``compute_view`` gathers the numbers the figures draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from interp_app.core import analysis, causal
from interp_app.core.selection import (
    DEFAULT_CORRUPT,
    DEFAULT_PROMPT,
    MAX_TEXT_CHARS,
    Selection,
    pick_ablation,
    pick_head,
    pick_pos,
    pick_run,
    pick_step,
    shown,
)
from interp_app.core.store import Prompt, RunStore, encode_prompt
from training.checkpoint import CheckpointError
from training.tokenizer import PADDING, UNKNOWN

SPECIAL_TOKENS = (UNKNOWN, PADDING)  # never a default target


def prompt_notices(prompt: Prompt, context: int) -> list[str]:
    notes = []
    if prompt.dropped:
        notes.append(
            f"the prompt has {prompt.dropped + prompt.length} tokens, more than the context "
            f"({context}); analysing the last {prompt.length}"
        )
    if prompt.unknown:
        words = ", ".join(repr(w) for w in dict.fromkeys(prompt.unknown))
        notes.append(f"not in the vocabulary, shown as UNKNOWN: {words}")
    return notes


def bounded_text(value: object, what: str, notes: list[str]) -> str | None:
    """A typed text kept to its last ``MAX_TEXT_CHARS`` characters (the end is what the
    model predicts from); anything but a string counts as not given."""
    if value is None:
        return None
    if not isinstance(value, str):
        notes.append(f"the {what} {shown(value)} is not text; using the default")
        return None
    if len(value) > MAX_TEXT_CHARS:
        notes.append(
            f"the {what} has {len(value):,} characters; keeping its last {MAX_TEXT_CHARS:,}"
        )
        return value[-MAX_TEXT_CHARS:]
    return value


def default_target(logits: np.ndarray | None, vocab: tuple[str, ...]) -> str:
    """The most likely word (the first word without logits): never a special token, which
    the model may well rank first (``PADDING`` after ``apple is sweet``, a line's end)."""
    order = range(len(vocab)) if logits is None else np.argsort(-np.asarray(logits), kind="stable")
    words = (vocab[int(i)] for i in order if vocab[int(i)] not in SPECIAL_TOKENS)
    return next(words, vocab[0])


def run_reference(info) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference lines of ``valid-mean`` ablation for a run (see ``causal``)."""
    return causal.reference_batch(info.meta, info.tokenizer, info.model.context)


def resolve(store: RunStore, raw: dict[str, Any]) -> tuple[Selection | None, list[str]]:
    """A valid selection from raw values; every value that had to be replaced is reported."""
    notes: list[str] = []
    run, note = pick_run(store.runs(), raw.get("run"))
    if note:
        notes.append(note)
    if run is None:
        return None, notes
    info = store.info(run)
    steps = store.steps(run)
    if not steps:
        return None, [*notes, f"run {run!r} has no complete checkpoint yet"]
    step, note = pick_step(steps, raw.get("step"))
    if note:
        notes.append(note)
    text = bounded_text(raw.get("prompt"), "prompt", notes)
    if text is None or not str(text).strip():
        if text is not None:
            notes.append("the prompt was empty; showing the default prompt")
        text = DEFAULT_PROMPT
    prompt = encode_prompt(info.tokenizer, info.model.context, str(text))
    if prompt.length == 0:
        notes.append(f"the prompt {shown(text)} has no words; showing the default prompt")
        text = DEFAULT_PROMPT
        prompt = encode_prompt(info.tokenizer, info.model.context, text)
    notes.extend(prompt_notices(prompt, info.model.context))
    pos, note = pick_pos(prompt.length, raw.get("pos"))
    if note:
        notes.append(note)
    (layer, head), note = pick_head(info.model.n_layers, info.model.n_heads, raw.get("head"))
    if note:
        notes.append(note)
    ablate, mode, more = pick_ablation(
        info.model.n_layers, info.model.n_heads, raw.get("ablate"), raw.get("ablate_mode")
    )
    notes.extend(more)
    if mode in causal.REFERENCE_MODES and run_reference(info) is None:
        if ablate:
            notes.append(
                f"run {run!r} does not store its validation lines (only their fingerprint), "
                "so there is no reference set to average over; mean-ablating over this "
                "prompt instead"
            )
        mode = "mean"
    corrupt = bounded_text(raw.get("corrupt"), "corrupted prompt", notes) or DEFAULT_CORRUPT
    target = raw.get("target")
    if target not in info.tokenizer.vocab:
        try:
            logits = store.capture(run, step, prompt).logits[0, pos]
        except CheckpointError:
            logits = None
        top = default_target(logits, info.tokenizer.vocab)
        if target:
            notes.append(f"target {shown(target)} is not in the vocabulary; showing {top!r}")
        target = top
    sel = Selection(run, step, str(text), pos, target, layer, head, ablate, mode, corrupt)
    return sel, notes


@dataclass(frozen=True)
class View:
    """The numbers behind every panel for one selection (first prompt of the capture)."""

    words: list[str]  # displayed token labels, real positions only
    length: int
    target_id: int
    vocab: tuple[str, ...]
    pred_ids: np.ndarray
    pred_probs: np.ndarray
    metrics: dict[str, np.ndarray]  # name -> [L, H]
    patterns: np.ndarray  # [L, H, T, T], real positions only
    source_attr: np.ndarray  # [T] through the selected head
    comp_names: tuple[str, ...]
    comp_kinds: tuple[str, ...]
    comp_attr: np.ndarray  # [C] direct logit attributions (incl. LN bias last)
    logit: float  # the actual target logit
    lens_top: np.ndarray  # [L+1, T]
    lens_prob: np.ndarray  # [L+1, T]
    target_prob: float = 0.0  # P(target) of the shown (possibly ablated) model
    clean_probs: np.ndarray | None = None  # [V] before ablation (None: nothing ablated)


def display_words(prompt: Prompt, vocab: tuple[str, ...]) -> list[str]:
    """Token labels as typed, with words outside the vocabulary shown as UNKNOWN."""
    return [
        vocab[i] if vocab[i] == "UNKNOWN" else w
        for w, i in zip(prompt.words, prompt.ids, strict=True)
    ]


def compute_view(store: RunStore, sel: Selection, src: int = 0, k: int = 8) -> View:
    """Kept per (selection, source): scrubbing back and forth or many sessions on one server
    ask for the same views again."""
    return store.memo(sel.run, ("view", sel, src, k), lambda: _compute_view(store, sel, src, k))


def _compute_view(store: RunStore, sel: Selection, src: int, k: int) -> View:
    info = store.info(sel.run)
    prompt = encode_prompt(info.tokenizer, info.model.context, sel.prompt)
    cap = store.capture(sel.run, sel.step, prompt, sel.ablate, sel.mode)
    params = store.params(sel.run, sel.step)
    n = prompt.length
    target = info.tokenizer.vocab.index(sel.target)
    pred_ids, pred_probs = analysis.top_k(cap.logits[0, sel.pos], k)
    clean_probs = None
    if sel.ablate:
        clean = store.capture(sel.run, sel.step, prompt)
        clean_probs = analysis.softmax(np.asarray(clean.logits[0, sel.pos], np.float64))
    metrics = analysis.head_metrics(cap, params, sel.pos, target, n, src)
    graphdef, state = store.state(sel.run, sel.step)
    mask = causal.head_mask(sel.ablate, info.model.n_layers, info.model.n_heads)
    reference = run_reference(info) if sel.mode in causal.REFERENCE_MODES else None
    metrics["ablation"] = np.asarray(
        causal.ablation_effects(
            graphdef,
            state,
            jnp.asarray([prompt.padded]),
            mask,
            sel.mode,
            n,
            sel.pos,
            target,
            reference,
        )
    )
    comps, attr, ln_bias = analysis.direct_logit_attribution(cap, params, 0, sel.pos, target)
    lens_top, lens_prob = analysis.logit_lens(cap, params, info.model.ln_eps)
    words = display_words(prompt, info.tokenizer.vocab)
    return View(
        words=words,
        length=n,
        target_id=target,
        vocab=info.tokenizer.vocab,
        pred_ids=pred_ids,
        pred_probs=pred_probs,
        metrics=metrics,
        clean_probs=clean_probs,
        target_prob=float(analysis.softmax(np.asarray(cap.logits[0, sel.pos], np.float64))[target]),
        patterns=np.asarray(cap.patterns[0, :, :, :n, :n]),
        # an ablated head's output is a constant, not a mix of sources: nothing to split
        source_attr=np.zeros(n)
        if sel.head_name in sel.ablate
        else analysis.source_attributions(cap, params, 0, sel.layer, sel.head, sel.pos, target)[:n],
        comp_names=(*comps.names, "final LN bias"),
        comp_kinds=(*comps.kinds, "ln"),
        comp_attr=np.append(attr, ln_bias),
        logit=float(cap.logits[0, sel.pos, target]),
        lens_top=lens_top[:, :n],
        lens_prob=lens_prob[:, :n],
    )


def compute_patching(store: RunStore, sel: Selection) -> tuple[np.ndarray, np.ndarray, str] | str:
    """(heads [L, H], residual [L+1, T], answer) for patching the prompt into the corrupted
    one, or the reason it cannot be done (a corrupted prompt of another length, or two
    prompts whose logit differences are too close to normalise). Always on the unablated
    model: the selection's ablation is not applied here."""
    key = ("patch", sel.run, sel.step, sel.prompt, sel.pos, sel.target, sel.corrupt)
    return store.memo(sel.run, key, lambda: _compute_patching(store, sel))


def _compute_patching(store: RunStore, sel: Selection) -> tuple[np.ndarray, np.ndarray, str] | str:
    info = store.info(sel.run)
    clean = encode_prompt(info.tokenizer, info.model.context, sel.prompt)
    corrupt = encode_prompt(info.tokenizer, info.model.context, sel.corrupt)
    if corrupt.length != clean.length:
        return (
            f"The corrupted prompt has {corrupt.length} tokens and the prompt {clean.length}: "
            "patching needs the same number of tokens."
        )
    vocab = info.tokenizer.vocab
    graphdef, state = store.state(sel.run, sel.step)
    target = vocab.index(sel.target)
    corrupt_logits = np.asarray(store.capture(sel.run, sel.step, corrupt).logits[0, sel.pos])
    answer = next(int(i) for i in np.argsort(-corrupt_logits) if int(i) != target)
    result = causal.patching(
        graphdef,
        state,
        jnp.asarray([clean.padded]),
        jnp.asarray([corrupt.padded]),
        sel.pos,
        target,
        answer,
    )
    if not bool(result["normalised"]):
        m_clean, m_corrupt = float(result["clean"]), float(result["corrupt"])
        least = causal.PATCH_MIN_GAP * float(result["logit_scale"])
        return (
            f"The prompt and the corrupted prompt give almost the same logit difference "
            f"{sel.target!r} − {vocab[answer]!r} ({m_clean:+.4f} and {m_corrupt:+.4f}): a gap "
            f"of {abs(m_clean - m_corrupt):.1e}, not over {least:.1e} "
            f"({causal.PATCH_MIN_GAP:.1%} of the logit scale), is too close to normalise. "
            "Pick another target, corrupted prompt or step."
        )
    resid = np.asarray(result["resid"])[:, : clean.length]
    return np.asarray(result["heads"]), resid, vocab[answer]


def warm_up(store: RunStore) -> None:
    """Compile the capture and timeline passes and load the default run before serving, so
    the first page does not wait for XLA (a missing or broken run just skips this)."""
    try:
        sel, _ = resolve(store, {})
        if sel is None:
            return
        compute_view(store, sel)
        compute_patching(store, sel)
        info = store.info(sel.run)
        prompt = encode_prompt(info.tokenizer, info.model.context, sel.prompt)
        store.timeline(sel.run, prompt, sel.pos, info.tokenizer.vocab.index(sel.target))
    except (CheckpointError, ValueError, OSError):
        pass


@dataclass(frozen=True)
class Forward:
    """What the 3D forward view draws: the residual stream of every real position at every
    layer boundary, the attention between them, and what the selected position resembles."""

    words: list[str]
    rows: np.ndarray  # [L+1, T, D]: token + position embedding, then after each layer
    patterns: np.ndarray  # [L, H, T, T]
    final: np.ndarray  # [T, D] after the final LayerNorm
    wte: np.ndarray  # [V, D] token embeddings (tied: also the unembedding)
    vocab: tuple[str, ...]
    near_ids: np.ndarray  # [L+2, k] tokens by cosine: each boundary, then the final LN output
    near_cos: np.ndarray  # [L+2, k]
    pred_ids: np.ndarray  # [k] tokens by dot product with the final LN output (the logits)
    pred_dots: np.ndarray  # [k]


def compute_forward(store: RunStore, sel: Selection, k: int = 5) -> Forward:
    info = store.info(sel.run)
    prompt = encode_prompt(info.tokenizer, info.model.context, sel.prompt)
    cap = store.capture(sel.run, sel.step, prompt, sel.ablate, sel.mode)
    wte = store.params(sel.run, sel.step)["wte"]
    n = prompt.length
    rows = np.asarray(cap.resid[0, :, :n], np.float64)
    final = np.asarray(cap.final[0, :n], np.float64)
    near_ids, near_cos = analysis.cosine_ranking(
        np.concatenate([rows[:, sel.pos], final[sel.pos][None]]), wte, k
    )
    pred_ids, pred_dots = analysis.dot_ranking(final[sel.pos], wte, k)
    vocab = info.tokenizer.vocab
    return Forward(
        words=display_words(prompt, vocab),
        rows=rows,
        patterns=np.asarray(cap.patterns[0, :, :, :n, :n], np.float64),
        final=final,
        wte=np.asarray(wte, np.float64),
        vocab=vocab,
        near_ids=near_ids,
        near_cos=near_cos,
        pred_ids=pred_ids,
        pred_dots=pred_dots,
    )
