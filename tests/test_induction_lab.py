"""The induction lab end to end. Fast tier: the training loss's weighting and gradient, the
held-out losses the trainer records and the phase change read from them, the app's opening
prompt, and the options. Slow tier: issue #16's acceptance on seed 0 (``interp-train --task
induction`` with the defaults forms an induction head in a phase change the checkpoints
resolve); ``bench/induction_bench.py`` prints the same figures for seeds 0-2."""

from __future__ import annotations

import json

import jax
import numpy as np
import optax
import pytest

from interp_app.core.induction_run import (
    LabRun,
    ablated_repeat_loss,
    phase_figures,
    phase_steps,
    recorded,
    recorded_from,
    timeline,
)
from training import checkpoint as ckpt
from training.cli import main
from training.induction.config import InductionConfig
from training.induction.data import heldout, repeated_mask
from training.induction.loop import default_prompts
from training.induction.loss import position_weights, weighted_cross_entropy


def _refused(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("interp-train: error:"), err
    return err[0]


def test_the_training_loss_weights_the_repeated_part():
    """Weights: the repeated positions count ``repeat_weight`` times the others, each
    sequence sums to 1/B; the loss and its hand-written gradient equal autodiff's."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, size=(2, 6)).astype(np.int32)

    @jax.jit  # one compilation, not one per operation
    def both(z, lengths):
        w = position_weights(lengths, 6, 5.0)

        def reference(z):
            return (optax.softmax_cross_entropy_with_integer_labels(z, labels) * w).sum()

        ours = jax.value_and_grad(lambda z: weighted_cross_entropy(z, labels, w))
        return w, position_weights(lengths, 6, 1.0), ours(z), jax.value_and_grad(reference)(z)

    w, ones, (value, grad), (ref_value, ref_grad) = both(logits, np.array([2, 4], np.int32))
    # context 6: repeated positions t >= 7 - L, i.e. {5} and {3, 4, 5}
    np.testing.assert_allclose(w[0], np.array([1, 1, 1, 1, 1, 5]) / 10 / 2, rtol=1e-6)
    np.testing.assert_allclose(w[1], np.array([1, 1, 1, 5, 5, 5]) / 18 / 2, rtol=1e-6)
    np.testing.assert_allclose(ones, np.full((2, 6), 1 / 12), rtol=1e-6)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-7)


def _record(step: int, repeat: float, by_position: list[float]) -> dict:
    return {"step": step, "valid_loss": 3.0, "repeat_loss": repeat, "loss_by_position": by_position}


def test_recorded_losses_and_the_phase_change_they_show():
    """Only complete steps whose record has every held-out loss count (a later record of a
    step replaces nothing, as the loss curve reads them); the phase change is the repeated
    part's 10/50/90% crossings; the ICL score is the last position minus position T // 4."""
    t = 8
    flat = [3.0] * t
    falling = [3.0] * 6 + [1.0, 0.5]
    records = [
        _record(0, 4.0, flat),
        _record(10, 3.8, flat),
        {"step": 15, "valid_loss": 3.0, "repeat_loss": 3.5},  # an older run's record
        _record(20, 2.0, falling),
        _record(20, 9.0, flat),  # a repeated step: dropped
        _record(30, 1.0, falling),
        _record(40, 0.0, falling),  # not a complete step
    ]
    rec = recorded_from(records, [0, 10, 15, 20, 30], t)
    np.testing.assert_array_equal(rec.steps, [0, 10, 20, 30])
    np.testing.assert_array_equal(rec.repeat_loss, [4.0, 3.8, 2.0, 1.0])
    assert rec.by_position.shape == (4, t) and rec.early == 2
    np.testing.assert_allclose(rec.icl, [0.0, 0.0, -2.5, -2.5])
    # drop 3.0: 10% (3.7) by step 20, 50% (2.5) by 20, 90% (1.3) by 30
    assert rec.phase_steps() == {"start": 20, "middle": 20, "end": 30}
    assert phase_steps(np.arange(3), np.ones(3)) == {"start": None, "middle": None, "end": None}
    empty = recorded_from([], [0], t)
    assert empty.steps.shape == (0,) and empty.by_position.shape == (0, t)


def test_the_opening_prompt_repeats_a_segment_and_its_corruption_does_not():
    cfg = InductionConfig(vocab=9, context=12, min_segment=2, max_segment=4, valid_sequences=8)
    prompt, corrupt = default_prompts(cfg)
    tokens, lengths, offsets = heldout(cfg)
    i = int(np.argmax(lengths))
    words = prompt.split()
    assert words == [f"t{t}" for t in tokens[i, : cfg.context]] and lengths[i] == cfg.max_segment
    n, d, length = cfg.context + 1, offsets[i], lengths[i]
    assert words[n - length :] == words[n - length - d : n - length - d + length - 1]
    changed = [j for j, (a, b) in enumerate(zip(words, corrupt.split(), strict=True)) if a != b]
    assert changed == list(range(n - length - d, n - d))  # the first copy, all of it


def test_induction_options(tmp_path, capsys):
    """--repeat-weight reaches the config; bad values are one line, nothing written; with
    the fruits task it is refused like the other induction options."""
    from training.induction.cli import induction_config

    assert induction_config({"repeat_weight": 2.5}).repeat_weight == 2.5
    assert induction_config({"adam_eps": 3e-5}).adam_eps == 3e-5
    assert induction_config({}) == InductionConfig()
    root = tmp_path / "ck"
    for bad, why in (("0", "positive"), ("nan", "finite"), ("inf", "finite")):
        base = ["--task", "induction", "--root", str(root)]
        line = _refused(capsys, [*base, "--repeat-weight", bad])
        assert f"repeat_weight must be {'a finite number' if why == 'finite' else why}" in line
    line = _refused(capsys, ["--root", str(root), "--repeat-weight", "3"])
    assert "--repeat-weight apply to --task induction only" in line
    line = _refused(capsys, ["--root", str(root), "--adam-eps", "1e-4"])
    assert "--adam-eps apply to --task induction only" in line
    assert not root.exists() or not any(root.iterdir())
    with pytest.raises(ValueError, match="repeat_weight must be a finite number"):
        InductionConfig.from_dict({"repeat_weight": "5"})


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """Seed 0 of ``interp-train --task induction`` with the defaults (trained once)."""
    root = tmp_path_factory.mktemp("induction")
    assert main(["--task", "induction", "--root", str(root), "--quiet"]) == 0
    tl = timeline(root, "induction-s0")
    return root, "induction-s0", tl, phase_figures(tl)


def test_the_default_induction_run_forms_an_induction_head(default_run):
    root, run, tl, fig = default_run
    meta = ckpt.read_run(root, run).meta
    assert meta["vocab"][:2] == ["t0", "t1"] and meta["induction"]["seed"] == 0
    assert (meta["prompt"], meta["corrupt"]) == default_prompts(InductionConfig())
    records = [json.loads(line) for line in (root / run / ckpt.METRICS_FILE).open()]
    assert all("repeat_loss" in r and r["valid_loss"] is not None for r in records)

    # checkpoints every 10 steps through the transition
    assert set(range(fig["loss_10"], fig["loss_90"] + 1, 10)) <= set(tl.steps.tolist()), fig
    # the repeated part's loss falls from 10% to 90% of its drop within 300 steps
    assert fig["loss_90"] - fig["loss_10"] <= 300, fig
    # the best layer-1 head's induction score rises from below 0.1 to above 0.7, crossing
    # half its rise within 60 steps of the loss's halfway step
    start, end = fig["induction"]
    assert start < 0.1 and end > 0.7, fig
    assert abs(fig["induction_50"] - fig["loss_50"]) <= 60, fig
    # the best layer-0 head's previous-token score rises in the same window
    assert fig["previous"][1] > fig["previous"][0] + 0.2, fig
    assert fig["loss_10"] - 60 <= fig["previous_50"] <= fig["loss_90"] + 60, fig
    # in-context learning: late tokens predicted better than early ones, at the end only
    assert fig["icl"][1] < fig["icl"][0] - 0.5, fig
    # the previous-token head K-composes with the induction head more than any other pair
    assert fig["k_pair_is_largest"], fig
    # zero-ablating layer 1's heads together costs far more than a nat on the repeated part
    lab = LabRun.open(root, run)
    last = int(tl.steps[-1])
    both = ablated_repeat_loss(lab, last, 1, tuple(range(lab.mc.n_heads)))
    assert both - tl.repeat_loss[-1] >= 1.0, (both, tl.repeat_loss[-1])

    # the trainer's own held-out losses (all 256 sequences) are the app's recomputation
    rec = recorded(root, run)
    full = timeline(root, run, sequences=InductionConfig().valid_sequences)
    np.testing.assert_array_equal(rec.steps, full.steps)
    np.testing.assert_allclose(rec.repeat_loss, full.repeat_loss, rtol=1e-5)
    np.testing.assert_allclose(rec.by_position, full.by_position, rtol=1e-5)
    np.testing.assert_allclose(rec.icl, full.icl, atol=1e-5)
    # (256 sequences there, 128 here: the halfway steps agree to a checkpoint or two)
    assert abs(rec.phase_steps()["middle"] - fig["loss_50"]) <= 20, (rec.phase_steps(), fig)
    assert repeated_mask(lab.lengths, lab.cfg.context).shape == (128, 32)


@pytest.mark.xfail(
    strict=True,
    reason="issue #16 open: in seed 0 both layer-1 heads become induction heads in lockstep "
    "(0.72 and 0.78 at step 800); zeroing either one alone costs 0.2-0.3 nats (both together: "
    "several). A larger AdamW epsilon gives one head per seed but a late transition, and "
    "seed 1 none (session 8, training/induction/config.py)",
)
def test_zero_ablating_the_best_induction_head_costs_a_nat(default_run):
    root, run, tl, fig = default_run
    lab = LabRun.open(root, run)
    head = int(fig["induction_head"][-1])
    ablated = ablated_repeat_loss(lab, int(tl.steps[-1]), 1, head)
    assert ablated - tl.repeat_loss[-1] >= 1.0, (ablated, tl.repeat_loss[-1])
