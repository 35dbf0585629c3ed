"""Everything the panels show for one selection, computed through the public API.

``resolve`` turns untrusted input (URL, clicks, typed text) into a valid selection plus the
notices that say what was ignored; ``compute_view``, ``compute_lens``, ``compute_patching``,
``compute_timeline`` and ``compute_forward`` gather the numbers the figures draw, from the
same code a notebook calls (``api``, over the same ``Analyzer``), cached per selection.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from interp_app.core import causal
from interp_app.core.analyzer import SPECIAL_TOKENS, Analyzer, default_target
from interp_app.core.forward import Forward, compute_forward
from interp_app.core.head_attr import attr_through_head
from interp_app.core.heads import model_components
from interp_app.core.lens import Lens, compute_lens
from interp_app.core.prompt import Prompt, display_words, window
from interp_app.core.selection import (
    MAX_TEXT_CHARS,
    Selection,
    pick_ablation,
    pick_head,
    pick_pos,
    pick_run,
    pick_step,
    run_prompts,
    shown,
)
from training.checkpoint import CheckpointError
from training.hf_tokenizer import PART

__all__ = [
    "SPECIAL_TOKENS",
    "Forward",
    "Lens",
    "View",
    "compute_forward",
    "compute_lens",
    "compute_patching",
    "compute_timeline",
    "compute_view",
    "default_target",
    "resolve",
    "warm_up",
]


def prompt_notices(prompt: Prompt, context: int) -> list[str]:
    notes = []
    if prompt.dropped:
        limit = (
            f"the context ({context})"
            if window(context) == context
            else f"the app analyses ({window(context)} of the model's context of {context})"
        )
        notes.append(
            f"the prompt has {prompt.dropped + prompt.length} tokens, more than {limit}; "
            f"analysing the last {prompt.length}"
        )
    if any(PART in w for w in prompt.words):
        notes.append(f"some characters are split over several tokens (each part marked {PART}k/n)")
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


def _prompt(analyzer: Analyzer, run: str, raw: dict[str, Any], notes: list[str]) -> Prompt:
    """The typed prompt, or the run's default one when it is empty or has no words."""
    default = run_prompts(analyzer.store.info(run).meta)[0]
    text = bounded_text(raw.get("prompt"), "prompt", notes)
    if text is None or not str(text).strip():
        if text is not None:
            notes.append("the prompt was empty; showing the default prompt")
        text = default
    prompt = analyzer.encode(run, str(text))
    if prompt.length == 0:
        notes.append(f"the prompt {shown(text)} has no words; showing the default prompt")
        prompt = analyzer.encode(run, default)
    notes.extend(prompt_notices(prompt, analyzer.store.info(run).model.context))
    return prompt


def _mode(analyzer: Analyzer, run: str, ablate: tuple[str, ...], mode: str) -> tuple[str, list]:
    """A mode the run can ablate in: ``valid-mean`` needs the run's validation lines."""
    if mode not in causal.REFERENCE_MODES or analyzer.reference_lines(run) is not None:
        return mode, []
    if analyzer.store.info(run).meta.get("train") is None:
        note = (
            f"run {run!r} was not trained by interp-train on a known corpus, so mean ablation "
            "over validation lines has no reference text to average over; mean-ablating over "
            "this prompt instead"
        )
    else:
        note = (
            f"run {run!r} does not store its validation lines (only their fingerprint), so "
            "there is no reference set to average over; mean-ablating over this prompt instead"
        )
    return "mean", [note] if ablate else []


def _target(analyzer: Analyzer, run: str, step: int, prompt: Prompt, pos: int, raw) -> tuple:
    """(target, notes): the asked word if in the vocabulary, else the analyzer's default."""
    target = raw.get("target")
    tokenizer = analyzer.store.info(run).tokenizer
    if isinstance(target, str) and target in tokenizer.index:
        return target, []
    try:
        top = analyzer.default_target(run, step, prompt, pos)
    except CheckpointError:  # an unreadable step: the page says so elsewhere
        top = default_target(None, tokenizer.vocab, tokenizer.special)
    notes = [f"target {shown(target)} is not in the vocabulary; showing {top!r}"] if target else []
    return top, notes


