"""The public API and ``interp-capture`` give the app's own numbers, exactly, and refuse bad
input in one line (the CLI: exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from interp_app.core import api
from interp_app.core.analyzer import Analyzer
from interp_app.core.prompt import encode_prompt
from interp_app.core.store import RunStore
from interp_app.core.view import compute_lens, compute_patching, compute_view, resolve
from interp_app.server import capture_cli
from training.checkpoint import CheckpointError

PROMPT, CORRUPT = "i like spicy so i like", "i like sweet so i like"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def root(small_root):
    return small_root[0]


@pytest.fixture(scope="module")
def run(root):
    return api.open_run(root, "small")


@pytest.fixture(scope="module")
def analyzer(root):
    """The app's analyzer, apart from the API's: no cached result is shared between them."""
    return Analyzer(RunStore(root))


SELECTIONS = [
    {"step": 300},
    {"step": 300, "pos": "2", "target": "chili", "head": "L0H1"},
    {"step": 100, "prompt": "apple is sweet", "target": "sweet", "head": "L1H1"},
    {"step": 300, "ablate": "L0H1,L1H0", "ablate_mode": "mean"},
    {"step": 150, "ablate": "L1H0", "ablate_mode": "valid-mean", "head": "L1H0"},
    {"step": 300, "ablate": "L0H0", "ablate_mode": "zero", "target": "PADDING"},
]


def _app_view(analyzer, raw, src=0):
    sel, notes = resolve(analyzer, {"run": "small", "prompt": PROMPT, **raw})
    assert sel is not None and not notes
    return sel, compute_view(analyzer, sel, src=src, ablation=True)  # the grid showing ablation


def _api_metrics(run, raw, src=0):
    """The API asked as a notebook would, with the raw values (defaults left to it)."""
    pos = raw.get("pos")
    return run.metrics(
        raw["step"],
        raw.get("prompt", PROMPT),
        target=raw.get("target"),
        pos=None if pos is None else int(pos),
        head=raw.get("head"),
        src=src,
        ablate=raw.get("ablate", ""),
        mode=raw.get("ablate_mode", "zero"),
    )


def _assert_same_as_view(m: api.Metrics, view, sel, lens) -> None:
    """Every number a panel draws, compared exactly (the same functions on the same input);
    ``lens``: the page's logit lens (``compute_lens``), at the positions it reads."""
    assert (m.step, m.target, m.pos, m.head, m.ablate, m.mode) == (
        sel.step,
        sel.target,
        sel.pos,
        sel.head_name,
        sel.ablate,
        sel.mode,
    )
    assert list(m.words) == view.words and m.target_id == view.target_id
    np.testing.assert_array_equal(m.probs[view.pred_ids], view.pred_probs)
    assert m.target_prob == view.target_prob and m.logit == view.logit
    if view.clean_probs is None:
        assert m.clean_probs is None
    else:
        np.testing.assert_array_equal(m.clean_probs, view.clean_probs)
    assert m.components == view.comp_names and m.component_kinds == view.comp_kinds
    # the page computes its float64 numbers from the slices they read (core/lean_step.py),
    # one head's token attributions in numpy, the API from the whole capture: the same sums,
    # fused or ordered otherwise by XLA at some shapes, equal to the last bits of a float64
    np.testing.assert_allclose(m.dla, view.comp_attr, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(m.token_attr, view.source_attr, rtol=1e-12, atol=1e-15)
    assert m.heads.keys() == view.metrics.keys() == set(api.METRICS)
    for name, values in view.metrics.items():
        np.testing.assert_allclose(m.heads[name], values, rtol=1e-12, atol=1e-15, err_msg=name)
    shown = slice(lens.start, lens.start + lens.top.shape[1])
    assert lens.start == 0 and shown.stop == len(m.words)  # a short prompt: every position
    np.testing.assert_array_equal(m.lens_top[:, shown], lens.top)
    # the page reads the lens in float32 (core/lean_step.py), the API in float64
    np.testing.assert_allclose(m.lens_prob[:, shown], lens.prob, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "raw", SELECTIONS, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items())
)
def test_metrics_are_the_apps_view(run, analyzer, raw):
    sel, view = _app_view(analyzer, raw)
    m = _api_metrics(run, raw)
    _assert_same_as_view(m, view, sel, compute_lens(analyzer, sel))


