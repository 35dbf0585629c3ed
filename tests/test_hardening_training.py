"""Hardening of the trainer: large corpora, file modes, bad metrics lines, damaged latest
steps, interrupted saves, a full disk and saving cost (issue 12, training side)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat

import jax
import numpy as np
import pytest

from training import checkpoint as ckpt
from training.cli import main
from training.config import TrainConfig
from training.corpus import builtin_corpus
from training.model.config import ModelConfig
from training.tokenizer import Tokenizer
from training.train import train

BASE = TrainConfig(steps=40, save_every=20)
LONGER = TrainConfig(steps=60, save_every=20)


def _train(root, name, tc=BASE, **kwargs):
    return train(root, name, ModelConfig(), tc, builtin_corpus(), progress=False, **kwargs)


@pytest.fixture(scope="module")
def base_root(tmp_path_factory):
    """A 40-step run and the same run trained straight to 60 steps, trained once."""
    root = tmp_path_factory.mktemp("hardening-base")
    _train(root, "base")
    _train(root, "full", LONGER)
    return root


@pytest.fixture
def base_copy(base_root, tmp_path):
    shutil.copytree(base_root / "base", tmp_path / "base")
    return tmp_path, tmp_path / "base"


def _final_params(run):
    return ckpt.load_params(run, ckpt.list_steps(run)[-1])


def _assert_consistent(run, last):
    """Metrics hold one record per step, in order, for exactly the saved steps, and the
    train loss of every step 1..last once."""
    steps = [r["step"] for r in ckpt.read_metrics(run)]
    assert steps == sorted(set(steps)), steps
    assert steps == ckpt.list_steps(run)
    t_steps = ckpt.loss_history(run)[0]
    assert list(t_steps) == list(range(1, last + 1))


def _cli(capsys, root, *args):
    code = main(["--root", str(root), "--quiet", *args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


# Item 2: a large corpus -----------------------------------------------------------------


def test_tokenizer_index_is_built_once():
    """Rebuilding the index on every ``encode`` made a 50,000-line corpus take minutes."""
    tok = Tokenizer.from_lines(f"w{i} x{i}" for i in range(20_000))
    assert tok.index is tok.index
    assert tok.encode("w7 x19999 nope") == [tok.index["w7"], tok.index["x19999"], tok.unknown_id]
    assert tok.padding_id == len(tok) - 1 and tok.unknown_id == len(tok) - 2


@pytest.mark.parametrize("same_valid", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_batched_evaluation_equals_one_pass(same_valid, parallel):
    """A corpus larger than the evaluation batch gives the losses and prompt logits of one
    pass over all of it (validation lines equal to the training lines count once), also
    with each host device taking its share of every batch."""
    from flax import nnx

    from training.model.gpt import init_params
    from training.steps import build_evaluate, data_mesh

    mesh = data_mesh(64) if parallel else None
    if parallel and mesh is None:
        pytest.skip("needs two host devices (training.runtime configures them)")

    cfg = ModelConfig(vocab_size=50)
    graphdef, params = init_params(cfg, 3)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 50, (37, cfg.context + 1)).astype(np.int32)
    valid = data if same_valid else rng.integers(0, 50, (11, cfg.context + 1)).astype(np.int32)
    model = nnx.merge(graphdef, params)
    whole = jax.jit(build_evaluate(data, valid, rows=1000))(model)
    batched = jax.jit(build_evaluate(data, valid, rows=5, mesh=mesh))(model)
    for key in ("train_loss", "valid_loss", "prompt_logits"):
        np.testing.assert_allclose(batched[key], whole[key], rtol=2e-6, atol=1e-6)
    logits = model(jax.numpy.asarray(valid[:1, :-1]))[0]
    np.testing.assert_allclose(whole["prompt_logits"], logits, atol=1e-6)


def test_evaluation_memory_does_not_grow_with_the_corpus():
    """The compiled chunk of a 4,000-line corpus with 2,000 words (its logits alone would be
    384 MB) needs far less memory than those logits: evaluation goes in bounded batches."""
    from training.model.params import abstract_model
    from training.steps import build_chunk_fn, eval_rows, placeholders
    from training.train import make_optimizer

    mc = ModelConfig(vocab_size=2_000)
    rng = np.random.default_rng(0)
    data = rng.integers(0, mc.vocab_size, (4_000, mc.context + 1)).astype(np.int32)
    valid = rng.integers(0, mc.vocab_size, (500, mc.context + 1)).astype(np.int32)
    graphdef, shapes = abstract_model(mc)
    optimizer = make_optimizer(TrainConfig())
    rows = eval_rows(mc.context, mc.vocab_size)
    run_chunk = build_chunk_fn(graphdef, optimizer, data, valid, 64, 10, rows)
    args = (*placeholders(shapes, optimizer, 64), jax.random.key(0), 0, 0)
    memory = run_chunk.lower(*args).compile().memory_analysis()
    all_logits = len(data) * mc.context * mc.vocab_size * 4
    used = memory.temp_size_in_bytes + memory.output_size_in_bytes
    assert used < all_logits / 3, (used, all_logits)


# Item 3: files follow the umask ----------------------------------------------------------


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(run):
    files, folders = set(), set()
    for folder, dirs, names in os.walk(run):
        folders.add(stat.S_IMODE(os.stat(folder).st_mode))
        folders.update(stat.S_IMODE(os.stat(os.path.join(folder, d)).st_mode) for d in dirs)
        files.update(stat.S_IMODE(os.stat(os.path.join(folder, n)).st_mode) for n in names)
    return files, folders


def test_run_files_follow_a_umask_of_022_also_after_resume(tmp_path):
    with _umask(0o022):
        _train(tmp_path, "shared", TrainConfig(steps=20, save_every=10))
        assert _modes(tmp_path / "shared") == ({0o644}, {0o755})
        _train(tmp_path, "shared", TrainConfig(steps=30, save_every=10), resume=True)
    assert _modes(tmp_path / "shared") == ({0o644}, {0o755})


def test_run_files_follow_a_umask_of_077(tmp_path):
    with _umask(0o077):
        _train(tmp_path, "private", TrainConfig(steps=10, save_every=10))
    assert _modes(tmp_path / "private") == ({0o600}, {0o700})


# Item 6: bad lines in metrics.jsonl ------------------------------------------------------


def _good(step, valid=1.0):
    return f'{{"step": {step}, "first_step": {step}, "train_loss": [2.5], "valid_loss": {valid}}}'


BAD_LINES = [
    b"\xff\xfe not utf-8",
    b"{}",
    b"5",
    b'{"step": "x"}',
    b'{"step": true}',
    b'{"step": 3, "first_step": "1"}',
    b'{"step": 3, "train_loss": "abc"}',
    b'{"step": 3, "train_loss": [1, "a"]}',
    b'{"step": 3, "valid_loss": "low"}',
    b"[" * 100_000,
    b"not json",
]


def test_bad_metrics_lines_are_skipped_and_counted(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    lines = [_good(1).encode(), *BAD_LINES, _good(2, "null").encode(), b"", _good(4).encode()]
    (run / ckpt.METRICS_FILE).write_bytes(b"\n".join(lines) + b'\n{"step": 5, "tr')
    read = ckpt.read_metrics_checked(run)
    assert [r["step"] for r in read.records] == [1, 2, 4]
    assert read.skipped == list(range(2, 2 + len(BAD_LINES)))  # the torn last line is not
    assert read.notice() == f"metrics.jsonl: {len(BAD_LINES)} bad lines skipped (first: line 2)"
    assert [r["step"] for r in ckpt.read_metrics(run, upto=2)] == [1, 2]
    ckpt.save_step(run, 4, {"a": np.ones(1, np.float32)}, {"step": 4})
    t_steps, t_loss, v_steps, v_loss = ckpt.loss_history(run)
    assert list(t_steps) == [1, 2, 4] and list(v_steps) == [1, 4]


def test_clean_metrics_have_no_notice(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    ckpt.append_metrics(run, {"step": 0, "first_step": 1, "train_loss": [], "valid_loss": 3.0})
    read = ckpt.read_metrics_checked(run)
    assert read.skipped == [] and read.notice() is None
    assert ckpt.read_metrics_checked(tmp_path / "missing").records == []


def test_resume_skips_bad_metrics_lines_and_names_file_and_line(base_copy, capsys):
    root, run = base_copy
    lines = (run / ckpt.METRICS_FILE).read_bytes().splitlines()
    lines[3:3] = [b"\xff garbage", b"{}"]
    (run / ckpt.METRICS_FILE).write_bytes(b"\n".join(lines) + b"\n")
    code, err = _cli(
        capsys, root, "--run", "base", "--steps", "60", "--save-every", "20", "--resume"
    )
    assert code == 0, err
    notice = [line for line in err if "warning" in line]
    assert len(notice) == 1 and "metrics.jsonl" in notice[0] and "line 4" in notice[0], err
    assert ckpt.read_metrics_checked(run).skipped == []
    steps = [r["step"] for r in ckpt.read_metrics(run)]
    assert steps == sorted(set(steps)) and steps[-1] == 60


# Item 10: the last two steps keep optimizer state ---------------------------------------


def test_last_two_steps_keep_optimizer_state(base_root):
    run = base_root / "base"
    steps = ckpt.list_steps(run)
    with_opt = [s for s in steps if (ckpt.step_dir(run, s) / ckpt.OPT_FILE).exists()]
    assert with_opt == [20, 40]


def test_truncated_latest_optimizer_resumes_from_the_step_before(base_root, base_copy):
    root, run = base_copy
    opt = ckpt.step_dir(run, 40) / ckpt.OPT_FILE
    opt.write_bytes(opt.read_bytes()[:100])
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load_optimizer(run, 40)
    said = io.StringIO()
    summary = _train(root, "base", LONGER, resume=True, out=said)
    assert "resuming from step 20; removing the later step(s) 40" in said.getvalue()
    assert summary.steps[-1] == 60
    _assert_consistent(run, 60)
    assert [s for s in ckpt.list_steps(run) if ckpt.has_optimizer(run, s)] == [40, 60]
    full = _final_params(base_root / "full")
    for name, value in _final_params(run).items():
        np.testing.assert_allclose(value, full[name], rtol=0, atol=1e-6)


def test_deleted_latest_step_resumes_from_the_step_before(base_copy):
    root, run = base_copy
    shutil.rmtree(ckpt.step_dir(run, 40))
    summary = _train(root, "base", LONGER, resume=True)
    assert summary.steps[-1] == 60
    _assert_consistent(run, 60)


def test_no_whole_step_is_a_one_line_error(base_copy, capsys):
    root, run = base_copy
    for step in (20, 40):
        (ckpt.step_dir(run, step) / ckpt.OPT_FILE).write_bytes(b"\x08" + b"\x00" * 20)
    code, err = _cli(
        capsys, root, "--run", "base", "--steps", "60", "--save-every", "20", "--resume"
    )
    assert code == 2
    assert len(err) == 1 and err[0].startswith("interp-train: error:"), err
    assert "no step with both parameters and optimizer state" in err[0] and "40" in err[0]
    assert ckpt.list_steps(run)[-1] == 40  # nothing was removed


# Item 12: interrupted saves, duplicate records, a full disk ------------------------------


def test_kill_after_the_step_1_record_leaves_no_duplicate_step_0(tmp_path, monkeypatch, capsys):
    """Killed after step 1's metrics record but before its step was saved: step 0 is the
    only step, and resuming from it must not write a second step 0 record."""
    real_save = ckpt.save_step

    def killed_at_step_1(run, step, *args, **kwargs):
        if step == 1:
            raise KeyboardInterrupt
        return real_save(run, step, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_step", killed_at_step_1)
    args = ("--run", "k", "--steps", "20", "--save-every", "10")
    assert _cli(capsys, tmp_path, *args)[0] == 130
    assert ckpt.list_steps(tmp_path / "k") == [0]
    assert [r["step"] for r in ckpt.read_metrics(tmp_path / "k")] == [0, 1]
    monkeypatch.setattr(ckpt, "save_step", real_save)
    code, err = _cli(capsys, tmp_path, *args, "--resume")
    assert code == 0, err
    _assert_consistent(tmp_path / "k", 20)


def test_replacing_a_step_never_unlists_it(tmp_path, monkeypatch):
    run = tmp_path / "r"
    run.mkdir()
    ckpt.save_step(run, 5, {"a": np.ones(3, np.float32)}, {"step": 5})
    real_rename = os.rename

    def fail_moving_in(src, dst):
        if os.path.basename(src).startswith(".tmp-"):
            raise OSError(errno.EIO, "injected")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", fail_moving_in)
    with pytest.raises(OSError):
        ckpt.save_step(run, 5, {"a": np.zeros(3, np.float32)}, {"step": 5})
    monkeypatch.setattr(os, "rename", real_rename)
    assert ckpt.list_steps(run) == [5]
    np.testing.assert_array_equal(ckpt.load_params(run, 5)["a"], np.ones(3))
    assert sorted(p.name for p in (run / ckpt.STEPS_DIR).iterdir()) == ["step-000000005"]
    ckpt.save_step(run, 5, {"a": np.zeros(3, np.float32)}, {"step": 5})
    np.testing.assert_array_equal(ckpt.load_params(run, 5)["a"], np.zeros(3))
    assert sorted(p.name for p in (run / ckpt.STEPS_DIR).iterdir()) == ["step-000000005"]


def test_clean_partial_puts_back_a_step_set_aside_and_removes_leftovers(tmp_path):
    """The state a kill leaves between setting a step aside and moving its replacement in."""
    run = tmp_path / "r"
    run.mkdir()
    ckpt.save_step(run, 0, {"a": np.ones(3, np.float32)}, {"step": 0})
    ckpt.save_step(run, 7, {"a": np.ones(3, np.float32)}, {"step": 7})
    steps = run / ckpt.STEPS_DIR
    os.rename(ckpt.step_dir(run, 0), steps / ".old-000000000-abc")
    shutil.copytree(ckpt.step_dir(run, 7), steps / ".old-000000007-def")  # replaced already
    (steps / ".tmp-000000000-xyz").mkdir()
    for leftover in (".metrics.1234.tmp", ".run.json.5678.tmp"):
        (run / leftover).write_text("{")
    assert ckpt.list_steps(run) == [7]
    ckpt.clean_partial(run)
    assert ckpt.list_steps(run) == [0, 7]
    assert sorted(p.name for p in steps.iterdir()) == ["step-000000000", "step-000000007"]
    assert sorted(p.name for p in run.iterdir()) == [ckpt.STEPS_DIR]


def test_rewrite_metrics_removes_its_temporary_file_on_failure(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    ckpt.append_metrics(run, {"step": 0})
    with pytest.raises(TypeError):
        ckpt.rewrite_metrics(run, [{"step": 0}, {"step": 1, "bad": object()}])
    assert sorted(p.name for p in run.iterdir()) == [ckpt.METRICS_FILE]
    assert ckpt.read_metrics(run) == [{"step": 0}]


@pytest.mark.parametrize("passes", [0, 1, 2], ids=["steps-folder", "metrics", "step-file"])
def test_disk_full_is_a_one_line_error_and_leaves_no_temporary_files(
    tmp_path, monkeypatch, capsys, passes
):
    """The disk fills as step 2 is saved: a later flush to disk fails (of the steps folder
    after step 2's rename, of step 3's metrics record, or of a file of step 3's save)."""
    real_fsync = os.fsync
    run = tmp_path / "full"

    def full_disk(fd):
        nonlocal passes
        if ckpt.step_dir(run, 2).exists():
            if passes == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            passes -= 1
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    args = ("--run", "full", "--steps", "20", "--save-every", "10")
    code, err = _cli(capsys, tmp_path, *args)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("interp-train: error:"), err
    assert "No space left on device" in err[0] and "--resume" in err[0]
    assert not list(run.rglob(".*")), list(run.rglob(".*"))
    assert ckpt.list_steps(run) == [0, 1, 2]
    assert _cli(capsys, tmp_path, *args, "--resume")[0] == 0
    _assert_consistent(run, 20)


# Item 13: saving does not scan the run -------------------------------------------------


def test_saving_touches_only_the_step_leaving_the_window(tmp_path, monkeypatch):
    """Saving scanned every step to drop optimizer state (quadratic in the steps); now a save
    drops one file, of the step two saves back, and lists nothing."""
    real_list, real_drop = ckpt.list_steps, ckpt.drop_optimizer
    listed, dropped = [], []

    def counting_list(run):
        listed.append(run)
        return real_list(run)

    def recording_drop(run, step):
        dropped.append(step)
        return real_drop(run, step)

    monkeypatch.setattr(ckpt, "list_steps", counting_list)
    monkeypatch.setattr(ckpt, "drop_optimizer", recording_drop)
    summary = _train(tmp_path, "w", TrainConfig(steps=30, save_every=10))
    assert len(summary.steps) == 13
    assert len(listed) <= 3, len(listed)  # the window's start and the summary, not per save
    assert dropped == summary.steps[:-2]
    run = tmp_path / "w"
    assert [s for s in summary.steps if ckpt.has_optimizer(run, s)] == summary.steps[-2:]
