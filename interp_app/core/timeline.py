"""Head metrics and predictions at every checkpoint, in one vectorised pass.

The parameters of all steps are stacked on a leading axis and the capture pass is mapped
over it with ``jax.vmap``, in fixed-size chunks so that a run of any length (and one that
grows while training) reuses one compilation. Query values (position, target, source,
prompt length) are traced, so changing them never recompiles either. The metrics are
``metrics``' own functions, in float32 as the model runs.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from interp_app.core import metrics
from interp_app.core.causal import ablation, effects, mode_means


def _metrics_one(graphdef, params, tokens, pos, target, src, length, ablated, mode, reference):
    """All per-head metrics for one step: each [L, H]; probabilities [V] at ``pos``."""
    model = nnx.merge(graphdef, params)
    clean = model(tokens, capture=True)
    means = mode_means(graphdef, params, mode, reference)  # this step's, for valid-mean
    cap = model(tokens, capture=True, intervention=ablation(clean, ablated, mode, length, means))
    ro = metrics.readout(params, cap.head_out.shape[1])
    return {
        **metrics.head_metrics(cap, ro, pos, target, length, src),
        "probs": metrics.prediction(cap, pos),
        "ablation": effects(graphdef, params, tokens, ablated, mode, length, pos, target, means),
    }


@partial(jax.jit, static_argnums=(0, 8))
def _metrics_chunk(graphdef, stacked, tokens, pos, target, src, length, ablated, mode, reference):
    def one(p):
        return _metrics_one(graphdef, p, tokens, pos, target, src, length, ablated, mode, reference)

    return jax.vmap(one)(stacked)


def compute_timeline(
    graphdef,
    stacked_chunks,
    n_steps: int,
    tokens,
    pos: int,
    target: int,
    src: int,
    length: int,
    ablated: np.ndarray,
    mode: str = "zero",
    reference: tuple | None = None,
) -> dict[str, np.ndarray]:
    """Run the vmapped pass over pre-stacked chunks; returns arrays with a leading S axis.

    Metrics are of the model with ``ablated`` ([L, H], 1 = ablated) heads ablated; the
    ablation-effect metric ablates each head on top of those. ``reference`` = (tokens
    [N, T], mask [N, T]) of the run's reference lines, needed by the ``valid-mean`` mode
    (each step's means come from that step's parameters).
    """
    parts = []
    for chunk in stacked_chunks:
        out = _metrics_chunk(
            graphdef,
            chunk,
            tokens,
            jnp.int32(pos),
            jnp.int32(target),
            jnp.int32(src),
            jnp.int32(length),
            jnp.asarray(ablated, jnp.float32),
            mode,
            reference,
        )
        parts.append(jax.device_get(out))
    return {k: np.concatenate([p[k] for p in parts])[:n_steps] for k in parts[0]}