def resolve(analyzer: Analyzer, raw: dict[str, Any]) -> tuple[Selection | None, list[str]]:
    """A valid selection from raw values; every value that had to be replaced is reported.
    The model runs (through the analyzer's cached pass) only for a default target."""
    notes: list[str] = []
    store = analyzer.store
    run, note = pick_run(store.runs(), raw.get("run"))
    notes += [note] if note else []
    if run is None:
        return None, notes
    info = store.info(run)
    steps = store.steps(run)
    if not steps:
        return None, [*notes, f"run {run!r} has no complete checkpoint yet"]
    step, note = pick_step(steps, raw.get("step"))
    notes += [note] if note else []
    prompt = _prompt(analyzer, run, raw, notes)
    pos, note = pick_pos(prompt.length, raw.get("pos"))
    notes += [note] if note else []
    (layer, head), note = pick_head(info.model.n_layers, info.model.n_heads, raw.get("head"))
    notes += [note] if note else []
    ablate, mode, more = pick_ablation(
        info.model.n_layers, info.model.n_heads, raw.get("ablate"), raw.get("ablate_mode")
    )
    mode, fallback = _mode(analyzer, run, ablate, mode)
    notes += more + fallback
    default_corrupt = run_prompts(info.meta)[1]
    corrupt = bounded_text(raw.get("corrupt"), "corrupted prompt", notes) or default_corrupt
    target, more = _target(analyzer, run, step, prompt, pos, raw)
    notes += more
    sel = Selection(run, step, prompt.text, pos, target, layer, head, ablate, mode, corrupt)
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
    target_prob: float = 0.0  # P(target) of the shown (possibly ablated) model
    clean_probs: np.ndarray | None = None  # [V] before ablation (None: nothing ablated)
    # what a head click's token attributions read besides the patterns, so that a click
    # never needs the step's capture (at GPT-2 size a forward pass, when the prefetcher's
    # neighbours have pushed it out): every head's values at real positions, [L, H, T, dh],
    # and the final LayerNorm's 1/std at the query (``_view`` sets both; None in hand-made
    # views, which no head click reads)
    values: np.ndarray | None = None
    query_inv_std: float | None = None


def compute_view(
    analyzer: Analyzer, sel: Selection, src: int = 0, k: int = 8, ablation: bool = False
) -> View:
    """Kept per (selection, source): scrubbing back and forth or many sessions on one server
    ask for the same views again. The key holds only what the view reads: not the corrupted
    prompt (the patching panel's), and the source clamped as the metrics clamp it.

    What does not depend on the head is computed once per (selection but the head) and the
    head's token attributions on top (:func:`attr_through_head`, from the values the view
    keeps): a head click costs one head's product, not the step's metrics or a capture.
    ``ablation``: with the ``ablation`` head metric (a pass per head: only when the head grid
    shows it)."""
    sel, src = sel.with_(corrupt=""), min(max(src, 0), sel.pos)
    key = ("view", sel, src, k, ablation)
    return analyzer.memo(sel.run, key, lambda: _with_head(analyzer, sel, src, k, ablation))


def _with_head(analyzer: Analyzer, sel: Selection, src: int, k: int, ablation: bool) -> View:
    anyhead = sel.with_(layer=0, head=0)
    base = analyzer.memo(
        sel.run, ("view-heads", anyhead, src, k), lambda: _view(analyzer, anyhead, src, k)
    )
    heads = base.metrics
    if ablation:
        prompt = analyzer.encode(sel.run, sel.prompt)
        effects = analyzer.ablation_effects(
            sel.run, sel.step, prompt, sel.pos, base.target_id, sel.ablate, sel.mode
        )
        heads = {**heads, "ablation": effects.copy()}
    return replace(base, metrics=heads, source_attr=_source_attr(analyzer, sel, base))


def _source_attr(analyzer: Analyzer, sel: Selection, base: View) -> np.ndarray:
    """[T] the selected head's per-source attributions (zero when it is ablated: its output
    is a constant, not a mix of sources, as ``Run.metrics`` says)."""
    if sel.head_name in sel.ablate:
        return np.zeros(base.length)
    assert base.values is not None and base.query_inv_std is not None  # ``_view`` sets both
    return attr_through_head(
        base.patterns[sel.layer, sel.head, sel.pos],
        base.values[sel.layer, sel.head],
        base.query_inv_std,
        analyzer.store.params(sel.run, sel.step),
        sel.layer,
        sel.head,
        base.target_id,
    )


def _view(analyzer: Analyzer, sel: Selection, src: int, k: int) -> View:
    """The step's metrics for the selection (a source past the query reads the query)."""
    info = analyzer.store.info(sel.run)
    prompt = analyzer.encode(sel.run, sel.prompt)
    target = info.tokenizer.index[sel.target]
    m = analyzer.step_metrics(
        sel.run,
        sel.step,
        prompt,
        pos=sel.pos,
        target=target,
        head=(sel.layer, sel.head),
        src=min(max(src, 0), sel.pos),
        ablate=sel.ablate,
        mode=sel.mode,
        ablation=False,
        lens_window=True,
    )
    n = prompt.length
    cap = analyzer.capture(sel.run, sel.step, prompt, sel.ablate, sel.mode)
    order = np.argsort(-m["probs"], kind="stable")[:k]
    names, kinds = model_components(info.model)
    return View(
        words=display_words(prompt, info.tokenizer.vocab),
        length=n,
        target_id=target,
        vocab=info.tokenizer.vocab,
        pred_ids=order,
        pred_probs=m["probs"][order],
        metrics=m["heads"],
        patterns=np.asarray(cap.patterns[0, :, :, :n, :n]),
        source_attr=m["token_attr"][:n],
        comp_names=(
            *names,
            "final LN bias" + (" + unembed bias" if info.model.unembed_bias else ""),
        ),
        comp_kinds=(*kinds, "ln"),
        comp_attr=np.append(m["attr"], m["ln_bias"]),
        logit=m["logit"],
        target_prob=float(m["probs"][target]),
        clean_probs=m["clean_probs"],
        values=np.ascontiguousarray(cap.values[0, :, :, :n]),  # its own n rows when n < T
        query_inv_std=float(cap.final_inv_std[0, sel.pos]),
    )


