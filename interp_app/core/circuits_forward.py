"""The model's forward pass with every edge of the circuit graph as a dial.

Each receiver's input is built from the senders' outputs, edge by edge::

    input[r] = sum over senders s upstream of r of
               keep[r, s] * out[s] + (1 - keep[r, s]) * corrupt[s]
               + the attention output biases upstream of r + delta[r]

``out[s]`` is the sender's output in this pass, ``corrupt[s]`` its output on the corrupted
input (a fixed array). With ``keep`` all ones and ``delta`` zero this is the model's own
forward (a test checks it against the capture), with one edge's ``keep`` 0 it is that edge
path-patched (Conmy et al. 2023; Syed et al. 2023), and the gradient with respect to
``delta[r]`` is the gradient at receiver r's input that edge attribution patching reads.
Each receiver normalises its own input (its LayerNorm), so q, k and v of a head are three
inputs. Same parameters, same numbers as ``training.model.gpt`` (learned or rotary
positions, sequential or parallel blocks, attention-only, qkv bias, untied unembedding).

Shapes: S senders, R receivers, B sequences, T positions, D width, H heads, K head width.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from interp_app.core.circuits_graph import Graph
from interp_app.core.metrics import has_param, param, unembedding
from training.model.config import ModelConfig
from training.model.gpt import ACTIVATIONS
from training.model.norm import layer_norm
from training.model.rotary import Rotary, rotate

Array = Any


class Dials(NamedTuple):
    """What a pass patches: ``keep`` [R, S], ``corrupt`` [S, B, T, D], ``delta`` [R, B, T, D]."""

    keep: Array
    corrupt: Array
    delta: Array


def plain_dials(graph: Graph, shape: tuple[int, ...]) -> Dials:
    """The dials of the unpatched model for inputs of ``shape`` [B, T, D]."""
    r, s = graph.adjacency.shape
    return Dials(
        jnp.ones((r, s), jnp.float32),
        jnp.zeros((s, *shape), jnp.float32),
        jnp.zeros((r, *shape), jnp.float32),
    )


def embed(params: Any, cfg: ModelConfig, tokens: Array) -> Array:
    """The embeddings sender's output [B, T, D]: token plus position embedding."""
    x = jnp.take(param(params, "wte"), tokens, axis=0, mode="fill", fill_value=0.0)
    if cfg.positions == "learned":
        x = x + param(params, "wpe")[: tokens.shape[-1]]
    return x


def _fixed(graph: Graph, d: Dials, bias: Array) -> Array:
    """[R, B, T, D] what every receiver's input holds whatever this pass computes: the
    corrupted senders' outputs on its corrupted edges, the attention output biases
    upstream of it and its ``delta``."""
    adj = jnp.asarray(graph.adjacency, jnp.float32)
    x = jnp.einsum("rs,sbtd->rbtd", adj * (1.0 - d.keep), d.corrupt)
    return x + (jnp.asarray(graph.bias_layers) @ bias)[:, None, None, :] + d.delta


def _inputs(graph: Graph, rows: np.ndarray, outs: list[Array], d: Dials, fixed: Array) -> Array:
    """[len(rows), B, T, D] the inputs of receivers ``rows`` (a run of indices) from the
    senders computed so far."""
    n = len(outs)
    at = slice(int(rows[0]), int(rows[-1]) + 1)
    keep = d.keep[at, :n] * jnp.asarray(graph.adjacency[at, :n], jnp.float32)
    return jnp.einsum("rs,sbtd->rbtd", keep, jnp.stack(outs)) + fixed[at]


def _norm(params: Any, name: str, x: Array, eps: float) -> Array:
    return layer_norm(x, param(params, f"{name}.scale"), param(params, f"{name}.bias"), eps)[0]


def _heads(params: Any, cfg: ModelConfig, layer: int, x: Array) -> Array:
    """Each head's output [H, B, T, D] from its q, k, v inputs ``x`` [3, H, B, T, D]."""
    pre = f"blocks.{layer}.attn"
    h = _norm(params, f"blocks.{layer}.ln1", x, cfg.ln_eps)
    w_qkv = param(params, f"{pre}.w_qkv")  # [D, 3, H, K]
    qkv = jnp.einsum("shbtd,dshk->sbhtk", h, w_qkv)  # [3, B, H, T, K]
    if has_param(params, f"{pre}.b_qkv"):
        qkv = qkv + param(params, f"{pre}.b_qkv")[:, None, :, None, :]
    q, k, v = qkv
    if cfg.positions == "rotary":
        rot = Rotary(cfg.rotary_dims, cfg.rotary_base)
        q, k = rotate(q, rot, t_axis=-2), rotate(k, rot, t_axis=-2)
    t = x.shape[-2]
    scores = jnp.einsum("bhqk,bhsk->bhqs", q, k) * (cfg.d_head**-0.5)
    causal = jnp.tril(jnp.ones((t, t), bool))
    pattern = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    z = jnp.einsum("bhqs,bhsk->bhqk", pattern, v)
    return jnp.einsum("bhqk,hkd->hbqd", z, param(params, f"{pre}.w_o"))


def _mlp(params: Any, cfg: ModelConfig, layer: int, x: Array) -> Array:
    """The MLP's output [B, T, D] from its input [B, T, D]."""
    pre = f"blocks.{layer}.mlp"
    h = _norm(params, f"blocks.{layer}.ln2", x, cfg.ln_eps)
    act = ACTIVATIONS[cfg.activation]
    hidden = act(h @ param(params, f"{pre}.w_in") + param(params, f"{pre}.b_in"))
    return hidden @ param(params, f"{pre}.w_out") + param(params, f"{pre}.b_out")


def forward(
    params: Any, cfg: ModelConfig, graph: Graph, emb: Array, d: Dials
) -> tuple[Array, Array]:
    """(every sender's output [S, B, T, D], the logits receiver's input [B, T, D]) of a
    pass whose embeddings sender writes ``emb`` [B, T, D] (interpolated for EAP-IG)."""
    outs = [emb]
    n_heads = cfg.n_heads
    bias = jnp.stack([param(params, f"blocks.{i}.attn.b_o") for i in range(cfg.n_layers)])
    fixed = _fixed(graph, d, bias)
    for layer in range(cfg.n_layers):
        rows = np.array(
            [graph.head_receiver(layer, w, h) for w in range(3) for h in range(n_heads)]
        )
        x = _inputs(graph, rows, outs, d, fixed).reshape(3, n_heads, *emb.shape)
        outs.extend(_heads(params, cfg, layer, x))
        if graph.mlp:
            x = _inputs(graph, np.array([graph.mlp_receiver(layer)]), outs, d, fixed)[0]
            outs.append(_mlp(params, cfg, layer, x))
    final = _inputs(graph, np.array([graph.logits_receiver]), outs, d, fixed)[0]
    return jnp.stack(outs), final


def final_norm(params: Any, cfg: ModelConfig, final: Array) -> Array:
    """The final LayerNorm of the logits receiver's input [..., D]."""
    return _norm(params, "ln_f", final, cfg.ln_eps)


def logits(params: Any, cfg: ModelConfig, final: Array) -> Array:
    """The logits [..., V] from the logits receiver's input [..., D]."""
    w_u, b_u = unembedding(params)
    return final_norm(params, cfg, final) @ w_u + b_u