def test_source_position_is_the_apps(run, analyzer):
    sel, view = _app_view(analyzer, {"step": 300}, src=3)
    m = _api_metrics(run, {"step": 300}, src=3)
    assert m.src == 3
    np.testing.assert_array_equal(m.heads["attn_src"], view.metrics["attn_src"])


def test_run_lists_its_steps_and_config(run, analyzer, small_root):
    info = analyzer.store.info("small")
    assert (
        run.name == "small" and run.steps == analyzer.store.steps("small") and run.steps[-1] == 300
    )
    assert run.config == info.model and run.train_config == info.train
    assert run.vocab == info.tokenizer.vocab and "chili" in run.vocab
    assert api.list_runs(small_root[0]) == ["small"]
    assert "small" in repr(run)


def test_capture_is_the_analyzers_pass_over_the_real_tokens(run, analyzer):
    info = analyzer.store.info("small")
    prompt = encode_prompt(info.tokenizer, info.model.context, PROMPT)
    full = analyzer.capture("small", 300, prompt)
    cap = run.capture(300, PROMPT)
    n, cfg = prompt.length, info.model
    assert cap.words == tuple(PROMPT.split()) and cap.step == 300
    np.testing.assert_array_equal(cap.tokens, prompt.ids)
    shapes = {
        "logits": (n, cfg.vocab_size),
        "resid": (cfg.n_layers + 1, n, cfg.d_model),
        "patterns": (cfg.n_layers, cfg.n_heads, n, n),
        "values": (cfg.n_layers, cfg.n_heads, n, cfg.d_head),
        "head_out": (cfg.n_layers, cfg.n_heads, n, cfg.d_model),
        "mlp_out": (cfg.n_layers, n, cfg.d_model),
        "final_inv_std": (n,),
    }
    for name, shape in shapes.items():
        assert getattr(cap, name).shape == shape, name
    np.testing.assert_array_equal(cap.logits, full.logits[0, :n])
    np.testing.assert_array_equal(cap.resid, full.resid[0, :, :n])
    np.testing.assert_array_equal(cap.patterns, full.patterns[0, :, :, :n, :n])
    np.testing.assert_array_equal(cap.head_out, full.head_out[0, :, :, :n])
    np.testing.assert_array_equal(cap.mlp_out, full.mlp_out[0, :, :n])
    cap.logits[:] = 0  # the caller's own copy: the analyzer's cached pass is untouched
    assert np.abs(run.capture(300, PROMPT).logits).max() > 0


def test_the_splits_are_exact(run):
    cap = run.capture(300, PROMPT)
    m = run.metrics(300, PROMPT, target="chili", head="L1H0")
    np.testing.assert_allclose(m.dla.sum(), m.logit, atol=1e-5)
    np.testing.assert_allclose(m.logit, cap.logits[m.pos, m.target_id])
    head = m.dla[m.components.index("L1H0")]
    np.testing.assert_allclose(m.token_attr.sum(), head, atol=1e-6)
    np.testing.assert_allclose(m.heads["dla"][1, 0], head)
    writes = cap.tok_emb + cap.pos_emb + cap.attn_out.sum(0) + cap.mlp_out.sum(0)
    np.testing.assert_allclose(writes, cap.resid[-1], atol=1e-5)
    np.testing.assert_allclose(
        cap.head_out.sum(1) + cap.attn_bias[:, None], cap.attn_out, atol=1e-5
    )


def test_ablation_is_the_apps(run, analyzer):
    sel, view = _app_view(analyzer, {"step": 300, "ablate": "L1H0,L0H1", "ablate_mode": "mean"})
    ab = run.ablate(300, PROMPT, ["L1H0", (0, 1)], mode="mean", target=sel.target)
    assert ab.heads == ("L0H1", "L1H0") == sel.ablate and ab.mode == "mean"
    assert ab.target_prob == view.target_prob
    np.testing.assert_array_equal(ab.clean_probs, view.clean_probs)
    np.testing.assert_array_equal(ab.effects, view.metrics["ablation"])
    assert ab.clean_target_prob != ab.target_prob
    ablated = run.capture(300, PROMPT, ablate="L0H1,L1H0", mode="mean")
    np.testing.assert_array_equal(ab.logits, ablated.logits)
    assert not np.array_equal(ablated.logits, run.capture(300, PROMPT).logits)


