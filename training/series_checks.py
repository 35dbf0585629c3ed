"""What :meth:`training.series.SeriesWriter.save` checks before it writes anything: the
step, the parameters (names, shapes, real and finite) and the metrics record."""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from flax import nnx

from training import checkpoint as ckpt
from training.model.config import ModelConfig
from training.model.params import ParamsError, flat_params, unflatten_params

METRIC_KEYS = ("train_loss", "loss", "valid_loss")
MAX_STEP = 999_999_999  # step folders have nine digits


class SeriesError(ckpt.CheckpointError):
    """Bad input to the writer, or a write that failed; the message is for the user."""


def _flat(params: Any) -> dict[Any, Any]:
    """Named arrays from a flat or nested mapping, an ``nnx.State`` or a model."""
    if isinstance(params, nnx.Module):
        params = nnx.state(params, nnx.Param)
    if isinstance(params, nnx.State):
        return dict(flat_params(params))
    if isinstance(params, Mapping):
        if any(isinstance(v, Mapping) for v in params.values()):  # any pytree will do
            return dict(flat_params(cast(nnx.State, params)))
        return dict(params)
    raise SeriesError(
        "params is a mapping of names to arrays (training.model.params), an nnx.State or a "
        f"GPT model, not {type(params).__name__}"
    )


def checked_params(config: ModelConfig, params: Any, what: str) -> dict[str, np.ndarray]:
    """float32 arrays with exactly the model's names and shapes, or a SeriesError."""
    arrays = {}
    for key, value in _flat(params).items():
        try:
            given = np.asarray(value)
            if given.dtype.kind == "c":  # float32 would silently drop the imaginary part
                raise TypeError(f"complex dtype {given.dtype}")
            arrays[str(key)] = given.astype(np.float32)
        except (TypeError, ValueError) as err:
            raise SeriesError(f"{what}: parameter {key} is not real numbers: {err}") from None
        if not np.isfinite(arrays[str(key)]).all():
            raise SeriesError(f"{what}: parameter {key} holds NaN or infinite values")
    try:
        unflatten_params(config, arrays)
    except ParamsError as err:
        raise SeriesError(f"{what}: {err}") from None
    return arrays


def _number(key: str, value: Any, step: int) -> float | None:
    """One number; NaN and infinities are None (module docstring), with a warning."""
    try:
        if isinstance(value, bool):
            raise TypeError("a bool")
        number = float(value)
    except (TypeError, ValueError) as err:
        raise SeriesError(f"metric {key} must be one number, got {value!r} ({err})") from None
    if not math.isfinite(number):
        warnings.warn(f"step {step}: {key} is {number}, logged as no value", stacklevel=4)
        return None
    return number


def metrics_record(step: int, metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``metrics.jsonl`` record for one step, or None when there is nothing to log."""
    if not metrics:
        return None
    if not isinstance(metrics, Mapping):
        raise SeriesError(f"metrics is a mapping such as {{'train_loss': 1.2}}, not {metrics!r}")
    unknown = sorted(str(k) for k in metrics if k not in METRIC_KEYS)
    if unknown:
        raise SeriesError(f"unknown metrics {unknown}: the writer logs {', '.join(METRIC_KEYS)}")
    if "train_loss" in metrics and "loss" in metrics:
        raise SeriesError("give train_loss or loss (the same thing), not both")
    train = metrics.get("train_loss", metrics.get("loss"))
    valid = metrics.get("valid_loss")
    train = None if train is None else _number("train_loss", train, step)
    return {
        "step": step,
        "first_step": step,
        "train_loss": [] if train is None else [train],
        "valid_loss": None if valid is None else _number("valid_loss", valid, step),
    }


def check_step(step: Any, steps: Sequence[int], name: str) -> int:
    try:
        if isinstance(step, bool):
            raise TypeError
        step = operator.index(step)
    except TypeError:
        raise SeriesError(f"step must be an integer, not {step!r}") from None
    if not 0 <= step <= MAX_STEP:
        raise SeriesError(f"step must be in 0..{MAX_STEP}, not {step}")
    if steps and step <= steps[-1]:
        raise SeriesError(
            f"step {step} is not after step {steps[-1]}, the last one saved in run {name!r}: "
            "steps must increase (overwrite=True starts the run again)"
        )
    return step
