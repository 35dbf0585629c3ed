"""Shared fixtures: real runs trained once per session into a temporary checkpoint root."""

from __future__ import annotations

import os

import pytest

from training import runtime
from training.config import ModelConfig, TrainConfig
from training.corpus import builtin_corpus
from training.train import train

runtime.configure()  # XLA's CPU flags (two host devices), before any test starts JAX

# Figures skip Plotly's validation in production for speed; tests validate every property.
os.environ.setdefault("INTERP_VALIDATE_FIGURES", "1")


@pytest.fixture(scope="session")
def default_root(tmp_path_factory):
    """The article's default run, trained in full (10,000 steps): the reproduction itself."""
    root = tmp_path_factory.mktemp("default-root")
    summary = train(root, "fruits", ModelConfig(), TrainConfig(), builtin_corpus(), progress=False)
    return root, summary


@pytest.fixture(scope="session")
def small_root(tmp_path_factory):
    """A short run (300 steps) for tests that need real checkpoints but not a trained model."""
    root = tmp_path_factory.mktemp("small-root")
    summary = train(
        root,
        "small",
        ModelConfig(),
        TrainConfig(steps=300, save_every=50),
        builtin_corpus(),
        progress=False,
    )
    return root, summary