def test_patching_is_the_apps(run, analyzer):
    sel, _ = _app_view(analyzer, {"step": 300, "corrupt": CORRUPT})
    heads, resid, answer = compute_patching(analyzer, sel)
    p = run.patch(300, PROMPT, CORRUPT)
    assert (p.target, p.answer, p.pos) == (sel.target, answer, sel.pos)
    np.testing.assert_array_equal(p.heads, heads)
    np.testing.assert_array_equal(p.resid, resid)
    assert p.resid.shape == (3, 6)
    # at the embeddings only the differing word matters, and patching it restores the clean run
    np.testing.assert_allclose(p.resid[0], [0, 0, 1, 0, 0, 0], atol=1e-3)
    mine = run.patch(300, PROMPT, CORRUPT, target="chili", answer="lemon")
    assert (mine.target, mine.answer) == ("chili", "lemon")


def test_patching_refuses_what_the_app_cannot_draw(run, analyzer):
    sel, _ = _app_view(analyzer, {"step": 200, "corrupt": CORRUPT})
    reason = compute_patching(analyzer, sel)
    assert isinstance(reason, str) and "too close" in reason
    with pytest.raises(ValueError, match="too close to normalise"):
        run.patch(200, PROMPT, CORRUPT)


def test_timeline_is_the_apps_and_agrees_with_each_step(run, analyzer):
    info = analyzer.store.info("small")
    prompt = encode_prompt(info.tokenizer, info.model.context, PROMPT)
    chili = info.tokenizer.vocab.index("chili")
    tl = run.timeline(PROMPT, target="chili", src=1, ablate=["L0H0"], mode="mean")
    steps, values, bad = analyzer.timeline("small", prompt, 5, chili, 1, ("L0H0",), "mean")
    assert tl.steps == steps == run.steps and tl.unreadable == bad == []
    for name in api.METRICS:
        np.testing.assert_array_equal(tl.heads[name], values[name], err_msg=name)
    np.testing.assert_array_equal(tl.probs, values["probs"])
    # the vectorised float32 pass against the panels' float64 numbers at one step
    m = run.metrics(300, PROMPT, target="chili", src=1, ablate=["L0H0"], mode="mean")
    i = tl.steps.index(300)
    for name in api.METRICS:
        np.testing.assert_allclose(tl.heads[name][i], m.heads[name], atol=2e-4, err_msg=name)
    np.testing.assert_allclose(tl.probs[i], m.probs, atol=1e-5)


def _raises_one_line(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda r, root: api.open_run(root, "nope"), CheckpointError, "no run named 'nope'"),
        (lambda r, root: api.open_run(root, "../small"), CheckpointError, "invalid run name"),
        (lambda r, root: r.capture(7, PROMPT), CheckpointError, "step 7 does not exist"),
        (lambda r, root: r.capture("300", PROMPT), ValueError, "step must be an integer"),
        (lambda r, root: r.capture(300, ""), ValueError, "has no words"),
        (lambda r, root: r.capture(300, " ?! "), ValueError, "has no words"),
        (lambda r, root: r.capture(300, None), ValueError, "must be text"),
        (lambda r, root: r.metrics(300, PROMPT, target="kiwi"), ValueError, "'kiwi' is not in"),
        (lambda r, root: r.metrics(300, PROMPT, pos=6), ValueError, "position 6 is outside"),
        (lambda r, root: r.metrics(300, PROMPT, head="L2H0"), ValueError, "head 'L2H0' does"),
        (lambda r, root: r.metrics(300, PROMPT, pos=2, src=3), ValueError, "source position"),
        (lambda r, root: r.ablate(300, PROMPT, ["L0H9"]), ValueError, "head 'L0H9' does not"),
        (lambda r, root: r.ablate(300, PROMPT, ["L0H0"], mode="half"), ValueError, "mode 'half'"),
        (lambda r, root: r.patch(300, PROMPT, "i like sweet"), ValueError, "same number"),
        (
            lambda r, root: r.patch(300, PROMPT, CORRUPT, target="chili", answer="chili"),
            ValueError,
            "another word",
        ),
    ],
)
def test_bad_input_is_one_plain_line(run, root, call, error, words):
    _raises_one_line(lambda: call(run, root), error, words)


def test_negative_positions_count_from_the_end(run):
    assert run.metrics(300, PROMPT, pos=-1).pos == 5
    assert run.metrics(300, PROMPT, pos=-6, src=0).pos == 0


