"""Interventions: ablate heads, patch activations from a clean prompt into a corrupted one.

Every experiment is an :class:`~training.model.Intervention` (which values to keep, what to
put instead) fed to the one capture pass; sweeps over heads or positions map that pass over
a stack of one-hot masks with ``jax.vmap``, so a whole heatmap is one compiled call.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from training.model import Capture, Intervention

MODES = ("zero", "mean")


def _run(graphdef, params, tokens, iv: Intervention | None) -> Capture:
    return nnx.merge(graphdef, params)(tokens, capture=True, intervention=iv)


def ablation(clean: Capture, ablated: jax.Array, mode: str, length: jax.Array) -> Intervention:
    """Heads with ``ablated[l, h] == 1`` replaced by zero, or by their mean over the prompt.

    The means come from the clean (unablated) run, also when several heads are ablated
    together, as TransformerLens' mean ablation does.
    """
    head_out = clean.head_out  # [B, L, H, T, D]
    t = head_out.shape[3]
    n_layers = head_out.shape[1]
    if mode == "mean":
        real = (jnp.arange(t) < length).astype(head_out.dtype)[None, None, None, :, None]
        mean = (head_out * real).sum(3, keepdims=True) / jnp.maximum(real.sum(), 1.0)
        value = jnp.broadcast_to(mean, head_out.shape)
    else:
        value = jnp.zeros_like(head_out)
    b, d = head_out.shape[0], head_out.shape[-1]
    return Intervention(
        head_keep=1.0 - ablated.astype(jnp.float32),
        head_value=value,
        resid_keep=jnp.ones((n_layers + 1, t), jnp.float32),
        resid_value=jnp.zeros((b, n_layers + 1, t, d), jnp.float32),
    )


@partial(jax.jit, static_argnums=(0, 4))
def ablated_capture(graphdef, params, tokens, ablated, mode: str, length) -> Capture:
    clean = _run(graphdef, params, tokens, None)
    return _run(graphdef, params, tokens, ablation(clean, ablated, mode, length))


def _log_prob(cap: Capture, pos, target):
    return jax.nn.log_softmax(cap.logits[0, pos])[target]


@partial(jax.jit, static_argnums=(0, 4))
def ablation_effects(graphdef, params, tokens, base_ablated, mode: str, length, pos, target):
    """[L, H]: change in log P(target) when each head alone is ablated on top of ``base``."""
    return effects(graphdef, params, tokens, base_ablated, mode, length, pos, target)


def effects(graphdef, params, tokens, base_ablated, mode: str, length, pos, target):
    """Un-jitted :func:`ablation_effects`, for use inside other mapped passes."""
    clean = _run(graphdef, params, tokens, None)
    n_layers, n_heads = base_ablated.shape
    base_iv = ablation(clean, base_ablated, mode, length)
    base_lp = _log_prob(_run(graphdef, params, tokens, base_iv), pos, target)
    eye = jnp.eye(n_layers * n_heads).reshape(-1, n_layers, n_heads)

    def one(mask):
        both = jnp.maximum(mask, base_ablated.astype(jnp.float32))
        return _log_prob(
            _run(graphdef, params, tokens, ablation(clean, both, mode, length)), pos, target
        )

    return (jax.vmap(one)(eye) - base_lp).reshape(n_layers, n_heads)


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
    m_clean = _logit_diff(clean, pos, target, answer)
    m_corrupt = _logit_diff(corrupt, pos, target, answer)
    read = jnp.stack([c.logits[0, pos, i] for c in (clean, corrupt) for i in (target, answer)])
    logit_scale = jnp.maximum(jnp.abs(read).max(), 1.0)
    ok = normalisable(m_clean, m_corrupt, logit_scale)
    scale = jnp.where(ok, m_clean - m_corrupt, 1.0)
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
    return {
        "heads": heads,
        "resid": resid,
        "clean": m_clean,
        "corrupt": m_corrupt,
        "logit_scale": logit_scale,
        "normalised": ok,
    }


def head_mask(names: tuple[str, ...], n_layers: int, n_heads: int) -> np.ndarray:
    from interp_app.analysis import parse_head

    mask = np.zeros((n_layers, n_heads), np.float32)
    for name in names:
        parsed = parse_head(name, n_layers, n_heads)
        if parsed:
            mask[parsed] = 1.0
    return mask
