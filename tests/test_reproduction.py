"""The seed article, reproduced: the default run predicts `chili` and generalises."""

from training import checkpoint as ckpt


def test_default_run_predicts_chili(default_root):
    root, summary = default_root
    assert summary.prompt == "i like spicy so i like"
    assert summary.top[0][0] == "chili", summary.top
    assert summary.valid_loss <= 1.5


def test_default_run_has_the_promised_series(default_root):
    root, summary = default_root
    run = ckpt.read_run(root, "fruits")
    steps = ckpt.list_steps(run.path)
    assert steps[0] == 0 and steps[-1] == 10_000 and len(steps) >= 101
    t_steps, t_loss, v_steps, v_loss = ckpt.loss_history(run.path)
    assert list(t_steps) == list(range(1, 10_001))
    assert list(v_steps) == steps
    # optimizer state only where it is needed to resume: the last two steps
    with_opt = [s for s in steps if (ckpt.step_dir(run.path, s) / ckpt.OPT_FILE).exists()]
    assert with_opt == [9_900, 10_000]
    assert run.meta["corpus"]["source"] == "built-in fruits"
    assert len(run.meta["vocab"]) == 19
