"""All-checkpoint metrics: the vectorised pass equals an independent numpy forward and the
panels' one-step pass at every checkpoint, the timeline's clicks and controls (on the short
``small`` run), and the default run's history says what training did (the fully trained
run: the slow tier)."""

import numpy as np
import pytest

from interp_app.core.analyzer import Analyzer
from interp_app.core.api import Run
from interp_app.core.prompt import encode_prompt
from interp_app.core.store import RunStore
from interp_app.server.app import create_app
from tests.dash_client import DashClient, decode_array
from tests.numpy_reference import forward, head_metrics


@pytest.fixture(scope="module")
def analyzer(default_root):
    return Analyzer(RunStore(default_root[0]))


@pytest.fixture(scope="module")
def small(small_root):
    return Analyzer(RunStore(small_root[0]))


def _query(analyzer, run="fruits", text="i like spicy so i like", target="chili"):
    info = analyzer.store.info(run)
    prompt = encode_prompt(info.tokenizer, info.model.context, text)
    return info, prompt, info.tokenizer.vocab.index(target)


@pytest.mark.parametrize("pos, src", [(5, 2), (3, 0)])
def test_vectorised_metrics_equal_numpy_and_the_one_step_pass(small, pos, src):
    info, prompt, target = _query(small, "small")
    steps, values, bad = small.timeline("small", prompt, pos, target, src)
    assert bad == [] and steps == small.store.steps("small")
    run = Run(small, "small")
    cfg = info.model
    for i, step in enumerate(steps):
        ref = forward(
            small.store.params("small", step), list(prompt.ids), cfg.n_layers, cfg.n_heads
        )
        one = run.metrics(step, prompt, target="chili", pos=pos, src=src)
        for name, expected in head_metrics(ref, pos, target, src).items():
            scale = max(1.0, float(np.abs(expected).max()))
            np.testing.assert_allclose(values[name][i], expected, atol=2e-5 * scale, err_msg=name)
            np.testing.assert_allclose(one.heads[name], expected, atol=2e-5 * scale, err_msg=name)
        logits = ref["logits"][pos]
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(values["probs"][i], probs, atol=1e-5)
        np.testing.assert_allclose(values["ablation"][i], one.heads["ablation"], atol=2e-5)


def test_history_of_the_default_run(analyzer):
    info, prompt, target = _query(analyzer)
    steps, values, _ = analyzer.timeline("fruits", prompt, 5, target)
    chili = values["probs"][:, target]
    assert steps[0] == 0 and abs(chili[0] - 1 / 19) < 0.02
    assert int(np.argmax(values["probs"][-1])) == target
    assert np.abs(values["dla"][0]).max() < 0.05  # untrained heads write almost nothing
    assert np.abs(values["dla"][-1]).max() > 0.5


def test_timeline_grows_with_new_steps(tmp_path, small_root):
    import shutil

    shutil.copytree(small_root[0] / "small", tmp_path / "small")
    last = tmp_path / "small" / "steps" / "step-000000300"
    hidden = tmp_path / "hidden"
    shutil.move(last, hidden)
    s = Analyzer(RunStore(tmp_path))
    info = s.store.info("small")
    prompt = encode_prompt(info.tokenizer, info.model.context, "lemon tastes sour")
    steps, values, _ = s.timeline("small", prompt, 2, 0)
    assert steps[-1] == 250
    shutil.move(hidden, last)  # the step lands while the app is running
    steps2, values2, _ = s.timeline("small", prompt, 2, 0)
    assert steps2[-1] == 300 and len(steps2) == len(steps) + 1
    np.testing.assert_array_equal(values2["dla"][:-1], values["dla"])


def test_timeline_click_moves_step_and_head(small_root):
    client = DashClient(create_app(small_root[0]))
    sel = client.select(None, search="?run=small")["selection"]["data"]
    point = {"points": [{"x": store_index(client, 150), "y": "L0H1"}]}
    new = client.select("head-timeline.clickData", point, sel)["selection"]["data"]
    assert (new["step"], new["layer"], new["head"]) == (150, 0, 1)
    assert new["prompt"] == sel["prompt"] and new["target"] == sel["target"]
    r = client.render(new)
    fig = r["head-timeline"]["figure"]
    assert "selected L0H1 at step 150" in fig["layout"]["title"]["text"]
    marker = [s for s in fig["layout"]["shapes"] if s["type"] == "line"][0]
    assert fig["layout"]["xaxis"]["ticktext"][0] == "0" and marker["x0"] == store_index(client, 150)


def store_index(client, step):
    return client.app.server.config["ANALYZER"].store.steps("small").index(step)


def test_play_advances_and_loops(small_root):
    client = DashClient(create_app(small_root[0]))
    steps = small_root[1].steps
    sel = client.select(None, search=f"?run=small&step={steps[-2]}")["selection"]["data"]
    nxt = client.select("play-interval.n_intervals", 1, sel)["selection"]["data"]
    assert nxt["step"] == steps[-1] and nxt["head"] == sel["head"]
    first = client.select("play-interval.n_intervals", 2, nxt)["selection"]["data"]
    assert first["step"] == 0


def test_compare_two_steps_shows_differences(small_root):
    client = DashClient(create_app(small_root[0]))
    steps = small_root[1].steps
    last, before = steps[-1], steps[-2]
    sel = client.select(None, search="?run=small")["selection"]["data"]
    assert sel["step"] == last
    plain = client.render(sel)
    values = {
        "selection.data": sel,
        "metric-picker.value": "dla",
        "source-picker.value": 0,
        "compare-step.value": 100,
        "multiples-mode.value": "change",
    }
    diff = client.call(
        "run-picker.options",
        values,
        ["compare-step.value"],
        {"rendered.data": plain["rendered"]["data"]},
    )
    grid = diff["head-grid"]["figure"]
    assert f"step 100 → {last}" in grid["layout"]["title"]["text"]
    bars = diff["residual-contributions"]["figure"]
    assert f"step 100 → {last}" in bars["layout"]["title"]["text"]
    z_now = decode_array(plain["head-grid"]["figure"]["data"][0]["z"])
    assert not np.allclose(decode_array(grid["data"][0]["z"]), z_now)
    title = diff["head-multiples"]["figure"]["layout"]["title"]["text"]
    assert f"Change since step {before}" in title


def test_chunks_are_bounded_in_bytes():
    """A big model's steps are stacked a few at a time: 64 GPT-2-small steps (the padded
    chunk of a 3-step run) asked for 30 GB and the worker was killed."""
    from interp_app.core.store import CHUNK, chunk_steps, stack_chunks

    assert chunk_steps(43_000) == CHUNK  # the article's model
    assert chunk_steps(475 * 2**20) == 1  # GPT-2 small
    flats = [{"w": np.full((1024, 1024), float(i), np.float32)} for i in range(3)]  # 4 MiB each
    chunks = stack_chunks(flats)
    assert [c["w"].shape[0] for c in chunks] == [16]  # 64 MiB / 4 MiB, the last one padded
    assert [float(c["w"][i, 0, 0]) for c in chunks for i in range(4)] == [0.0, 1.0, 2.0, 2.0]


def test_a_run_without_losses_says_so_on_the_loss_chart():
    from interp_app.panels.loss import NO_LOSS, loss_figure

    empty = (np.array([]), np.array([]), np.array([]), np.array([]))
    assert NO_LOSS in loss_figure(empty, 2000)["layout"]["annotations"]
    some = (np.array([1, 2]), np.array([3.0, 2.0]), np.array([2]), np.array([2.5]))
    assert not loss_figure(some, 2)["layout"]["annotations"]
