"""``training.series``: a user's own training loop (JAX or plain numpy) writes a checkpoint
series that the API and the app read like an ``interp-train`` run; bad input writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from interp_app.core import api
from interp_app.panels import REGISTRY
from interp_app.server.app import create_app
from tests.dash_client import DashClient
from training import checkpoint as ckpt
from training.corpus import builtin_corpus
from training.loss import mean_cross_entropy
from training.model.config import ModelConfig
from training.model.params import flat_params, unflatten_params
from training.series import SeriesError, SeriesWriter
from training.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parent.parent
VOCAB = list(Tokenizer.from_lines(builtin_corpus().train).vocab)
CFG = ModelConfig(vocab_size=len(VOCAB))  # the app's programs for it are compiled already
PANELS = tuple(p.figure[0] for p in REGISTRY if p.outputs and p.figure[1] == "figure")


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes: what "nothing written" compares."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _numpy_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The checkpoint schema for ``CFG``, by hand: a loop without JAX needs nothing more."""
    d, h, k, m = CFG.d_model, CFG.n_heads, CFG.d_head, CFG.d_mlp
    shapes = {"wte": (CFG.vocab_size, d), "wpe": (CFG.context, d), "ln_f.scale": (d,)}
    shapes["ln_f.bias"] = (d,)
    for i in range(CFG.n_layers):
        shapes |= {
            f"blocks.{i}.ln1.scale": (d,),
            f"blocks.{i}.ln1.bias": (d,),
            f"blocks.{i}.attn.w_qkv": (d, 3, h, k),
            f"blocks.{i}.attn.w_o": (h, k, d),
            f"blocks.{i}.attn.b_o": (d,),
            f"blocks.{i}.ln2.scale": (d,),
            f"blocks.{i}.ln2.bias": (d,),
            f"blocks.{i}.mlp.w_in": (d, m),
            f"blocks.{i}.mlp.b_in": (m,),
            f"blocks.{i}.mlp.w_out": (m, d),
            f"blocks.{i}.mlp.b_out": (d,),
        }
    return {name: rng.normal(0, 0.1, shape).astype(np.float32) for name, shape in shapes.items()}


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory) -> tuple[Path, dict[int, dict[str, np.ndarray]], list[float]]:
    """Three optax steps of a real Flax NNX loop on random tokens, each step saved (as a
    model, as an ``nnx.State`` and as flat arrays: the three forms ``save`` takes). One
    compilation: the state starts from numpy arrays, SGD needs no optimizer state to build."""
    root = tmp_path_factory.mktemp("series")
    graphdef, params = unflatten_params(CFG, _numpy_params(np.random.default_rng(0)))
    tx = optax.sgd(0.5)
    opt_state = tx.init(params)
    tokens = np.random.default_rng(1).integers(0, CFG.vocab_size, (4, CFG.context + 1))

    @jax.jit
    def train_step(params, opt_state):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(tokens[:, :-1])
            return mean_cross_entropy(logits, tokens[:, 1:])

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    saved, losses = {}, []
    with SeriesWriter.open(root, "loop", CFG, VOCAB) as writer:
        for step in (1, 2, 3):
            params, opt_state, loss = train_step(params, opt_state)
            losses.append(float(loss))
            form = {1: nnx.merge(graphdef, params), 2: params, 3: flat_params(params)}[step]
            writer.save(step, form, {"train_loss": loss, "valid_loss": 2 * float(loss)})
            saved[step] = flat_params(params)
        assert writer.steps == [1, 2, 3]
    return root, saved, losses


def test_a_jax_loop_is_a_run_the_api_reads(jax_run):
    root, saved, losses = jax_run
    run = api.open_run(root, "loop")
    assert run.steps == [1, 2, 3] and run.config == CFG and run.vocab == tuple(VOCAB)
    assert run.train_config is None
    for step, params in saved.items():
        got = run.params(step)
        assert sorted(got) == sorted(params)
        for name, value in params.items():
            np.testing.assert_array_equal(got[name], value)
    t_steps, t_loss, v_steps, v_loss = run.store.loss_history("loop")
    assert list(t_steps) == [1, 2, 3] and list(v_steps) == [1, 2, 3]
    np.testing.assert_allclose(t_loss, losses, rtol=1e-6)
    np.testing.assert_allclose(v_loss, 2 * np.asarray(losses), rtol=1e-6)
    assert run.capture(3, "i like spicy so i like").logits.shape == (6, CFG.vocab_size)
    meta = json.loads((root / "loop" / ckpt.RUN_FILE).read_text())
    assert meta["train"] is None and meta["source"] == {"kind": "writer"}


