"""Edge scores of the circuit graph at every checkpoint, in one vectorised pass.

For a metric ``M`` (the target's logit difference, or the loss on an induction sequence's
repeated part), a clean input and a corrupted one, each edge ``u -> v`` gets three scores,
all "what corrupting this edge alone does to M on the clean input":

- **exact**: path patching, ``M(clean, edge corrupted) - M(clean)``, where the corrupted
  edge carries the sender's output on the corrupted input to this receiver only and every
  other node computes as usual (one patched pass per edge, all edges mapped with ``vmap``);
- **EAP** (edge attribution patching, Syed et al. 2023): its first-order estimate
  ``(z'_u - z_u) . dM/dx_v`` at the clean input, one backward pass for every edge;
- **EAP-IG** (Hanna et al. 2024): the same with the gradient averaged over inputs whose
  embeddings go from the corrupted to the clean ones (``ig_steps`` points, midpoint rule).

Faithfulness: keeping the top ``k`` edges by |score| (the rest corrupted) gives
``M_k``; the share of the clean-minus-corrupted difference recovered is
``(M_k - M_corrupt) / (M_clean - M_corrupt)`` (``M_0`` is ``M_corrupt``, ``M_E`` is
``M_clean``, exactly). Curves by the exact order and by the EAP-IG order, for every ``k``.

The parameters of many steps are stacked on a leading axis and one step's pass is mapped
over it; the query (positions, target, answer, tokens) is traced, so a new prompt never
recompiles. Float32, as the model runs.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from interp_app.core.circuits_forward import (
    Dials,
    embed,
    final_norm,
    forward,
    logits,
    plain_dials,
)
from interp_app.core.circuits_graph import Graph
from interp_app.core.metrics import unembedding
from training.model.config import ModelConfig

Array = Any
KINDS = ("logit_diff", "repeat_loss")
IG_STEPS = 5  # Hanna et al. find a handful of steps enough; the tests measure it here
WORK_BYTES = 1 << 30  # activations of one mapped call, at most (about)


class LogitDiff(NamedTuple):
    """``logit[pos, target] - logit[pos, answer]`` on the first sequence."""

    pos: Array
    target: Array
    answer: Array


class RepeatLoss(NamedTuple):
    """Mean next-token loss over ``mask`` [B, T] (1: counted), next tokens ``targets``."""

    targets: Array
    mask: Array


def metric(params: Any, cfg: ModelConfig, final: Array, query: Any) -> Array:
    """M from the logits receiver's input [B, T, D] (only ``pos`` is unembedded for a
    logit difference)."""
    if isinstance(query, LogitDiff):
        w_u, b_u = unembedding(params)
        pair = jnp.stack([query.target, query.answer])
        two = final_norm(params, cfg, final[0, query.pos]) @ w_u[:, pair] + b_u[pair]
        return two[0] - two[1]
    logp = jax.nn.log_softmax(logits(params, cfg, final), axis=-1)  # [B, T, V]
    picked = jnp.take_along_axis(logp, query.targets[..., None], axis=-1)[..., 0]
    return -(picked * query.mask).sum() / jnp.maximum(query.mask.sum(), 1.0)


def _ranks(scores: Array) -> Array:
    """Each edge's place by |score| (0 = largest), ties by index."""
    order = jnp.argsort(-jnp.abs(scores), stable=True)
    return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))


def _top_k_sets(scores: Array) -> Array:
    """[E + 1, E]: row k is 1 at the k edges of largest |score| (ties by index)."""
    n = scores.shape[0]
    return (_ranks(scores)[None, :] < jnp.arange(n + 1)[:, None]).astype(jnp.float32)


