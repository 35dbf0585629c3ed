"""Shared fixtures (real runs trained once per session into a temporary checkpoint root) and
the test tiers.

Tiers: ``make test`` runs every test; ``make test-fast`` runs the fast tier,
``pytest -m "not slow and not browser"`` (under 90 s on two cores; browser tests are slow
too, so ``-m "not slow"`` is the same set). :func:`pytest_collection_modifyitems` marks a
test ``slow`` when it

1. needs the fully trained default run: it asks for the ``default_root`` fixture, directly
   or through another fixture (10,000 steps; the reproduction's golden outcomes);
2. starts the app as a server process: its code calls ``tests.browser.serve`` (gunicorn or
   the app's own server); such a test is marked ``served`` as well;
3. drives a real browser: its module is marked ``browser``;
4. trains a run of its own, in process (``training.train.train``, ``training.cli.main``
   with steps to train) or as a subprocess (``tests.browser.train_command``);
5. starts a Python process of its own (``subprocess``): each pays an interpreter start and
   usually JAX's import and compilations; or
6. is a fuzz, scale or exhaustive-equivalence test named in ``SCALE_TESTS``: one check
   repeated over many inputs (every hostile value in every callback slot, corpus sizes and
   layouts), or two implementations compared over more configurations (the model's two
   attention paths, hand-written gradients against autodiff), each taking 4 to 17 s on two
   cores; the fast tier keeps one comparison of each pair.

"Its code" is the test function and every function and fixture of its own module that the
test reaches by name (a static look at names, not a trace), so a helper such as ``_train``
or a module fixture such as ``base_root`` marks the tests that use it. The session's
``small_root`` run (300 steps, trained once) is the fast tier's trained model. A call to
``training.cli.main`` that only checks refusals trains nothing: a module's tests reach
``main`` through ``REFUSAL_HELPERS`` (``_refused``) without counting as training.

Everything else is the fast tier: in-process tests on random or hand-set weights, or on
``small_root``. A test whose assertions hold for any trained model belongs on
``small_root``; only a test of what the full run learns (``chili``, the article's
attention) needs ``default_root``. The rule lives here, so no test module marks itself.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import types
import warnings

import pytest

from tests import browser
from training import cli as training_cli
from training import runtime
from training import train as training_train
from training.config import TrainConfig
from training.corpus import builtin_corpus
from training.model.config import ModelConfig
from training.train import train

runtime.configure()  # XLA's CPU flags (two host devices), before any test starts JAX

# Figures skip Plotly's validation in production for speed; tests validate every property.
os.environ.setdefault("INTERP_VALIDATE_FIGURES", "1")

#: What a test's code may reach, and why reaching it makes the test slow.
SLOW_CALLS: list[tuple[object, str]] = [
    (browser.serve, "serves the app in a server process"),
    (training_train.train, "trains a run of its own"),
    (training_cli.main, "trains a run of its own through the CLI"),
    (browser.train_command, "trains a run of its own in a subprocess"),
    (subprocess, "starts a Python process of its own"),
]
#: Module helpers that call ``training.cli.main`` only to see it refuse (nothing trains).
REFUSAL_HELPERS = frozenset({"_refused"})
#: Fuzz and scale tests (module, function): in process, but long (rule 6).
SCALE_TESTS = {
    ("test_hardening_app", "test_forged_callback_payloads_never_get_a_5xx"),
    ("test_hardening_training", "test_batched_evaluation_equals_one_pass"),
    ("test_hardening_training", "test_evaluation_memory_does_not_grow_with_the_corpus"),
    # two implementations compared over more configurations, each compiling its own
    # programs (4-8 s); the fast tier keeps one comparison of each pair
    ("test_model", "test_the_paths_train_alike"),
    ("test_model", "test_fast_attention_pieces_equal_the_reference"),
    ("test_model", "test_a_checkpoint_loads_in_either_path"),
    ("test_model_family", "test_every_config_is_exact_on_both_paths"),
    ("test_model_family", "test_a_non_default_config_trains"),
    # the default config's decompositions on random weights: the fast tier keeps them on the
    # trained small run (test_analysis, against numpy) and on a non-default config
    ("test_model", "test_decompositions_exact_on_random_weights"),
    # the default config's paths compared without an intervention; the fast tier keeps the
    # comparison with one (both paths, every Capture field) and the family's representative
    ("test_model", "test_reference_and_fast_paths_agree[plain]"),
    # compile programs of their own (2-3 s each); the slow tier's resume and multi-device
    # tests cover the same code end to end
    ("test_steps", "test_flat_optimizer_state_round_trips"),
    ("test_model", "test_a_shard_draws_its_rows_of_the_whole_batch_masks"),
    # a user's JAX loop (one compilation of its own, 6 s); the fast tier keeps the numpy loop
    ("test_series", "test_a_jax_loop_is_a_run_the_api_reads"),
    ("test_series", "test_the_app_draws_every_panel_of_a_written_run"),
    ("test_products", "test_layer_norm_gradient_is_autodiffs"),
    ("test_products", "test_cross_entropy_is_optaxs_with_the_same_gradient"),
    ("test_steps", "test_data_parallel_gradient_is_the_whole_batch_gradient"),
    ("test_api", "test_metrics_are_the_apps_view[step=300,ablate=L0H1,L1H0,ablate_mode=mean]"),
    # the patching sweep computed in parts against the one-shot sweep: two programs of their
    # own (9-14 s); the slow tier's background-job tests run the parts end to end
    ("test_background", "test_patching_in_parts_equals_the_one_shot_patching"),
    (
        "test_api",
        "test_metrics_are_the_apps_view[step=150,ablate=L1H0,ablate_mode=valid-mean,head=L1H0]",
    ),
    # runs interp-train did not make (Hugging Face tokenizers, other architectures): each
    # compiles the app's programs for a model of its own (15-20 s); the tokenizers' own
    # tests stay fast
    ("test_external_runs", "test_a_bpe_run_opens_with_the_tokenizers_pieces"),
    ("test_external_runs", "test_a_target_by_label_and_the_causal_tools"),
    ("test_external_runs", "test_defaults_without_a_corpus"),
    ("test_external_runs", "test_the_api_and_the_export"),
    ("test_external_runs", "test_views_that_cannot_apply_say_so"),
    # transformers' numbers for five tiny models: the fast tier keeps GPT-2 and sequential
    # NeoX with Pythia's legacy keys
    ("test_hf_reference", "test_imported_model_equals_transformers[neox_par]"),
    ("test_hf_reference", "test_imported_model_equals_transformers[neox_nobias]"),
    ("test_hf_reference", "test_imported_model_equals_transformers[gpt2_sharded]"),
    # session 7: each compiles programs of its own (2-6 s); the fast tier keeps the circuits'
    # closed-form model and graphs, the scale views' pure figures, the background jobs' cheap
    # path
    ("test_circuits", "test_the_forward_with_every_edge_kept_is_the_model"),
    ("test_circuits", "test_the_repeat_loss_is_the_induction_labs"),
    ("test_scale_views", "test_a_head_click_reuses_the_step_and_leaves_out_ablation"),
    ("test_scale_views", "test_one_head_token_attributions_equal_the_step_metrics"),
    ("test_background", "test_a_request_with_nothing_to_compute_starts_no_process"),
}


def _code_of(obj: object) -> types.CodeType | None:
    function = inspect.unwrap(obj) if callable(obj) else obj  # a fixture: its function
    return getattr(function, "__code__", None)


def _reached(item: pytest.Item) -> list[object]:
    """Every global of the test's module its code reaches by name: the test function's
    names, and recursively those of the module's own functions and fixtures it names."""
    module = getattr(item, "module", None)
    function = getattr(item, "function", None)
    if module is None or function is None:
        return []
    names = vars(module)
    todo = [c for c in [_code_of(function)] if c is not None]
    todo += [
        c
        for f in getattr(item, "fixturenames", ())
        if f in names and (c := _code_of(names[f])) is not None
    ]
    seen: set[types.CodeType] = set()
    reached: list[object] = []
    while todo:
        code = todo.pop()
        if code in seen:
            continue
        seen.add(code)
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]  # nested code
        for name in code.co_names:
            if name not in names or name in REFUSAL_HELPERS:
                continue
            obj = names[name]
            reached.append(obj)
            own = getattr(inspect.unwrap(obj) if callable(obj) else obj, "__module__", None)
            if own == module.__name__ and (c := _code_of(obj)) is not None:
                todo.append(c)
    return reached