def test_the_app_draws_every_panel_of_a_written_run(jax_run):
    root, _, _ = jax_run
    client = DashClient(create_app(root))
    sel = client.select(None, search="?run=loop&prompt=i+like+spicy+so+i+like")["selection"]["data"]
    assert sel["run"] == "loop" and sel["step"] == 3
    r = client.render(sel)
    assert not str(r.get("notices", {}).get("children", "")).strip(), r["notices"]
    for panel in PANELS:  # drawn, or saying why not (patching: a barely trained model)
        figure = r[panel]["figure"]
        assert figure["data"] or figure["layout"].get("annotations"), panel
        assert "error" not in json.dumps(figure).lower(), panel
    curve = r["loss-curve"]["figure"]["data"]
    assert any(list(t.get("x", [])) == [1, 2, 3] for t in curve), curve


def test_a_numpy_loop_needs_no_jax(tmp_path):
    """The user's loop is numpy alone: parameters nudged at random, saved every ten steps."""
    rng = np.random.default_rng(0)
    params = _numpy_params(rng)
    saved = {}
    with SeriesWriter.open(tmp_path, "np", CFG, VOCAB, source="numpy") as writer:
        for step in range(21):
            params = {
                k: v + rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in params.items()
            }
            if step % 10 == 0:
                writer.save(step, params, {"loss": 3.0 - step / 10})
                saved[step] = params
    run = api.open_run(tmp_path, "np")
    assert run.steps == [0, 10, 20]
    for step, params in saved.items():
        for name, value in params.items():
            np.testing.assert_array_equal(run.params(step)[name], value)
    assert list(run.store.loss_history("np")[1]) == [3.0, 2.0, 1.0]


def test_reopening_resumes_after_a_kill(tmp_path):
    """A kill mid-save leaves a temporary step folder and a metrics record of a step that
    never arrived: reopening tidies both, and the series goes on."""
    params = _numpy_params(np.random.default_rng(0))
    with SeriesWriter.open(tmp_path, "r", CFG, VOCAB) as writer:
        writer.save(0, params, {"train_loss": 2.0})
        writer.save(5, params, {"train_loss": 1.5})
    run = tmp_path / "r"
    ckpt.append_metrics(run, {"step": 9, "first_step": 9, "train_loss": [1.0]})
    (run / ckpt.STEPS_DIR / ".tmp-000000009-abcdef").mkdir()
    writer = SeriesWriter.open(tmp_path, "r", CFG, tuple(VOCAB))
    assert writer.steps == [0, 5]
    assert [p.name for p in (run / ckpt.STEPS_DIR).iterdir() if p.name.startswith(".")] == []
    assert [r["step"] for r in ckpt.read_metrics(run)] == [0, 5]
    with pytest.raises(SeriesError, match="step 5 is not after step 5"):
        writer.save(5, params)
    writer.save(9, params, {"train_loss": 1.2, "valid_loss": 1.3})
    assert ckpt.list_steps(run) == [0, 5, 9]
    assert [r["train_loss"] for r in ckpt.read_metrics(run)] == [[2.0], [1.5], [1.2]]


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with EFBIG, as a full disk fails a write midway."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_write_failing_midway_keeps_the_steps_before(tmp_path):
    params = _numpy_params(np.random.default_rng(0))
    writer = SeriesWriter.open(tmp_path, "r", CFG, VOCAB)
    writer.save(0, params, {"train_loss": 2.0})
    writer.save(1, params, {"train_loss": 1.0})
    before = _files(tmp_path)
    with _file_size_limit(1024), pytest.raises(SeriesError, match="cannot write step 2"):
        writer.save(2, params, {"train_loss": 0.5})  # params.safetensors is ~43 KB
    assert _files(tmp_path) == before  # no partial step, the metrics record taken back
    assert writer.steps == [0, 1] and ckpt.list_steps(tmp_path / "r") == [0, 1]
    writer.save(2, params, {"train_loss": 0.5})
    assert [r["step"] for r in ckpt.read_metrics(tmp_path / "r")] == [0, 1, 2]


def _bad_shape(params):
    return {**params, "blocks.1.attn.w_o": np.zeros((2, 10, 21), np.float32)}


def _missing(params):
    return {k: v for k, v in params.items() if k != "blocks.0.mlp.b_in"}


