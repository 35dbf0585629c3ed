"""Model parameters as plain named arrays, the form checkpoints store them in."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx

from training.model.config import ModelConfig
from training.model.gpt import GPT


class ParamsError(ValueError):
    """Stored arrays that do not fit the configured model."""


def _name(path: tuple) -> str:
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey) and key.name == "value":
            continue
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return ".".join(parts)


def flat_params(state: nnx.State) -> dict[str, np.ndarray]:
    """``blocks.0.attn.w_qkv`` -> array; the names are the checkpoint's public schema."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {_name(p): np.asarray(v) for p, v in leaves}


@functools.lru_cache(maxsize=32)
def abstract_model(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """The model's structure without allocating or initialising weights (cached per config)."""
    model = nnx.eval_shape(lambda: GPT(cfg, nnx.Rngs(0)))
    return nnx.split(model)


def unflatten_params(
    cfg: ModelConfig, flat: Mapping[str, np.ndarray]
) -> tuple[nnx.GraphDef, nnx.State]:
    """Checks every name and shape, so a checkpoint from another model is refused, not misread."""
    graphdef, template = abstract_model(cfg)
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = {_name(p): leaf for p, leaf in paths}
    missing = sorted(set(expected) - set(flat))
    extra = sorted(set(flat) - set(expected))
    if missing or extra:
        raise ParamsError(
            f"parameters do not match the model: missing {missing}, unexpected {extra}"
        )
    leaves = []
    for name, leaf in expected.items():
        arr = np.asarray(flat[name], dtype=np.float32)
        if arr.shape != tuple(leaf.shape):
            raise ParamsError(
                f"parameter {name} has shape {arr.shape}, expected {tuple(leaf.shape)}"
            )
        leaves.append(arr)
    return graphdef, jax.tree_util.tree_unflatten(treedef, leaves)


def flatten_tree(tree) -> dict[str, np.ndarray]:
    """Any pytree (e.g. optimizer state) as keyed arrays, for safetensors."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def unflatten_tree(template, flat: Mapping[str, np.ndarray]):
    """Inverse of :func:`flatten_tree` against a template of the same structure."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for p, leaf in paths:
        key = jax.tree_util.keystr(p)
        if key not in flat:
            raise ParamsError(f"stored state lacks {key}")
        leaves.append(np.asarray(flat[key]).astype(np.asarray(leaf).dtype).reshape(np.shape(leaf)))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def unflatten_stacked(cfg: ModelConfig, flat: Mapping[str, np.ndarray]) -> nnx.State:
    """Parameters of many steps, each array with a leading step axis, as one state pytree."""
    _, template = abstract_model(cfg)
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for p, leaf in paths:
        arr = flat[_name(p)]
        if arr.shape[1:] != tuple(leaf.shape):
            raise ParamsError(f"stacked parameter {_name(p)} has shape {arr.shape}")
        leaves.append(arr)
    return jax.tree_util.tree_unflatten(treedef, leaves)
