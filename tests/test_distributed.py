"""``interp-train`` over two processes (JAX's multi-process runtime, Gloo on CPU) trains
what one process trains, and only process 0 writes.

Each process has one host device, so the two together form the same two-device mesh as
one process with two (``training.runtime``): the same batches split the same way, one
all-reduce each step, now between processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import numpy as np

from tests.browser import train_command
from training import checkpoint as ckpt
from training.config import TrainConfig
from training.corpus import builtin_corpus
from training.model.config import ModelConfig
from training.train import train

ONE_DEVICE = "--xla_force_host_platform_device_count=1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_processes(
    roots: tuple[Path, Path], *args: str, timeout: float = 600, only: tuple = ((), ())
) -> list:
    """Both processes of one cluster, each with its own root (and ``only`` its own extra
    options); their (exit code, stdout, stderr)."""
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": ONE_DEVICE}
    procs = [
        subprocess.Popen(
            train_command(
                root,
                "fruits",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
                *args,
                *only[i],
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, root in enumerate(roots)
    ]
    try:
        return [(p.wait(timeout), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _same_run(one: Path, two: Path) -> None:
    assert ckpt.list_steps(one) == ckpt.list_steps(two)
    for step in ckpt.list_steps(one):
        a, b = ckpt.load_params(one, step), ckpt.load_params(two, step)
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6, err_msg=name)
    loss = [ckpt.loss_history(run)[1] for run in (one, two)]
    valid = [ckpt.loss_history(run)[3] for run in (one, two)]
    np.testing.assert_allclose(loss[0], loss[1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(valid[0], valid[1], rtol=0, atol=1e-6)


def test_two_processes_train_and_resume_as_one_process_does(tmp_path):
    corpus, mc = builtin_corpus(), ModelConfig()
    one, p0, p1 = tmp_path / "one", tmp_path / "p0", tmp_path / "p1"
    train(one, "fruits", mc, TrainConfig(steps=200, save_every=100), corpus, progress=False)
    results = _two_processes((p0, p1), "--steps", "200", "--save-every", "100")
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    assert "run saved to" in results[0][1]
    assert "process 1 of 2 done" in results[1][1]
    _same_run(one / "fruits", p0 / "fruits")
    assert not p1.exists()  # process 1 wrote nothing, not even the root

    # Resumed: process 0 reads its newest step and sends it (process 1 has no copy).
    train(
        one,
        "fruits",
        mc,
        TrainConfig(steps=300, save_every=100),
        corpus,
        resume=True,
        progress=False,
    )
    results = _two_processes((p0, p1), "--steps", "300", "--save-every", "100", "--resume")
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    _same_run(one / "fruits", p0 / "fruits")
    assert ckpt.list_steps(p0 / "fruits")[-1] == 300 and not p1.exists()


def test_a_refusal_on_process_0_stops_every_process(tmp_path):
    """Nothing to resume on process 0: both processes stop with one line, none waits."""
    results = _two_processes((tmp_path / "p0", tmp_path / "p1"), "--resume", timeout=180)
    codes = [r[0] for r in results]
    errors = [[ln for ln in r[2].splitlines() if ln.startswith("interp-train:")] for r in results]
    assert codes == [2, 2], results
    assert errors[0] == [
        "interp-train: error: nothing to resume: no run named 'fruits' in " + str(tmp_path / "p0")
    ]
    assert errors[1] == [
        "interp-train: error: process 0 could not open the run; its output says why"
    ]


def test_processes_given_different_runs_all_stop(tmp_path):
    """Process 1 was given another learning rate: both say so and stop, nothing written."""
    roots = (tmp_path / "p0", tmp_path / "p1")
    results = _two_processes(roots, "--steps", "5", only=((), ("--lr", "0.5")), timeout=180)
    assert [r[0] for r in results] == [2, 2], results
    for _, _, err in results:
        lines = [ln for ln in err.splitlines() if ln.startswith("interp-train:")]
        assert lines == [
            "interp-train: error: process 1 of 2 was given another model, training options, "
            "corpus or jax version than process 0: every process runs the same command but "
            "for --process-id"
        ]
    assert not any(root.exists() for root in roots)