@pytest.mark.parametrize(
    "step, change, metrics, message",
    [
        (
            9,
            _bad_shape,
            None,
            r"blocks\.1\.attn\.w_o has shape \(2, 10, 21\), expected \(2, 10, 20\)",
        ),
        (9, _missing, None, r"missing \['blocks\.0\.mlp\.b_in'\]"),
        (5, None, None, "step 5 is not after step 5"),
        (3, None, None, "step 3 is not after step 5"),
        (-1, None, None, "step must be in"),
        (9, None, {"accuracy": 0.5}, r"unknown metrics \['accuracy'\]"),
        (9, None, {"train_loss": [1.0, 2.0]}, "must be one number"),
        (9, lambda p: {**p, "wte": "x"}, None, "parameter wte is not real numbers"),
        (9, lambda p: [p], None, "params is a mapping"),
        (9, lambda p: {**p, "ln_f.bias": p["ln_f.bias"] + 1j}, None, "ln_f.bias .*complex"),
        (9, lambda p: {**p, "wpe": p["wpe"] * np.nan}, None, "step 9 .*wpe holds NaN"),
        (9, lambda p: {**p, "ln_f.scale": p["ln_f.scale"] + np.inf}, None, "scale holds NaN"),
    ],
    ids=[
        "shape",
        "missing",
        "same-step",
        "earlier-step",
        "negative",
        "metric",
        "loss",
        "str",
        "list",
        "complex",
        "nan",
        "inf",
    ],
)
def test_a_refused_save_writes_nothing(tmp_path, step, change, metrics, message):
    params = _numpy_params(np.random.default_rng(0))
    writer = SeriesWriter.open(tmp_path, "r", CFG, VOCAB)
    writer.save(5, params, {"train_loss": 1.0})
    before = _files(tmp_path)
    with pytest.raises(SeriesError, match=message):
        writer.save(step, change(params) if change else params, metrics)
    assert _files(tmp_path) == before and writer.steps == [5]


OTHER = ModelConfig(**{**CFG.to_dict(), "n_layers": 3})


@pytest.mark.parametrize(
    "name, config, tokenizer, message",
    [
        ("../x", CFG, VOCAB, "invalid run name"),
        ("a/b", CFG, VOCAB, "invalid run name"),
        ("r", OTHER, VOCAB, r"another n_layers \(stored 2, given 3\)"),
        ("r", CFG, VOCAB[::-1], rf"another vocabulary .*id 0: '{VOCAB[0]}' vs 'PADDING'"),
        ("r", CFG, VOCAB[:-1] + ["pad"], r"lacks \['PADDING'\]"),
        ("new", CFG, VOCAB[1:], "the vocabulary has 18 words but config.vocab_size is 19"),
        ("new", CFG, 42, "tokenizer is a sequence of words"),
        ("new", CFG, VOCAB[1:2] + VOCAB[1:], "duplicate words"),
        ("new", CFG.to_dict(), VOCAB, "config must be a ModelConfig"),
        ("new", CFG, ["", *VOCAB[1:]], "word 0 of the vocabulary is ''"),
        ("new", CFG, ["ice cream", *VOCAB[1:]], "is 'ice cream': the word tokenizer splits"),
    ],
    ids=[
        *("dotdot", "path", "config", "vocab", "specials", "size", "int", "twice", "dict"),
        *("empty-word", "spaced-word"),
    ],
)
def test_a_refused_open_writes_nothing(tmp_path, name, config, tokenizer, message):
    with SeriesWriter.open(tmp_path / "root", "r", CFG, VOCAB) as writer:
        writer.save(0, _numpy_params(np.random.default_rng(0)))
    before = _files(tmp_path)
    with pytest.raises(SeriesError, match=message):
        SeriesWriter.open(tmp_path / "root", name, config, tokenizer)
    assert _files(tmp_path) == before
    assert sorted(
        p.name for p in tmp_path.rglob("*") if p.is_dir() and p.parent == tmp_path / "root"
    ) == ["r"]


def test_a_diverged_loss_is_logged_as_no_value_and_the_step_saved(tmp_path):
    """As interp-import drops a NaN loss of trainer_state.json (JSON has no NaN)."""
    params = _numpy_params(np.random.default_rng(0))
    with SeriesWriter.open(tmp_path, "r", CFG, VOCAB) as writer:
        with pytest.warns(UserWarning, match="step 3: train_loss is nan, logged as no value"):
            writer.save(3, params, {"train_loss": float("nan"), "valid_loss": 2.0})
        with pytest.warns(UserWarning, match="step 4: valid_loss is inf"):
            writer.save(4, params, {"valid_loss": float("inf")})
    lines = (tmp_path / "r" / ckpt.METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 3, "first_step": 3, "train_loss": [], "valid_loss": 2.0},
        {"step": 4, "first_step": 4, "train_loss": [], "valid_loss": None},
    ]
    assert ckpt.list_steps(tmp_path / "r") == [3, 4]


