"""Parameters kept in bytes, read lazily, in the dtype they were stored in.

Real runs written the way a user's loop writes them (``tests.external_runs``): random
weights of two model sizes, and one set of weights stored as float32, float16 and bfloat16.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest

from interp_app.core.analyzer import Analyzer
from interp_app.core.store import LRU, RunStore, nbytes
from interp_app.server.settings import Settings, deprecations, parse_args
from tests.external_runs import CONFIG
from training import checkpoint as ckpt
from training.model.params import abstract_model, flat_params
from training.run_meta import external_metadata

BIG = dataclasses.replace(CONFIG, d_model=32, d_mlp=64)  # same vocabulary, more bytes a step
STEPS = (0, 10, 20)
DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}


def _run(root: Path, name: str, cfg=CONFIG) -> Path:
    """A run of byte-level tokens (its steps come next), as a user's loop writes one."""
    run = ckpt.run_dir(root, name)
    run.mkdir(parents=True)
    meta = external_metadata(cfg, {"tokenizer": {"kind": "bytes"}}, {"kind": "test"})
    ckpt.write_json_atomic(run / ckpt.RUN_FILE, meta)
    return run


def _weights(cfg, seed: int) -> dict[str, np.ndarray]:
    """Random float32 weights with the model's names and shapes (no JAX initialisation)."""
    rng = np.random.default_rng(seed)
    shapes = abstract_model(cfg)[1]
    return flat_params(jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape), shapes))


def _write(run: Path, cfg, steps=STEPS) -> None:
    for step in steps:
        arrays = {k: v.astype(np.float32) for k, v in _weights(cfg, step).items()}
        ckpt.save_step(run, step, arrays, {"step": step, "valid_loss": None})


@pytest.fixture
def sized_root(tmp_path):
    """Run ``small`` (d 16) and run ``big`` (d 32), three steps each."""
    _write(_run(tmp_path, "small"), CONFIG)
    _write(_run(tmp_path, "big", BIG), BIG)
    return tmp_path


def test_the_cache_evicts_by_bytes_across_runs_of_different_sizes(sized_root):
    probe = RunStore(sized_root)
    small = nbytes(probe.params("small", 0))
    big = nbytes(probe.params("big", 0))
    assert big > 2 * small  # the sizes differ enough for the order below to mean something
    store = RunStore(sized_root, cache_bytes=2 * (big + 2 * small - 1))  # params get half
    assert store.budget.params == big + 2 * small - 1
    for step in STEPS:
        store.params("small", step)
    assert store.cached_steps("small") == [0, 10, 20]
    store.params("big", 0)  # needs room for itself: the two oldest small steps go
    assert store.cached_steps("small") == [20]
    assert store.cached_steps("big") == [0]
    assert store._params.bytes == big + small <= store.budget.params
    store.params("small", 20)  # a hit refreshes its place
    store.params("big", 10)  # evicts big 0 (the least recently used), not small 20
    assert (store.cached_steps("small"), store.cached_steps("big")) == ([20], [10])


def test_a_step_larger_than_the_cache_is_served_not_kept(sized_root):
    store = RunStore(sized_root, cache_bytes=1000)
    first = store.params("big", 10)
    assert store.cached_steps("big") == [] and store._params.bytes == 0
    again = store.params("big", 10)
    assert first is not again
    np.testing.assert_array_equal(first["wte"], again["wte"])


def test_the_step_count_still_caps_the_cache(sized_root):
    store = RunStore(sized_root, param_cache=2)
    for step in STEPS:
        store.params("small", step)
    assert store.cached_steps("small") == [10, 20]


def test_lru_bytes_follow_replacements_and_clear():
    cache = LRU(10, max_bytes=100)
    cache.put("a", {"x": np.zeros(10, np.float32)})
    cache.put("a", {"x": np.zeros(20, np.float32)})  # replaced, not counted twice
    assert cache.bytes == 80
    cache.put("b", (np.zeros(5, np.float32), "not an array"))
    assert cache.order() == ["a", "b"] and cache.bytes == 100  # exactly full
    cache.put("c", np.zeros(1, np.float32))
    assert cache.order() == ["b", "c"] and cache.bytes == 24
    cache.clear()
    assert cache.bytes == 0 and cache.order() == []


@pytest.fixture
def dtype_root(tmp_path):
    """The same weights stored as float32, float16 and bfloat16, and as float32 holding the
    values float16 and bfloat16 round them to (what a run must compute from)."""
    for tag, dtype in DTYPES.items():
        stored, rounded = _run(tmp_path, tag), _run(tmp_path, f"{tag}-as-f32")
        for step in STEPS:
            flat = _weights(CONFIG, step)
            as_stored = {k: v.astype(dtype) for k, v in flat.items()}
            ckpt.save_step(stored, step, as_stored, {"step": step})
            as_f32 = {k: v.astype(np.float32) for k, v in as_stored.items()}
            ckpt.save_step(rounded, step, as_f32, {"step": step})
    return tmp_path