# -- interp-capture ---------------------------------------------------------------------


def _cli(root, out, *extra):
    return capture_cli.main(
        ["--root", str(root), "--run", "small", "--prompt", PROMPT, "--out", str(out), *extra]
    )


def _read(path):
    tensors = load_file(str(path))
    with safe_open(str(path), "np") as f:
        header = json.loads(f.metadata()[capture_cli.HEADER_KEY])
    return tensors, header


def test_interp_capture_writes_the_apps_numbers(root, analyzer, tmp_path, capsys):
    out = tmp_path / "capture.safetensors"
    assert _cli(root, out, "--step", "300", "--target", "chili", "--src", "2") == 0
    assert "wrote" in capsys.readouterr().out
    tensors, header = _read(out)

    sel, view = _app_view(analyzer, {"step": 300, "target": "chili"}, src=2)
    info = analyzer.store.info("small")
    prompt = encode_prompt(info.tokenizer, info.model.context, PROMPT)
    full = analyzer.capture("small", 300, prompt)
    n = prompt.length
    assert header["format"] == api.FORMAT
    assert (header["run"], header["step"], header["prompt"]) == ("small", 300, PROMPT)
    assert header["tokens"] == list(prompt.ids) and header["words"] == view.words
    assert (header["target"], header["target_id"], header["pos"]) == ("chili", view.target_id, 5)
    assert (header["head"], header["src"], header["ablate"], header["mode"]) == (
        "L1H0",
        2,
        [],
        "zero",
    )
    assert header["components"] == list(view.comp_names)
    assert header["logit"] == view.logit and header["target_prob"] == view.target_prob
    assert header["model"] == info.model.to_dict() and header["vocab"] == list(info.tokenizer.vocab)

    np.testing.assert_array_equal(tensors["tokens"], prompt.ids)
    np.testing.assert_array_equal(tensors["logits"], full.logits[0, :n])
    np.testing.assert_array_equal(tensors["resid"], full.resid[0, :, :n])
    np.testing.assert_array_equal(tensors["head_out"], full.head_out[0, :, :, :n])
    np.testing.assert_array_equal(tensors["mlp_out"], full.mlp_out[0, :, :n])
    np.testing.assert_array_equal(tensors["patterns"], view.patterns)
    np.testing.assert_array_equal(tensors["dla"], view.comp_attr)
    np.testing.assert_allclose(tensors["token_attr"], view.source_attr, rtol=1e-12, atol=1e-15)
    lens = compute_lens(analyzer, sel)
    np.testing.assert_array_equal(tensors["lens_top"], lens.top)
    np.testing.assert_allclose(tensors["lens_prob"], lens.prob, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(tensors["probs"][view.pred_ids], view.pred_probs)
    for name, values in view.metrics.items():
        np.testing.assert_array_equal(tensors[f"head_{name}"], values, err_msg=name)
    np.testing.assert_allclose(tensors["dla"].sum(), header["logit"], atol=1e-5)
    assert "clean_probs" not in tensors and "patch_heads" not in tensors

    # every tensor is documented, with the shape, dtype and axes the header gives it
    assert set(header["tensors"]) == set(tensors)
    for name, array in tensors.items():
        axes, dtype, _ = api.TENSORS[name]
        assert header["tensors"][name] == {
            "axes": axes,
            "shape": list(array.shape),
            "dtype": dtype,
            "doc": api.TENSORS[name][2],
        }
        assert str(array.dtype) == dtype, name
    assert not [p.name for p in tmp_path.iterdir() if p != out]  # no temporary file left


def test_interp_capture_with_ablation_and_patching(root, analyzer, tmp_path):
    out = tmp_path / "ablated.safetensors"
    raw = {"step": 250, "ablate": "L0H1", "ablate_mode": "valid-mean", "corrupt": CORRUPT}
    extra = ["--step", "250", "--ablate", "L0H1", "--mode", "valid-mean", "--corrupt", CORRUPT]
    assert _cli(root, out, *extra) == 0
    tensors, header = _read(out)
    sel, view = _app_view(analyzer, raw)
    heads, resid, answer = compute_patching(analyzer, sel)
    assert header["ablate"] == ["L0H1"] and header["mode"] == "valid-mean"
    np.testing.assert_array_equal(tensors["clean_probs"], view.clean_probs)
    np.testing.assert_array_equal(tensors["head_ablation"], view.metrics["ablation"])
    np.testing.assert_array_equal(tensors["dla"], view.comp_attr)
    np.testing.assert_array_equal(tensors["patch_heads"], heads)
    np.testing.assert_array_equal(tensors["patch_resid"], resid)
    assert header["patching"]["answer"] == answer and header["patching"]["corrupt"] == CORRUPT
    assert set(header["tensors"]) == set(tensors) <= set(api.TENSORS)


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--run", "nope"], "no run named 'nope'"),
        (["--run", "../etc"], "invalid run name"),
        (["--step", "7"], "step 7 does not exist in run 'small'"),
        (["--prompt", "   "], "has no words"),
        (["--target", "kiwi"], "target 'kiwi' is not in run 'small'"),
        (["--head", "L5H0"], "head 'L5H0' does not exist"),
        (["--pos", "9"], "position 9 is outside"),
        (["--ablate", "L0H0,bogus"], "head 'bogus' does not exist"),
        (["--corrupt", "i like sweet"], "same number of tokens"),
        (["--step", "200", "--corrupt", CORRUPT], "too close to normalise"),
    ],
)
def test_interp_capture_refuses_bad_input(root, tmp_path, capsys, extra, words):
    out = tmp_path / "x.safetensors"
    assert _cli(root, out, *extra) == 2  # later flags win over _cli's own
    err = capsys.readouterr().err
    assert err.startswith("interp-capture: error: ") and words in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