def step_scores(
    params: Any,
    cfg: ModelConfig,
    clean: Array,
    corrupt: Array,
    query: Any,
    ig_steps: int = IG_STEPS,
) -> dict[str, Array]:
    """One step's scores: ``exact``, ``eap``, ``eap_ig`` [E]; ``clean``, ``corrupt`` (M of
    each input); ``faith_exact``, ``faith_ig`` [E + 1] (M keeping the top k edges).

    Three mapped programs, whatever the number of edges: the unpatched passes with their
    gradients at the receivers (the corrupted input, the EAP-IG path, the clean input),
    each edge corrupted alone, and every top-k set of both orders."""
    graph = Graph.of(cfg)
    emb_c, emb_x = embed(params, cfg, clean), embed(params, cfg, corrupt)
    plain = plain_dials(graph, emb_c.shape)
    unpatched = _unpatched_scores(params, cfg, graph, emb_c, emb_x, plain, query, ig_steps)
    eap, eap_ig, m_clean, m_corrupt, outs_x = unpatched
    exact, faith_exact, faith_ig = _patched_scores(
        params, cfg, graph, emb_c, outs_x, plain, query, m_clean, eap_ig
    )
    return {
        "exact": exact,
        "eap": eap,
        "eap_ig": eap_ig,
        "clean": m_clean,
        "corrupt": m_corrupt,
        "faith_exact": faith_exact,
        "faith_ig": faith_ig,
    }


def _unpatched_scores(
    params: Any,
    cfg: ModelConfig,
    graph: Graph,
    emb_c: Array,
    emb_x: Array,
    plain: Dials,
    query: Any,
    ig_steps: int,
) -> tuple[Array, Array, Array, Array, Array]:
    """``eap``, ``eap_ig`` [E], M clean, M corrupted and the senders' outputs on the
    corrupted input: one mapped program of unpatched passes with their gradients, at the
    corrupted input, along the EAP-IG path and at the clean input."""
    r_idx, s_idx = graph.edge_index

    def unpatched(delta: Array, alpha: Array) -> tuple[Array, Array]:
        emb = emb_x + alpha * (emb_c - emb_x)
        outs, final = forward(params, cfg, graph, emb, plain._replace(delta=delta))
        return metric(params, cfg, final, query), outs

    alphas = (jnp.arange(ig_steps, dtype=jnp.float32) + 0.5) / ig_steps
    alphas = jnp.concatenate([jnp.zeros(1), alphas, jnp.ones(1)])
    grad = jax.value_and_grad(unpatched, has_aux=True)
    (ms, outs), grads = jax.vmap(lambda a: grad(plain.delta, a))(alphas)
    m_corrupt, m_clean, outs_x = ms[0], ms[-1], outs[0]
    diff = outs_x - outs[-1]  # [S, B, T, D] corrupted minus clean
    eap = jnp.einsum("sbtd,rbtd->rs", diff, grads[-1])[r_idx, s_idx]
    eap_ig = jnp.einsum("sbtd,rbtd->rs", diff, grads[1:-1].mean(0))[r_idx, s_idx]
    return eap, eap_ig, m_clean, m_corrupt, outs_x


def _patched_scores(
    params: Any,
    cfg: ModelConfig,
    graph: Graph,
    emb_c: Array,
    outs_x: Array,
    plain: Dials,
    query: Any,
    m_clean: Array,
    eap_ig: Array,
) -> tuple[Array, Array, Array]:
    """``exact`` [E], ``faith_exact`` and ``faith_ig`` [E + 1]: M on the clean input with
    edges corrupted, each edge alone and every top-k set of both orders, in two rounds of
    one mapped program (the exact order's sets need the first round's scores)."""
    r_idx, s_idx = graph.edge_index
    edge_cells = np.zeros((graph.n_edges, *graph.adjacency.shape), np.float32)
    edge_cells[np.arange(graph.n_edges), r_idx, s_idx] = 1.0  # [E, R, S] each edge's cell
    n_edges = graph.n_edges

    def patched(kept: Array) -> Array:
        """M on the clean input with the edges where ``kept`` [E] is 0 corrupted."""
        keep = 1.0 - jnp.einsum("e,ers->rs", 1.0 - kept, edge_cells)
        _, final = forward(params, cfg, graph, emb_c, Dials(keep, outs_x, plain.delta))
        return metric(params, cfg, final, query)

    # Two rounds of one mapped program, of equal size: each edge alone and the first half
    # of the EAP-IG order's top-k sets, then the exact order's sets and the other half.
    half = (n_edges + 2) // 2
    size = max(n_edges + half, 2 * n_edges + 2 - half)
    ig_sets = _top_k_sets(eap_ig)  # [E + 1, E]

    def padded(rows: Array) -> Array:
        pad = jnp.ones((size - rows.shape[0], n_edges), jnp.float32)
        return jnp.concatenate([rows, pad])

    alone = 1.0 - jnp.eye(n_edges, dtype=jnp.float32)
    first = padded(jnp.concatenate([alone, ig_sets[:half]]))

    def round_(i: Array, state: tuple[Array, Array]) -> tuple[Array, Array]:
        keeps, out = state
        ms = jax.vmap(patched)(keeps)
        exact_sets = _top_k_sets(ms[:n_edges] - m_clean)
        after = padded(jnp.concatenate([exact_sets, ig_sets[half:]]))
        return jnp.where(i == 0, after, keeps), out.at[i].set(ms)

    _, rounds = jax.lax.fori_loop(0, 2, round_, (first, jnp.zeros((2, size), jnp.float32)))
    exact = rounds[0, :n_edges] - m_clean
    faith_ig = jnp.concatenate([rounds[0, n_edges : n_edges + half], rounds[1, n_edges + 1 :]])
    return exact, rounds[1, : n_edges + 1], faith_ig[: n_edges + 1]