def test_half_precision_steps_are_cached_as_stored_and_computed_in_float32(dtype_root):
    analyzer = Analyzer(RunStore(dtype_root))
    store = analyzer.store
    full = nbytes(store.params("f32", 10))
    prompt = analyzer.encode("f32", "the cat sat on the mat")
    reference = analyzer.capture("f32", 10, prompt).logits
    for tag, dtype in DTYPES.items():
        params = store.params(tag, 10)
        assert {a.dtype for a in params.values()} == {np.dtype(dtype)}
        assert nbytes(params) == full * np.dtype(dtype).itemsize // 4
        got = analyzer.capture(tag, 10, prompt).logits
        assert got.dtype == np.float32
        # exactly the float32 computation on the rounded weights
        rounded = analyzer.capture(f"{tag}-as-f32", 10, prompt).logits
        np.testing.assert_array_equal(got, rounded)
        tol = {"f32": 0, "f16": 2e-3, "bf16": 2e-2}[tag]
        np.testing.assert_allclose(got, reference, rtol=tol, atol=tol * np.abs(reference).max())


def test_half_precision_timelines_stack_float32(dtype_root):
    store = RunStore(dtype_root)
    ok, chunks, bad = store.stacked("bf16", list(STEPS))
    _, rounded, _ = store.stacked("bf16-as-f32", list(STEPS))
    assert ok == list(STEPS) and bad == []
    for chunk, same in zip(chunks, rounded, strict=True):
        assert {a.dtype for a in chunk.values()} == {np.dtype(np.float32)}
        for name in chunk:
            np.testing.assert_array_equal(chunk[name], same[name])


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def test_large_steps_are_memory_mapped_small_ones_read(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    arrays = {"w": np.arange(300_000, dtype=np.float32), "b": np.ones(3, ml_dtypes.bfloat16)}
    ckpt.save_step(run, 1, arrays, {"step": 1})
    path = ckpt.step_dir(run, 1) / ckpt.PARAMS_FILE
    eager = ckpt.load_params(run, 1, lazy_bytes=path.stat().st_size + 1)
    assert not _mapped(path)
    lazy = ckpt.load_params(run, 1, lazy_bytes=path.stat().st_size)
    assert _mapped(path)
    for got in (eager, lazy):
        assert not got["w"].flags.writeable  # a cached step is never changed in place
        for name, want in arrays.items():
            assert got[name].dtype == want.dtype
            np.testing.assert_array_equal(got[name], want)
    # a step saved again is a new file: the mapping keeps reading the old one whole
    ckpt.save_step(run, 1, {"w": np.zeros(300_000, np.float32)}, {"step": 1})
    assert lazy["w"][-1] == 299_999
    del lazy, got
    assert not _mapped(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:-3], "truncated or overwritten"),
        (lambda raw: raw + b"\0" * 4, "truncated or overwritten"),
        (lambda raw: b"\xff" * 8 + raw[8:], "not a safetensors file"),
        (lambda raw: raw[:8] + b"[" + raw[9:], "header is not JSON"),
        (lambda raw: raw.replace(b'"F32"', b'"I32"'), "stored as I32"),
        (lambda raw: raw.replace(b"[3]", b"[4]"), "wrong byte size"),
    ],
)
def test_damaged_parameter_files_are_refused_in_one_line(tmp_path, damage, message):
    run = tmp_path / "r"
    run.mkdir()
    ckpt.save_step(run, 1, {"a": np.ones(3, np.float32), "b": np.ones(2, np.float16)}, {})
    path = ckpt.step_dir(run, 1) / ckpt.PARAMS_FILE
    path.write_bytes(damage(path.read_bytes()))
    for lazy in (0, 1 << 30):
        with pytest.raises(ckpt.CheckpointError, match=message) as err:
            ckpt.load_params(run, 1, lazy_bytes=lazy)
        assert str(err.value).startswith("step 1 of run 'r'") and "\n" not in str(err.value)


def test_cache_mb_is_a_flag_and_an_environment_variable_and_cache_steps_still_works():
    assert Settings().cache_mb == 768
    env = {"INTERP_CACHE_MB": "256", "INTERP_CACHE_STEPS": "64"}
    s = parse_args([], env)
    assert (s.cache_mb, s.cache_steps) == (256, 64)
    assert parse_args(["--cache-mb", "0"], env).cache_mb == 0  # nothing kept: every view reads
    assert deprecations([], env) and deprecations(["--cache-steps=3"], {})
    assert deprecations(["--cache-mb", "5"], {"INTERP_CACHE_MB": "1"}) == []


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--cache-mb", "-1"], {}, "--cache-mb must be at least 0"),
        ([], {"INTERP_CACHE_MB": "lots"}, "INTERP_CACHE_MB: invalid literal"),
        (["--cache-steps", "0"], {}, "--cache-steps must be at least 1"),
    ],
)
def test_bad_cache_sizes_are_one_line_refusals(argv, env, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv, env)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err
    errors = [line for line in err.splitlines() if line.startswith("interp-app: error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n")  # usage, then one line


def test_mapped_weights_enter_jax_without_a_copy(tmp_path):
    """A step's data starts 64-byte aligned, so XLA's CPU client uses a mapped array in
    place: the forward pass reads the weights from the page cache, not a heap copy."""
    run = tmp_path / "r"
    run.mkdir()
    arrays = {"w": np.ones((512, 64), np.float32), "b": np.ones(64, np.float32)}
    ckpt.save_step(run, 1, arrays, {"step": 1})
    raw = (ckpt.step_dir(run, 1) / ckpt.PARAMS_FILE).read_bytes()
    assert (8 + int.from_bytes(raw[:8], "little")) % ckpt.ALIGN == 0
    got = ckpt.load_params(run, 1, lazy_bytes=0)
    for name in arrays:
        assert jax.device_put(got[name]).unsafe_buffer_pointer() == got[name].ctypes.data
