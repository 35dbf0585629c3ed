"""Resume ends where an uninterrupted run ends; a kill at any moment never lists a partial step."""

import json
import os
import random
import signal
import subprocess
import time

import numpy as np

from tests.browser import train_command
from training import checkpoint as ckpt
from training.config import TrainConfig
from training.corpus import builtin_corpus
from training.model.config import ModelConfig
from training.train import train


def _final(root, name):
    run = ckpt.read_run(root, name)
    return ckpt.load_params(run.path, ckpt.list_steps(run.path)[-1])


def test_resume_matches_uninterrupted(tmp_path):
    corpus, mc = builtin_corpus(), ModelConfig()
    train(tmp_path, "full", mc, TrainConfig(steps=60, save_every=20), corpus, progress=False)
    train(tmp_path, "split", mc, TrainConfig(steps=40, save_every=20), corpus, progress=False)
    summary = train(
        tmp_path,
        "split",
        mc,
        TrainConfig(steps=60, save_every=20),
        corpus,
        resume=True,
        progress=False,
    )
    a, b = _final(tmp_path, "full"), _final(tmp_path, "split")
    assert summary.steps[-1] == 60
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6)
    full_loss = ckpt.loss_history(tmp_path / "full")[1]
    split_loss = ckpt.loss_history(tmp_path / "split")[1]
    assert len(split_loss) == 60
    np.testing.assert_allclose(full_loss, split_loss, atol=1e-5)


def test_kill_during_training_never_lists_a_partial_step(tmp_path):
    """SIGKILL the trainer at 10 random moments (some while it starts, most among saves);
    after each, every listed step loads; then ``--resume`` finishes the run."""
    cmd = train_command(tmp_path, "k", "--steps", "3000", "--save-every", "5")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = tmp_path / "k"
    rng = random.Random(7)
    for attempt in range(10):
        args = cmd + (["--resume"] if attempt else [])
        seen = len(ckpt.list_steps(run))
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if attempt % 3 == 2:  # while it imports, compiles or restores
            time.sleep(rng.uniform(0.0, 3.0))
        else:  # while saves are running
            deadline = time.monotonic() + 120
            while len(ckpt.list_steps(run)) <= seen + 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.4))
        listed = ckpt.list_steps(run)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt.clean_partial(run)  # what the next start does first (puts back a step set aside)
        steps = ckpt.list_steps(run)
        assert steps, proc.stderr.read().decode()
        assert set(listed) <= set(steps), sorted(set(listed) - set(steps))  # no step lost
        for step in steps:
            ckpt.load_params(run, step)
            json.loads((ckpt.step_dir(run, step) / ckpt.SIDECAR).read_text())
        assert ckpt.load_optimizer(run, steps[-1]) is not None or len(steps) > 1
    before = ckpt.list_steps(tmp_path / "k")[-1]
    done = subprocess.run(
        train_command(tmp_path, "k", "--steps", str(before + 10), "--save-every", "5", "--resume"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert ckpt.list_steps(tmp_path / "k")[-1] == before + 10
