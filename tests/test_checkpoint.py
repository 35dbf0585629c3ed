"""The run folder: atomic steps, metadata-only listing, no pickle, refusal of bad names."""

import json

import numpy as np
import pytest

from training import checkpoint as ckpt
from training.model.params import ParamsError, unflatten_params


def test_steps_are_safetensors_and_json_only(small_root):
    root, _ = small_root
    run = ckpt.read_run(root, "small")
    for step in ckpt.list_steps(run.path):
        names = {p.name for p in ckpt.step_dir(run.path, step).iterdir()}
        assert names <= {ckpt.PARAMS_FILE, ckpt.SIDECAR, ckpt.OPT_FILE}
        raw = (ckpt.step_dir(run.path, step) / ckpt.PARAMS_FILE).read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        json.loads(raw[8 : 8 + header_len])  # a safetensors header, not a pickle
        assert b"\x80\x04" not in raw[:2]


def test_loading_needs_no_optimizer_and_round_trips(small_root):
    root, _ = small_root
    run = ckpt.read_run(root, "small")
    flat = ckpt.load_params(run.path, 100)
    assert ckpt.load_optimizer(run.path, 100) is None
    _, params = unflatten_params(run.model, flat)
    assert sum(np.asarray(x).size for x in __import__("jax").tree.leaves(params)) == 10_660


def test_partial_step_is_never_listed(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    ckpt.save_step(run, 5, {"a": np.ones(3, np.float32)}, {"step": 5})
    partial = run / ckpt.STEPS_DIR / ".tmp-000000007-x"
    partial.mkdir()
    (partial / ckpt.PARAMS_FILE).write_bytes(b"half a file")
    assert ckpt.list_steps(run) == [5]
    ckpt.clean_partial(run)
    assert not partial.exists()


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    run = tmp_path / "r"
    run.mkdir()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "write_params", boom)
    with pytest.raises(OSError):
        ckpt.save_step(run, 3, {"a": np.ones(3, np.float32)}, {"step": 3})
    assert ckpt.list_steps(run) == []
    assert list((run / ckpt.STEPS_DIR).iterdir()) == []


def test_corrupt_step_gives_a_clear_error(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    ckpt.save_step(run, 1, {"a": np.ones(3, np.float32)}, {"step": 1})
    (ckpt.step_dir(run, 1) / ckpt.PARAMS_FILE).write_bytes(b"\x00" * 20)
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load_params(run, 1)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_params(run, 2)


def test_wrong_shapes_are_refused(small_root):
    root, _ = small_root
    run = ckpt.read_run(root, "small")
    flat = dict(ckpt.load_params(run.path, 0))
    flat["wte"] = flat["wte"][:, :5]
    with pytest.raises(ParamsError, match="wte"):
        unflatten_params(run.model, flat)


@pytest.mark.parametrize("name", ["../etc", "/etc", "a/b", "..", ".hidden", "", "x" * 200])
def test_run_names_never_leave_the_root(tmp_path, name):
    with pytest.raises(ckpt.CheckpointError):
        ckpt.run_dir(tmp_path, name)


def test_torn_metrics_line_is_skipped(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    ckpt.append_metrics(run, {"step": 1, "first_step": 1, "train_loss": [1.0], "valid_loss": 2.0})
    with open(run / ckpt.METRICS_FILE, "a") as fh:
        fh.write('{"step": 2, "train_lo')
    assert [r["step"] for r in ckpt.read_metrics(run)] == [1]