def slow_reasons(item: pytest.Item) -> list[str]:
    """Why ``item`` is not in the fast tier (empty: it is)."""
    reasons = []
    if "default_root" in getattr(item, "fixturenames", ()):
        reasons.append("needs the fully trained default run")
    if item.get_closest_marker("browser"):
        reasons.append("drives a real browser")
    module = getattr(getattr(item, "module", None), "__name__", "")
    names = {getattr(item, "originalname", item.name), item.name}  # a test, or one case of it
    if {(module.rsplit(".", 1)[-1], name) for name in names} & SCALE_TESTS:
        reasons.append("a fuzz, scale or exhaustive-equivalence test (SCALE_TESTS)")
    reached = _reached(item)
    for obj, why in SLOW_CALLS:
        if any(r is obj for r in reached) and why not in reasons:
            reasons.append(why)
    return reasons


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    collected = set()
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "").rsplit(".", 1)[-1]
        collected |= {(module, getattr(item, "originalname", item.name)), (module, item.name)}
        reasons = slow_reasons(item)
        if reasons:
            item.add_marker(pytest.mark.slow(reasons=reasons))
        if any(r is browser.serve for r in _reached(item)):
            item.add_marker(pytest.mark.served)
    modules = {module for module, _ in collected}
    for module, name in sorted(SCALE_TESTS - collected):
        if module in modules:  # renamed or removed: the fast tier would get it back
            warnings.warn(f"SCALE_TESTS names {module}::{name}, which is gone", stacklevel=1)


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