@pytest.mark.parametrize("argv", [["--out", "x.safetensors"], ["--prompt", "a"], ["--step", "x"]])
def test_interp_capture_usage_errors_exit_2(argv, capsys):
    assert capture_cli.main(argv) == 2
    assert "interp-capture: error: " in capsys.readouterr().err


def test_interp_capture_says_a_corrupt_step_in_one_line(root, tmp_path, capsys):
    broken = tmp_path / "root"
    shutil.copytree(root, broken)
    (broken / "small" / "steps" / "step-000000300" / "params.safetensors").write_bytes(b"junk")
    out = tmp_path / "c.safetensors"
    assert _cli(broken, out, "--step", "300") == 2
    err = capsys.readouterr().err
    assert err.startswith("interp-capture: error: step 300 of run 'small' is corrupt")
    assert err.count("\n") == 1 and not out.exists()


def test_interp_capture_never_overwrites_without_force(root, tmp_path, capsys):
    out = tmp_path / "c.safetensors"
    out.write_bytes(b"mine")
    assert _cli(root, out, "--step", "300") == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert _cli(root, out, "--step", "300", "--force") == 0
    assert _read(out)[1]["step"] == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


@pytest.mark.parametrize("where", ["folder", "missing"])
def test_interp_capture_refuses_an_impossible_out(root, tmp_path, capsys, where):
    out = tmp_path if where == "folder" else tmp_path / "no" / "c.safetensors"
    assert _cli(root, out, "--force") == 2
    assert "interp-capture: error: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "c.safetensors"

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(capture_cli.os, "fsync", broken)
    with pytest.raises(OSError):
        capture_cli.write_atomic(out, b"data", force=False)
    assert list(tmp_path.iterdir()) == []


def test_every_tensor_is_documented(capsys):
    assert capture_cli.main(["--help"]) == 0
    shown = capsys.readouterr().out
    doc = capture_cli.__doc__ or ""
    for name in api.TENSORS:
        assert f"\n  {name} " in shown, name
        assert name in doc, name
    assert "interp-capture" in (REPO / "pyproject.toml").read_text()


def test_interp_capture_sets_xla_flags_before_jax_starts(tmp_path):
    """As every entry point (tests/test_imports.py): in a fresh interpreter."""
    from training import runtime

    code = """
import json, os, sys
from interp_app.core import api
from interp_app.server import capture_cli
def probe(*args, **kwargs):
    import jax
    print(json.dumps({"flags": os.environ.get("XLA_FLAGS"), "devices": jax.local_device_count()}))
    raise SystemExit(0)
api.open_run = probe
capture_cli.main(["--root", sys.argv[1], "--prompt", "a", "--out", sys.argv[1] + "/x"])
"""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    devices = min(os.cpu_count() or 1, 2)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    flags = f"{runtime.HOST_DEVICES}={devices} {runtime.OPT_LEVEL}=1"
    assert seen == {"flags": flags, "devices": devices}