def test_a_failed_open_does_not_speak_of_steps_kept(tmp_path):
    with _file_size_limit(16), pytest.raises(SeriesError) as err:  # run.json is larger
        SeriesWriter.open(tmp_path, "r", CFG, VOCAB)
    assert "cannot write run.json of run 'r'" in str(err.value)
    assert "saved before" not in str(err.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(SeriesError, match="root .*file is not a folder"):
        SeriesWriter.open(tmp_path / "file", "r", CFG, VOCAB)


def test_overwrite_starts_again_and_an_interp_train_run_is_not_appended_to(tmp_path):
    params = _numpy_params(np.random.default_rng(0))
    with SeriesWriter.open(tmp_path, "r", CFG, VOCAB) as writer:
        writer.save(7, params, {"train_loss": 1.0})
    writer = SeriesWriter.open(tmp_path, "r", OTHER, VOCAB, overwrite=True)
    assert writer.steps == [] and ckpt.list_steps(tmp_path / "r") == []
    assert not (tmp_path / "r" / ckpt.METRICS_FILE).exists()
    assert json.loads((tmp_path / "r" / ckpt.RUN_FILE).read_text())["model"]["n_layers"] == 3
    writer.close()
    with pytest.raises(SeriesError, match="closed"):
        writer.save(8, params)
    meta = json.loads((tmp_path / "r" / ckpt.RUN_FILE).read_text())
    (tmp_path / "r" / ckpt.RUN_FILE).write_text(json.dumps({**meta, "train": {"steps": 10}}))
    with pytest.raises(SeriesError, match="made by interp-train"):
        SeriesWriter.open(tmp_path, "r", OTHER, VOCAB)


def _hf_tokenizer_file(path: Path, words: list[str]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def test_a_hugging_face_tokenizer_is_copied_and_compared(tmp_path):
    words = ["[UNK]", "i", "like", "spicy"]
    given = _hf_tokenizer_file(tmp_path / "tok.json", words)
    with SeriesWriter.open(tmp_path / "root", "hf", CFG, given) as writer:
        writer.save(0, _numpy_params(np.random.default_rng(0)))
    run = tmp_path / "root" / "hf"
    meta = json.loads((run / ckpt.RUN_FILE).read_text())
    assert meta["tokenizer"] == {"kind": "huggingface", "file": "tokenizer.json"}
    assert "vocab" not in meta
    assert (run / "tokenizer.json").read_bytes() == given.read_bytes()
    assert SeriesWriter.open(tmp_path / "root", "hf", CFG, str(given)).steps == [0]
    other = _hf_tokenizer_file(tmp_path / "other.json", [*words, "sweet"])
    with pytest.raises(SeriesError, match="tokenizer.json .the stored file differs"):
        SeriesWriter.open(tmp_path / "root", "hf", CFG, other)
    with pytest.raises(
        SeriesError, match="tokenizer .stored: a huggingface tokenizer, given: a vocabulary of 19"
    ):
        SeriesWriter.open(tmp_path / "root", "hf", CFG, VOCAB)
    big = _hf_tokenizer_file(tmp_path / "big.json", [f"w{i}" for i in range(20)])
    with pytest.raises(SeriesError, match=r"has token id 19 but config.vocab_size is 19 \(ids"):
        SeriesWriter.open(tmp_path / "root", "big", CFG, big)
    sparse = _hf_tokenizer_file(tmp_path / "sparse.json", ["[UNK]", "i"])  # ids 0, 1
    text = json.loads(sparse.read_text())
    text["model"]["vocab"] = {"[UNK]": 0, "i": 400}  # two tokens, the second past wte
    sparse.write_text(json.dumps(text))
    with pytest.raises(SeriesError, match="has token id 400 but config.vocab_size is 19"):
        SeriesWriter.open(tmp_path / "root", "sparse", CFG, sparse)
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(SeriesError, match="not a Hugging Face tokenizer.json"):
        SeriesWriter.open(tmp_path / "root", "junk", CFG, tmp_path / "junk.json")
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["hf"]


def test_the_example_runs_and_its_run_opens(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "own_loop.py"), str(tmp_path), "--steps", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run = api.open_run(tmp_path, "own-loop")
    assert run.steps[0] == 0 and run.steps[-1] == 30
    assert list(run.store.loss_history("own-loop")[2]) == run.steps  # validation losses
