"""Interventions: ablate heads, patch activations from a clean prompt into a corrupted one.

Every experiment is an :class:`~training.model.gpt.Intervention` (which values to keep, what to
put instead) fed to the one capture pass; sweeps over heads or positions map that pass over
a stack of one-hot masks with ``jax.vmap``, so a whole heatmap is one compiled call.
"""

from __future__ import annotations

from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from training.corpus import builtin_corpus
from training.model.dropout import NO_DROPOUT
from training.model.gpt import GPT, Capture, Intervention
from training.model.interp import Recorder
from training.tokenizer import TextTokenizer

MODES = ("zero", "mean", "valid-mean")
MODE_LABELS = {
    "zero": "zero",
    "mean": "mean over this prompt",
    "valid-mean": "mean over the validation lines",
}
REFERENCE_MODES = ("valid-mean",)  # modes that need the run's reference lines
REFERENCE_LINES = 256  # at most this many validation lines (the first ones) make the mean


def ablated_as(mode: str) -> str:
    """``zero-ablated``, ``mean-ablated (mean over this prompt)``: how titles name a mode."""
    if mode == "zero":
        return "zero-ablated"
    return f"mean-ablated ({MODE_LABELS.get(mode, mode)})"


@cache
def _builtin_valid() -> tuple[str, tuple[str, ...]]:
    corpus = builtin_corpus()
    return corpus.fingerprint(), corpus.valid


def reference_lines(meta: object) -> tuple[str, ...] | None:
    """The run's validation lines, the reference set of ``valid-mean`` ablation, when they
    can be known. ``run.json`` keeps only the corpus's fingerprint (sha256 of its training
    and validation lines), not the lines: so these are the built-in corpus's validation
    lines when the run's fingerprint is the built-in corpus's, and None otherwise (a custom
    corpus, or the built-in one with another validation file)."""
    corpus = meta.get("corpus") if isinstance(meta, dict) else None
    fingerprint, valid = _builtin_valid()
    if isinstance(corpus, dict) and corpus.get("sha256") == fingerprint:
        return valid
    return None


