"""Shared fixtures (real runs trained once per session into a temporary checkpoint root) and
the test tiers.

Tiers: ``make test`` runs every test; ``make test-fast`` runs ``pytest -m "not slow"``, the
fast tier. :func:`pytest_collection_modifyitems` marks a test ``slow`` when it

1. needs the fully trained default run (it asks for the ``default_root`` fixture, directly
   or through another fixture: 10,000 steps, the reproduction's golden outcomes), or
2. starts the app as a server process (its body calls ``tests.browser.serve``): it is marked
   ``served`` as well, or
3. drives a real browser (its module is marked ``browser``).

The rule lives here, so no test module marks itself ``slow``. Everything else is the fast
tier: in-process tests on random or hand-set weights, or on the 300-step ``small_root`` run.
A test whose assertions hold for any trained model belongs on ``small_root``; only a test
of what the full run learns (``chili``, the article's attention) needs ``default_root``.
"""

from __future__ import annotations

import os

import pytest

from tests import browser
from training import runtime
from training.config import ModelConfig, TrainConfig
from training.corpus import builtin_corpus
from training.train import train

runtime.configure()  # XLA's CPU flags (two host devices), before any test starts JAX

# Figures skip Plotly's validation in production for speed; tests validate every property.
os.environ.setdefault("INTERP_VALIDATE_FIGURES", "1")


def _starts_a_server(item: pytest.Item) -> bool:
    """The test's own body calls ``tests.browser.serve`` (a gunicorn or app subprocess)."""
    function = getattr(item, "function", None)
    code = getattr(function, "__code__", None)
    module = getattr(item, "module", None)
    return (
        code is not None
        and "serve" in code.co_names
        and getattr(module, "serve", None) is browser.serve
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if _starts_a_server(item):
            item.add_marker(pytest.mark.served)
            item.add_marker(pytest.mark.slow)
        if "default_root" in fixtures or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


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