def _unpatched_steps(stacked: Any, clean, corrupt, query, cfg: ModelConfig, ig_steps: int):
    """The gradient program over a chunk of steps: ``eap``, ``eap_ig``, ``clean``,
    ``corrupt`` and the senders' outputs on the corrupted input (``outs_x``)."""

    def one(params: Any) -> dict[str, Array]:
        graph = Graph.of(cfg)
        emb_c, emb_x = embed(params, cfg, clean), embed(params, cfg, corrupt)
        plain = plain_dials(graph, emb_c.shape)
        out = _unpatched_scores(params, cfg, graph, emb_c, emb_x, plain, query, ig_steps)
        return dict(zip(("eap", "eap_ig", "clean", "corrupt", "outs_x"), out, strict=True))

    return jax.vmap(one)(stacked)


def _patched_steps(stacked: Any, clean, first: dict[str, Array], query, cfg: ModelConfig):
    """The patched program over a chunk of steps, from the gradient program's ``first``:
    ``exact``, ``faith_exact``, ``faith_ig``."""

    def one(params: Any, f: dict[str, Array]) -> dict[str, Array]:
        graph = Graph.of(cfg)
        emb_c = embed(params, cfg, clean)
        plain = plain_dials(graph, emb_c.shape)
        out = _patched_scores(
            params, cfg, graph, emb_c, f["outs_x"], plain, query, f["clean"], f["eap_ig"]
        )
        return dict(zip(("exact", "faith_exact", "faith_ig"), out, strict=True))

    return jax.vmap(one)(stacked, first)


def _split(fn: Any, devices: int, split_third: bool) -> Any:
    """``fn(stacked, a, b, query)`` with the steps (the leading axis of ``stacked``, of ``b``
    when ``split_third``, and of every output) split over ``devices`` host devices
    (``training.runtime``: each is single-threaded, so one would leave the other core
    idle)."""
    if devices == 1:
        return fn
    mesh = Mesh(np.array(jax.devices()[:devices]), ("steps",))
    split, same = PartitionSpec("steps"), PartitionSpec()
    return jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(split, same, split if split_third else same, same),
        out_specs=split,
        check_vma=False,  # each device's steps are its own: nothing is shared to check
    )


# The gradient program runs in a fraction of the patched one's time and compiles in less than
# half its default time at XLA's optimisation level 0 (default run, busy machine: 2.4 s
# instead of 6.2 s to compile, 0.46 s instead of 0.13 s to run 64 steps). The patched
# program keeps the default: at level 0 it runs twice as long as the compilation saves.
# Compiling the two on two threads did not help on the busy two-core machine (measured).
GRADIENT_OPTIONS: dict[str, str | bool] = {"xla_backend_optimization_level": "0"}
_PROGRAMS: dict[Any, tuple[Any, Any]] = {}
_PROGRAMS_LOCK = threading.Lock()


def _signature(*args: Any) -> Any:
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((np.shape(x), str(np.asarray(x).dtype)) for x in leaves)