def reference_batch(
    meta: object, tokenizer: TextTokenizer, context: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(tokens [N, context] int32, mask [N, context] float32: 1 at real positions) of the
    first ``REFERENCE_LINES`` reference lines, encoded as training validated on them (the
    first ``context`` tokens, padded); None when the run's lines cannot be known."""
    lines = reference_lines(meta)
    if not lines:
        return None
    lines = lines[:REFERENCE_LINES]
    tokens = np.full((len(lines), context), tokenizer.padding_id, np.int32)
    mask = np.zeros((len(lines), context), np.float32)
    for i, line in enumerate(lines):
        ids = tokenizer.encode(line)[:context]
        tokens[i, : len(ids)] = ids
        mask[i, : len(ids)] = 1.0
    return tokens, mask


def _run(graphdef, params, tokens, iv: Intervention | None) -> Capture:
    return nnx.merge(graphdef, params)(tokens, capture=True, intervention=iv)


def reference_means(graphdef, params, ref_tokens: jax.Array, ref_mask: jax.Array) -> jax.Array:
    """[L, H, D]: each head's output averaged over every real position of every reference
    line (``ref_tokens`` [N, T], ``ref_mask`` [N, T] with 1 at real positions), from the
    clean model with these parameters."""
    head_out = _run(graphdef, params, ref_tokens, None).head_out  # [N, L, H, T, D]
    w = ref_mask.astype(head_out.dtype)[:, None, None, :, None]
    return (head_out * w).sum((0, 3)) / jnp.maximum(w.sum((0, 3)), 1.0)


def ablation(
    clean: Capture,
    ablated: jax.Array,
    mode: str,
    length: jax.Array,
    reference: jax.Array | None = None,
) -> Intervention:
    """Heads with ``ablated[l, h] == 1`` replaced by a constant, depending on ``mode``:

    * ``zero``: the zero vector;
    * ``mean``: the head's own output averaged over this prompt's ``length`` real positions
      (one vector per head, the same at every position);
    * ``valid-mean``: the conventional mean ablation: the head's output averaged over a
      reference set, here every position of the run's validation lines (``reference``,
      [L, H, D], from :func:`reference_means`); it does not depend on the prompt.

    The means come from clean (unablated) runs, also when several heads are ablated
    together, so ablating one head never changes the value put in for another.
    """
    head_out = clean.head_out  # [B, L, H, T, D]
    t = head_out.shape[3]
    n_layers = head_out.shape[1]
    if mode == "mean":
        real = (jnp.arange(t) < length).astype(head_out.dtype)[None, None, None, :, None]
        mean = (head_out * real).sum(3, keepdims=True) / jnp.maximum(real.sum(), 1.0)
        value = jnp.broadcast_to(mean, head_out.shape)
    elif mode == "valid-mean":
        if reference is None:
            raise ValueError("valid-mean ablation needs the reference means")
        value = jnp.broadcast_to(reference[None, :, :, None, :], head_out.shape)
    elif mode == "zero":
        value = jnp.zeros_like(head_out)
    else:
        raise ValueError(f"unknown ablation mode {mode!r}")
    b, d = head_out.shape[0], head_out.shape[-1]
    return Intervention(
        head_keep=1.0 - ablated.astype(jnp.float32),
        head_value=value,
        resid_keep=jnp.ones((n_layers + 1, t), jnp.float32),
        resid_value=jnp.zeros((b, n_layers + 1, t, d), jnp.float32),
    )


def mode_means(graphdef, params, mode: str, reference) -> jax.Array | None:
    """The reference means a mode needs from ``reference`` = (tokens [N, T], mask [N, T])."""
    if mode not in REFERENCE_MODES:
        return None
    if reference is None:
        raise ValueError(f"{mode} ablation needs the run's reference lines")
    return reference_means(graphdef, params, *reference)


@partial(jax.jit, static_argnums=(0, 4))
def ablated_capture(
    graphdef, params, tokens, ablated, mode: str, length, reference=None
) -> Capture:
    """The capture with ``ablated`` heads ablated; ``reference`` = (tokens [N, T], mask
    [N, T]) of the reference lines, needed (only) by the ``valid-mean`` mode."""
    clean = _run(graphdef, params, tokens, None)
    means = mode_means(graphdef, params, mode, reference)
    return _run(graphdef, params, tokens, ablation(clean, ablated, mode, length, means))


def _log_prob(cap: Capture, pos, target):
    return jax.nn.log_softmax(cap.logits[0, pos])[target]


@partial(jax.jit, static_argnums=(0, 4))
def ablation_effects(
    graphdef, params, tokens, base_ablated, mode: str, length, pos, target, reference=None
):
    """[L, H]: change in log P(target) when each head alone is ablated on top of ``base``
    (``reference``: as for :func:`ablated_capture`)."""
    means = mode_means(graphdef, params, mode, reference)
    return effects(graphdef, params, tokens, base_ablated, mode, length, pos, target, means)


def _stacked_blocks(model: GPT) -> tuple[nnx.GraphDef, nnx.State]:
    """The blocks' one graph definition and their parameters stacked on a leading L axis, so
    one compiled block body runs any range of layers (``jax.lax.scan``)."""
    parts = [nnx.split(block) for block in model.blocks]
    return parts[0][0], jax.tree.map(lambda *xs: jnp.stack(xs), *(state for _, state in parts))


def _log_prob_at(model: GPT, x: jax.Array, pos, target) -> jax.Array:
    """log P(target) at ``pos`` from the last residual stream [1, T, D], unembedding that one
    position only (the other T-1 rows of [T, V] logits are never computed)."""
    final, _ = model.ln_f(x[0, pos])
    return jax.nn.log_softmax(model.unembed(final[None])[0])[target]


def effects(graphdef, params, tokens, base_ablated, mode: str, length, pos, target, means=None):
    """Un-jitted :func:`ablation_effects`, for use inside other mapped passes; ``means`` are
    the reference means of the ``valid-mean`` mode ([L, H, D], :func:`mode_means`).

    Ablating head (l, h) on top of ``base`` changes nothing before layer l, so each pass
    starts from the base run's residual stream entering layer l and runs only the blocks
    from l on (skipped blocks are a ``lax.cond``): half the work of full passes. The passes
    run one layer's H heads at a time, so memory does not grow with L*H, and read only
    log P(target) at ``pos``."""
    model = nnx.merge(graphdef, params)
    clean = model(tokens, capture=True)
    n_layers, n_heads = base_ablated.shape
    base = base_ablated.astype(jnp.float32)
    base_run = model(tokens, capture=True, intervention=ablation(clean, base, mode, length, means))
    block_def, stacked = _stacked_blocks(model)

    def one_head(start, ablated):
        rec = Recorder(False, ablation(clean, ablated, mode, length, means))

        def layer(x, xs):
            i, state = xs
            block = nnx.merge(block_def, state)
            run = lambda x: block(x, i, "fast", NO_DROPOUT, rec)  # noqa: E731
            return jax.lax.cond(i >= start, run, lambda x: x, x), None

        x, _ = jax.lax.scan(layer, base_run.resid[:, start], (jnp.arange(n_layers), stacked))
        return _log_prob_at(model, x, pos, target)

    def one_layer(start):
        heads = jax.nn.one_hot(start * n_heads + jnp.arange(n_heads), n_layers * n_heads)
        masks = jnp.maximum(heads.reshape(n_heads, n_layers, n_heads), base)
        return jax.vmap(lambda m: one_head(start, m))(masks)

    each = jax.lax.map(one_layer, jnp.arange(n_layers))  # [L, H]
    return each - _log_prob_at(model, base_run.resid[:, -1], pos, target)


def _logit_diff(cap: Capture, pos, target, answer):
    return cap.logits[0, pos, target] - cap.logits[0, pos, answer]


# Patching divides by the gap between the two prompts' logit differences. Below this share of
# the logit scale (the largest |logit| of the four read, at least 1) the gap is not
# normalised: float32 puts an error of about 2e-7 x that scale on each patched logit
# difference (measured against a float64 forward on the default run), so at this gap a cell
# is still good to 2e-4, well below the two decimals it prints; but a smaller gap means the
# model barely tells the prompts apart for this pair, and "fraction of the gap restored"
# turns into ratios of near-equal numbers (-6 to 4 on the default run around step 2,000,
# with gaps of 1e-4 to 4e-4 logits).
PATCH_MIN_GAP = 1e-3


def normalisable(m_clean, m_corrupt, logit_scale):
    """Whether the gap between the clean and corrupted logit differences is large enough to
    normalise by (see ``PATCH_MIN_GAP``); numpy and jax values alike."""
    return abs(m_clean - m_corrupt) > PATCH_MIN_GAP * logit_scale


def _patch_ends(clean: Capture, corrupt: Capture, pos, target, answer) -> dict:
    """The two prompts' logit differences, the logit scale, whether their gap can be
    normalised by (:func:`normalisable`) and the divisor of every patched score."""
    m_clean = _logit_diff(clean, pos, target, answer)
    m_corrupt = _logit_diff(corrupt, pos, target, answer)
    read = jnp.stack([c.logits[0, pos, i] for c in (clean, corrupt) for i in (target, answer)])
    logit_scale = jnp.maximum(jnp.abs(read).max(), 1.0)
    ok = normalisable(m_clean, m_corrupt, logit_scale)
    return {
        "clean": m_clean,
        "corrupt": m_corrupt,
        "logit_scale": logit_scale,
        "normalised": ok,
        "scale": jnp.where(ok, m_clean - m_corrupt, 1.0),
    }


@partial(jax.jit, static_argnums=0)
def patching(graphdef, params, clean_tokens, corrupt_tokens, pos, target, answer):
    """Normalised logit difference (clean = 1, corrupted = 0) after patching from clean into
    corrupted: each head's output ([L, H]) and each residual vector ([L+1, T]).

    Always on the unablated model. ``normalised`` is False when the two prompts' logit
    differences are too close to normalise by (:func:`normalisable`); ``heads`` and
    ``resid`` are then the raw changes (patched - corrupted, in logits), not fractions.
    """
    clean = _run(graphdef, params, clean_tokens, None)
    corrupt = _run(graphdef, params, corrupt_tokens, None)
    ends = _patch_ends(clean, corrupt, pos, target, answer)
    m_corrupt, scale = ends.pop("corrupt"), ends.pop("scale")
    n_layers, n_heads = clean.head_out.shape[1:3]
    t = clean.head_out.shape[3]
    none = Intervention(
        head_keep=jnp.ones((n_layers, n_heads)),
        head_value=clean.head_out,
        resid_keep=jnp.ones((n_layers + 1, t)),
        resid_value=clean.resid,
    )

    def score(iv):
        return (
            _logit_diff(_run(graphdef, params, corrupt_tokens, iv), pos, target, answer) - m_corrupt
        ) / scale

    heads = jax.vmap(lambda m: score(none.replace(head_keep=1.0 - m)))(
        jnp.eye(n_layers * n_heads).reshape(-1, n_layers, n_heads)
    ).reshape(n_layers, n_heads)
    resid = jax.vmap(lambda m: score(none.replace(resid_keep=1.0 - m)))(
        jnp.eye((n_layers + 1) * t).reshape(-1, n_layers + 1, t)
    ).reshape(n_layers + 1, t)
    return {"heads": heads, "resid": resid, "corrupt": m_corrupt, **ends}


# Patching in parts, for background jobs: the same numbers as ``patching``, a layer at a time.
# A patch at layer l leaves the corrupted run unchanged before l, so each patched pass starts
# from the corrupted residual stream entering l and runs only the blocks from l on, and reads
# the logits at ``pos`` only: a GPT-2-small-shaped sweep is 1,808 passes, whose full logits
# (46 GB) ``patching`` cannot hold at once.


def patching_base(clean: Capture, corrupt: Capture, pos, target, answer) -> dict:
    """What every part of a layer-wise patching needs, from the two prompts' captures (the
    app's cached passes): :func:`patching`'s scalars (clean, corrupt, logit_scale,
    normalised, scale), the clean head outputs and residual streams and the corrupted
    residual streams."""
    return {
        **_patch_ends(clean, corrupt, pos, target, answer),
        "clean_heads": clean.head_out,
        "clean_resid": clean.resid,
        "corrupt_resid": corrupt.resid,
    }


def _logit_diff_at(model: GPT, x: jax.Array, pos, target, answer) -> jax.Array:
    """The logit difference at ``pos`` from the last residual stream [1, T, D]."""
    final, _ = model.ln_f(x[0, pos])
    logits = model.unembed(final[None])[0]
    return logits[target] - logits[answer]


PATCH_POSITIONS = 32  # residual positions per part: a GPT-2-small-shaped part takes ~40 s
PATCH_BATCH = 16  # patched passes run at once (vmapped) inside a part; more was no faster


def patch_parts(n_layers: int, tokens: int) -> list[tuple[int, int]]:
    """The parts of a layer-wise patching: (layer boundary, first position), the last
    boundary first (its passes are the shortest, so the first parts come soonest)."""
    width = min(PATCH_POSITIONS, tokens)
    layers = range(n_layers, -1, -1)
    return [(layer, first) for layer in layers for first in range(0, tokens, width)]


@partial(jax.jit, static_argnums=0)
def patching_part(graphdef, params, base, layer, first, pos, target, answer):
    """One part of :func:`patching`, from :func:`patching_base`'s ``base``: {"heads": [H],
    each head of ``layer`` (zeros past the last layer, and in every part but the layer's
    first), "resid": [W], the residual vector entering ``layer`` (L: after the last block)
    at positions ``first`` .. ``first`` + W - 1 (W = ``PATCH_POSITIONS``, at most T; past
    the end: zeros)}. ``layer`` and ``first`` are traced: one compilation serves all."""
    model = nnx.merge(graphdef, params)
    block_def, stacked = _stacked_blocks(model)
    clean_heads, clean_resid = base["clean_heads"], base["clean_resid"]
    n_layers, n_heads, t = clean_heads.shape[1], clean_heads.shape[2], clean_heads.shape[3]
    start = base["corrupt_resid"][:, layer]  # [1, T, D]

    def score(x, rec: Recorder) -> jax.Array:
        def one(x, xs):
            i, state = xs
            block = nnx.merge(block_def, state)
            run = lambda x: block(x, i, "fast", NO_DROPOUT, rec)  # noqa: E731
            return jax.lax.cond(i >= layer, run, lambda x: x, x), None

        x, _ = jax.lax.scan(one, x, (jnp.arange(n_layers), stacked))
        diff = _logit_diff_at(model, x, pos, target, answer)
        return (diff - base["corrupt"]) / base["scale"]

    def head(h):
        patched = jax.nn.one_hot(layer * n_heads + h, n_layers * n_heads)
        iv = Intervention(
            head_keep=1.0 - patched.reshape(n_layers, n_heads),
            head_value=clean_heads,
            resid_keep=jnp.ones((n_layers + 1, t)),
            resid_value=clean_resid,
        )
        return score(start, Recorder(False, iv))

    def position(p):
        p = jnp.minimum(p, t - 1)
        return score(start.at[:, p].set(clean_resid[:, layer, p]), Recorder(False, None))

    def heads():
        return jax.lax.map(head, jnp.arange(n_heads), batch_size=PATCH_BATCH)

    no_heads = lambda: jnp.zeros(n_heads)  # noqa: E731
    each = jax.lax.cond((first == 0) & (layer < n_layers), heads, no_heads)
    where = first + jnp.arange(min(PATCH_POSITIONS, t))
    resid = jax.lax.map(position, where, batch_size=PATCH_BATCH)
    return {"heads": each, "resid": jnp.where(where < t, resid, 0.0)}