def compute_patching(
    analyzer: Analyzer, sel: Selection
) -> tuple[np.ndarray, np.ndarray, str] | str:
    """(heads [L, H], residual [L+1, T], answer) for patching the prompt into the corrupted
    one, or the reason it cannot be done (a corrupted prompt of another length, or two
    prompts whose logit differences are too close to normalise). Always on the unablated
    model: the selection's ablation is not applied here."""
    key = ("patch", sel.run, sel.step, sel.prompt, sel.pos, sel.target, sel.corrupt)
    return analyzer.memo(sel.run, key, lambda: _patching(analyzer, sel))


PATCHING_BYTES = 1024**3  # the sweep's logits held at once (``causal.patching`` vmaps it)


def patching_bytes(model: Any, tokens: int) -> int:
    """Bytes of logits ``causal.patching`` holds at once: one pass per head and per residual
    vector, each with logits at every position (float32)."""
    passes = model.n_layers * model.n_heads + (model.n_layers + 1) * tokens
    return passes * tokens * model.vocab_size * 4


def _patching(analyzer: Analyzer, sel: Selection) -> tuple[np.ndarray, np.ndarray, str] | str:
    clean = analyzer.encode(sel.run, sel.prompt)
    corrupt = analyzer.encode(sel.run, sel.corrupt)
    model = analyzer.store.info(sel.run).model
    need = patching_bytes(model, len(clean.padded))
    if need > PATCHING_BYTES:
        return (
            f"Activation patching is not run in the page at this size: its sweep patches "
            f"{model.n_layers * model.n_heads + (model.n_layers + 1) * len(clean.padded):,} "
            f"passes over {len(clean.padded)} tokens at once, {need / 1024**3:,.0f} GB of "
            f"logits (at most {PATCHING_BYTES / 1024**3:.0f} GB)."
        )
    if corrupt.length != clean.length:
        return (
            f"The corrupted prompt has {corrupt.length} tokens and the prompt {clean.length}: "
            "patching needs the same number of tokens."
        )
    tokenizer = analyzer.store.info(sel.run).tokenizer
    vocab, target = tokenizer.vocab, tokenizer.index[sel.target]
    result = analyzer.patching(sel.run, sel.step, clean, corrupt, sel.pos, target, None)
    answer = vocab[result["answer"]]
    if not bool(result["normalised"]):
        m_clean, m_corrupt = float(result["clean"]), float(result["corrupt"])
        least = causal.PATCH_MIN_GAP * float(result["logit_scale"])
        return (
            f"The prompt and the corrupted prompt give almost the same logit difference "
            f"{sel.target!r} − {answer!r} ({m_clean:+.4f} and {m_corrupt:+.4f}): a gap "
            f"of {abs(m_clean - m_corrupt):.1e}, not over {least:.1e} "
            f"({causal.PATCH_MIN_GAP:.1%} of the logit scale), is too close to normalise. "
            "Pick another target, corrupted prompt or step."
        )
    return result["heads"], result["resid"], answer


def compute_timeline(
    analyzer: Analyzer, sel: Selection, src: int
) -> tuple[list[int], dict[str, np.ndarray], list[int]]:
    """(steps, metric -> [S, ...], unreadable steps): every head metric and the prediction
    ("probs") at every readable step, for the selection's prompt, query and ablation."""
    prompt = analyzer.encode(sel.run, sel.prompt)
    target = analyzer.store.info(sel.run).tokenizer.index[sel.target]
    return analyzer.timeline(sel.run, prompt, sel.pos, target, src, sel.ablate, sel.mode)


def warm_up(analyzer: Analyzer) -> None:
    """Compile the capture and timeline passes and load the default run before serving, so
    the first page does not wait for XLA (a missing or broken run just skips this)."""
    try:
        sel, _ = resolve(analyzer, {})
        if sel is None:
            return
        compute_view(analyzer, sel)
        compute_patching(analyzer, sel)  # a message only, past PATCHING_BYTES
        compute_timeline(analyzer, sel, 0)
    except (CheckpointError, ValueError, OSError):
        pass