def _programs(call, cfg: ModelConfig, clean, corrupt, query, ig_steps: int, devices: int):
    """The two compiled programs for calls shaped like ``call``, cached per shape (a new
    prompt pair of the same length reuses them)."""
    key = (cfg, ig_steps, devices, _signature(call, clean, corrupt, query))
    with _PROGRAMS_LOCK:
        if key not in _PROGRAMS:
            unpatched = _split(
                partial(_unpatched_steps, cfg=cfg, ig_steps=ig_steps), devices, False
            )
            lowered = jax.jit(unpatched).lower(call, clean, corrupt, query)
            first = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), lowered.out_info)
            patched = _split(partial(_patched_steps, cfg=cfg), devices, True)
            _PROGRAMS[key] = (
                lowered.compile(GRADIENT_OPTIONS),
                jax.jit(patched).lower(call, clean, first, query).compile(),
            )
        return _PROGRAMS[key]


def _chunk(call, cfg: ModelConfig, clean, corrupt, query, ig_steps: int, devices: int):
    """:func:`step_scores` of every step of ``call``, by the two programs."""
    unpatched, patched = _programs(call, cfg, clean, corrupt, query, ig_steps, devices)
    first = jax.device_get(unpatched(call, clean, corrupt, query))
    out = jax.device_get(patched(call, clean, first, query))
    return {k: v for k, v in {**first, **out}.items() if k != "outs_x"}


def steps_per_call(
    cfg: ModelConfig, shape: tuple[int, int], n_edges: int, ig_steps: int = IG_STEPS
) -> int:
    """How many steps one mapped call scores: as many as keep its activations (every
    patched pass of a round at once, each holding every sender's and receiver's vectors,
    the attention patterns and the MLPs' hidden units) within ``WORK_BYTES``. The default
    run takes 64 at once; the induction lab's 32 sequences of 32 tokens at width 64, one."""
    b, t = shape
    graph = Graph.of(cfg)
    per_pass = (
        b
        * t
        * (
            (len(graph.senders) + len(graph.receivers)) * cfg.d_model
            + cfg.n_layers * (2 * cfg.n_heads * t + (cfg.d_mlp if cfg.mlp else 0))
        )
    )
    passes = 2 * n_edges + 2 + 2 * (ig_steps + 2)  # a round of patched passes, the gradients
    return max(1, WORK_BYTES // (4 * per_pass * passes))


def _calls(chunk: dict[str, Any], size: int) -> list[tuple[dict[str, Any], int]]:
    """A chunk of stacked steps as (call, its real steps) of ``size`` steps each (the last
    padded with its own last step), so every call has one shape: one compilation."""
    n = len(next(iter(chunk.values())))
    if size >= n:
        return [(chunk, n)]
    out = []
    for start in range(0, n, size):
        part = {k: v[start : start + size] for k, v in chunk.items()}
        real = len(next(iter(part.values())))
        if real < size:
            pad = size - real
            part = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for k, v in part.items()}
        out.append((part, real))
    return out


def scores_over_steps(
    chunks: list[dict[str, Any]],
    n_steps: int,
    cfg: ModelConfig,
    clean: np.ndarray,
    corrupt: np.ndarray,
    query: Any,
    ig_steps: int = IG_STEPS,
) -> dict[str, np.ndarray]:
    """:func:`step_scores` at every step of ``chunks`` (parameters by checkpoint name, each
    stacked on a leading step axis; the last chunk padded), ``[n_steps, ...]`` each; each
    chunk in calls of :func:`steps_per_call` steps."""
    size = steps_per_call(cfg, clean.shape, Graph.of(cfg).n_edges, ig_steps)
    if size > 1:
        size -= size % 2  # whole shares for the two host devices
    parts = []
    for chunk in chunks:
        for call, real in _calls(chunk, size):
            n = len(next(iter(call.values())))
            devices = 2 if n % 2 == 0 and jax.device_count() >= 2 else 1
            args = (jnp.asarray(clean), jnp.asarray(corrupt), query, ig_steps, devices)
            out = _chunk(call, cfg, *args)
            parts.append({k: v[:real] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts])[:n_steps] for k in parts[0]}
