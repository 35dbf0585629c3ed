"""interp-import: Hugging Face GPT-2 / GPT-NeoX folders (written by tests/hf_folders.py) as
runs; every refusal is one line and leaves the checkpoint root without the run.

The numerical match with transformers' own forward pass is tests/golden/hf (another
module); here the mapping is checked head by head against the layout's definition."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import hf_folders as hf
from training import checkpoint as ckpt
from training.hf_import import HFImportError, import_series, load_hf_folder
from training.hf_import.cli import main
from training.model.params import unflatten_params

K, D, H = hf.K, hf.D, hf.HEADS


def _loads(folder: Path):
    """load_hf_folder, then the params load into the model the converted config describes."""
    got = load_hf_folder(folder)
    unflatten_params(got.config, got.params)
    return got


def test_gpt2_folder_maps_each_head(tmp_path):
    cfg = hf.gpt2_config()
    t = hf.random_tensors(hf.gpt2_shapes(cfg))
    got = _loads(hf.write_folder(tmp_path, cfg, t))
    mc = got.config
    assert (mc.positions, mc.activation, mc.tied, mc.qkv_bias, mc.parallel) == (
        "learned", "gelu_tanh", True, True, False,
    )  # fmt: skip
    assert (mc.d_mlp, mc.context, mc.dropout) == (4 * D, hf.CONTEXT, 0.0)
    assert got.tokenizer_file == tmp_path / "tokenizer.json"
    p, c_attn = got.params, t["transformer.h.1.attn.c_attn.weight"]
    for h in range(H):  # Conv1D [in, out], columns (qkv, head, e)
        for j in range(3):
            cols = c_attn[:, j * D + h * K : j * D + (h + 1) * K]
            np.testing.assert_array_equal(p["blocks.1.attn.w_qkv"][:, j, h, :], cols)
        rows = t["transformer.h.1.attn.c_proj.weight"][h * K : (h + 1) * K]
        np.testing.assert_array_equal(p["blocks.1.attn.w_o"][h], rows)
    bias = t["transformer.h.1.attn.c_attn.bias"]
    np.testing.assert_array_equal(p["blocks.1.attn.b_qkv"][2, 1], bias[2 * D + K : 2 * D + 2 * K])
    np.testing.assert_array_equal(p["blocks.0.mlp.w_out"], t["transformer.h.0.mlp.c_proj.weight"])
    np.testing.assert_array_equal(p["wpe"], t["transformer.wpe.weight"])
    assert "w_u" not in p and all(a.dtype == np.float32 for a in p.values())


def test_neox_folder_maps_each_head(tmp_path):
    cfg = hf.neox_config()
    t = hf.random_tensors(hf.neox_shapes(cfg))
    got = _loads(hf.write_folder(tmp_path, cfg, t))
    mc = got.config
    assert (mc.positions, mc.rotary_dims, mc.rotary_base, mc.parallel) == (
        "rotary", K // 2, 10000.0, True,
    )  # fmt: skip
    assert (mc.activation, mc.tied, mc.qkv_bias) == ("gelu", False, True)
    p, qkv = got.params, t["gpt_neox.layers.0.attention.query_key_value.weight"]
    for h in range(H):  # Linear [out, in], rows (head, qkv, e)
        for j in range(3):
            rows = qkv[h * 3 * K + j * K : h * 3 * K + (j + 1) * K]
            np.testing.assert_array_equal(p["blocks.0.attn.w_qkv"][:, j, h, :], rows.T)
        cols = t["gpt_neox.layers.0.attention.dense.weight"][:, h * K : (h + 1) * K]
        np.testing.assert_array_equal(p["blocks.0.attn.w_o"][h], cols.T)
    bias = t["gpt_neox.layers.0.attention.query_key_value.bias"]
    np.testing.assert_array_equal(
        p["blocks.0.attn.b_qkv"][1, 2], bias[2 * 3 * K + K : 2 * 3 * K + 2 * K]
    )
    np.testing.assert_array_equal(p["w_u"], t["embed_out.weight"].T)
    np.testing.assert_array_equal(
        p["blocks.1.mlp.w_in"], t["gpt_neox.layers.1.mlp.dense_h_to_4h.weight"].T
    )
    np.testing.assert_array_equal(
        p["blocks.1.ln2.scale"], t["gpt_neox.layers.1.post_attention_layernorm.weight"]
    )
    assert "wpe" not in p


def test_neox_v5_rope_parameters_lm_head_and_no_attention_bias(tmp_path):
    """transformers v5 writes ``rope_parameters`` (no legacy keys) and may name the head
    ``lm_head``; ``attention_bias: false`` drops the qkv bias and zeroes ``b_o``."""
    cfg = hf.neox_config(attention_bias=False, use_parallel_residual=False, hidden_act="relu")
    del cfg["rotary_pct"], cfg["rotary_emb_base"]
    cfg["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 500.0,
        "partial_rotary_factor": 1.0,
    }
    t = hf.random_tensors(hf.neox_shapes(cfg, head="lm_head.weight"))
    got = _loads(hf.write_folder(tmp_path, cfg, t))
    mc = got.config
    assert (mc.rotary_dims, mc.rotary_base, mc.parallel, mc.qkv_bias) == (K, 500.0, False, False)
    assert mc.activation == "relu" and "blocks.0.attn.b_qkv" not in got.params
    np.testing.assert_array_equal(got.params["blocks.1.attn.b_o"], np.zeros(D, np.float32))
    np.testing.assert_array_equal(got.params["w_u"], t["lm_head.weight"].T)


def test_gpt2_hub_names_buffers_and_tied_head(tmp_path):
    """The hub's gpt2 file has no ``transformer.`` prefix and carries mask buffers; a stored
    head equal to wte is the tied model, a different one is warned about (transformers
    ties it anyway)."""
    cfg = hf.gpt2_config()
    t = hf.random_tensors(hf.gpt2_shapes(cfg, prefix=""))
    t |= {
        "h.0.attn.bias": np.ones((1, 1, 16, 16), np.float32),
        "h.0.attn.masked_bias": np.ones(1, np.float32),
    }
    t["lm_head.weight"] = t["wte.weight"]
    got = _loads(hf.write_folder(tmp_path / "a", cfg, t))
    assert got.config.tied and "w_u" not in got.params
    t["lm_head.weight"] = t["wte.weight"] + 1
    with pytest.warns(UserWarning, match="lm_head.weight differs from wte.weight"):
        _loads(hf.write_folder(tmp_path / "b", cfg, t))


@pytest.mark.parametrize("dtype, shards", [("bfloat16", 3), ("float16", 0)])
def test_sharded_and_half_precision_upcast(tmp_path, dtype, shards):
    cfg = hf.neox_config()
    t = hf.random_tensors(hf.neox_shapes(cfg))
    got = _loads(hf.write_folder(tmp_path, cfg, t, dtype=dtype, shards=shards))
    stored = t["gpt_neox.embed_in.weight"].astype(hf.DTYPES[dtype]).astype(np.float32)
    assert got.params["wte"].dtype == np.float32
    np.testing.assert_array_equal(got.params["wte"], stored)
    assert not np.array_equal(stored, t["gpt_neox.embed_in.weight"])  # really rounded


@pytest.mark.parametrize(
    "names, steps",
    [
        (["step10", "step2", "step0"], [0, 2, 10]),
        (["checkpoint-100", "checkpoint-20"], [20, 100]),
        (["30", "4"], [4, 30]),
    ],
)
def test_series_steps_sorted_numerically(tmp_path, names, steps):
    src = hf.series(tmp_path / "src", names)
    (src / "runs").mkdir()  # folders that are not steps are ignored
    (src / "step-x").mkdir()
    run = import_series(src, tmp_path / "root", "s", out=io.StringIO())
    assert ckpt.list_steps(run) == steps
    for name in names:  # each step holds its own folder's weights
        step = int(name.removeprefix("step").removeprefix("checkpoint-"))
        want = load_hf_folder(src / name).params
        np.testing.assert_array_equal(ckpt.load_params(run, step)["w_u"], want["w_u"])
    meta = json.loads((run / ckpt.RUN_FILE).read_text())
    assert meta["tokenizer"] == {"kind": "huggingface", "file": "tokenizer.json"}
    assert meta["train"] is None and meta["source"]["architecture"] == "GPTNeoXForCausalLM"
    assert (run / "tokenizer.json").read_text() == hf.tokenizer_json()
    unflatten_params(ckpt.ModelConfig.from_dict(meta["model"]), ckpt.load_params(run, steps[0]))
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["s"]  # no hidden leftovers


def test_step_weights_and_metrics_from_trainer_state(tmp_path):
    """Steps hold their own folder's weights; the Trainer's log_history is the loss curve;
    a source holding config.json is one step, numbered by its global_step."""
    state = {"global_step": 40, "log_history": [
        {"step": 10, "loss": 3.0}, {"step": 20, "loss": 2.5}, {"step": 20, "eval_loss": 2.7},
        {"step": 40, "loss": 2.0}, {"step": 40, "train_runtime": 1.0},
    ]}  # fmt: skip
    src = hf.gpt2_folder(tmp_path / "src", seed=5, trainer_state=state)
    run = import_series(src, tmp_path / "root", "one", out=io.StringIO())
    assert ckpt.list_steps(run) == [40]
    np.testing.assert_array_equal(
        ckpt.load_params(run, 40)["wte"], load_hf_folder(src).params["wte"]
    )
    t_steps, t_loss, v_steps, v_loss = ckpt.loss_history(run)
    assert t_steps.tolist() == [10, 20, 40] and t_loss.tolist() == [3.0, 2.5, 2.0]
    assert (v_steps.tolist(), v_loss.tolist()) == ([20], [2.7])


def test_identical_steps_are_warned_about(tmp_path):
    src = tmp_path / "src"
    for name in ("step1", "step2", "step3"):
        hf.neox_folder(src / name, seed=1 if name == "step3" else 0)
    out = io.StringIO()
    import_series(src, tmp_path / "root", "dup", out=out)
    assert "step 2 holds the same weights as step 1" in out.getvalue()
    assert "step 3 holds the same" not in out.getvalue()


def test_byte_fallback_without_tokenizer(tmp_path):
    src = hf.gpt2_folder(tmp_path / "src", tokenizer=False)
    out = io.StringIO()
    run = import_series(src, tmp_path / "root", "bytes", out=out)
    assert json.loads((run / ckpt.RUN_FILE).read_text())["tokenizer"] == {"kind": "bytes"}
    assert "tokens are shown as bytes" in out.getvalue()
    assert not (run / "tokenizer.json").exists()


def test_overwrite_replaces_an_existing_run(tmp_path):
    root = tmp_path / "root"
    import_series(hf.gpt2_folder(tmp_path / "a"), root, "r", out=io.StringIO())
    with pytest.raises(HFImportError, match="already exists.*--overwrite"):
        import_series(hf.neox_folder(tmp_path / "b"), root, "r", out=io.StringIO())
    run = import_series(tmp_path / "b", root, "r", overwrite=True, out=io.StringIO())
    assert (
        json.loads((run / ckpt.RUN_FILE).read_text())["source"]["architecture"]
        == "GPTNeoXForCausalLM"
    )
    assert sorted(p.name for p in root.iterdir()) == ["r"]


class _Interrupting(io.StringIO):
    """Progress output that stops the import (as Ctrl-C would) once step 1 is reported."""

    def write(self, s: str) -> int:
        if "step 1" in s:
            raise KeyboardInterrupt
        return super().write(s)


def test_an_interrupted_import_leaves_no_run_and_can_be_redone(tmp_path):
    src, root = hf.series(tmp_path / "src", ["step0", "step1"]), tmp_path / "root"
    with pytest.raises(KeyboardInterrupt):
        import_series(src, root, "r", out=_Interrupting())
    assert not root.exists()  # the import made it, and took it back
    run = import_series(src, root, "r", out=io.StringIO())
    assert ckpt.list_steps(run) == [0, 1]


@pytest.mark.parametrize("own_step, steps", [(1500, [500, 1000, 1500]), (1000, [500, 1000])])
def test_a_trainer_output_dir_is_its_step_folders_and_its_own_new_step(tmp_path, own_step, steps):
    """After trainer.save_model(), output_dir holds a model beside checkpoint-N/: a step of
    its own only when trainer_state.json gives it a step no folder has."""
    src = hf.series(tmp_path / "out", ["checkpoint-500", "checkpoint-1000"], arch="gpt2")
    hf.gpt2_folder(src, seed=9, trainer_state={"global_step": own_step})
    out = io.StringIO()
    run = import_series(src, tmp_path / "root", "r", out=out)
    assert ckpt.list_steps(run) == steps
    wte = {s: ckpt.load_params(run, s)["wte"] for s in steps}
    seeds = {500: 0, 1000: 1, 1500: 9}
    for s in steps:
        expect = hf.random_tensors(hf.gpt2_shapes(hf.gpt2_config()), seeds[s])
        np.testing.assert_array_equal(wte[s], expect["transformer.wte.weight"])
    left_out = f"the model in {src} itself is step 1000 (trainer_state.json)"
    assert (left_out in out.getvalue()) == (own_step == 1000)


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_a_killed_imports_leftovers_are_tidied_and_a_live_ones_kept(tmp_path):
    """SIGKILL leaves .import-NAME-PID-HEX (and, between the renames of --overwrite, the old
    run aside as .old-NAME-PID-HEX): the next import of NAME removes or puts them back."""
    root, dead = tmp_path / "root", _dead_pid()
    old = import_series(hf.gpt2_folder(tmp_path / "a"), root, "r", out=io.StringIO())
    os.rename(old, root / f".old-r-{dead}-0123456789ab")  # killed between the renames
    (root / f".import-r-{dead}-aaaaaaaaaaaa" / "steps").mkdir(parents=True)
    live = root / f".import-r-{os.getpid()}-bbbbbbbbbbbb"  # a concurrent import's
    other = root / f".import-r2-{dead}-cccccccccccc"  # another run's: not this import's
    live.mkdir()
    other.mkdir()
    out = io.StringIO()
    with pytest.raises(HFImportError, match="run 'r' already exists"):
        import_series(tmp_path / "a", root, "r", out=out)
    assert f"put run 'r' back from .old-r-{dead}-0123456789ab" in out.getvalue()
    assert f"removed .import-r-{dead}-aaaaaaaaaaaa" in out.getvalue()
    assert sorted(p.name for p in root.iterdir()) == sorted(["r", live.name, other.name])
    assert ckpt.list_steps(root / "r") == [0]


def _edit_config(folder: Path, **changes) -> Path:
    cfg = json.loads((folder / "config.json").read_text()) | changes
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _bad_sources(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input: (SRC, what its one line must say)."""
    bad: dict[str, tuple[Path, str]] = {}
    f = hf.gpt2_folder(tmp / "arch")
    bad["arch"] = (
        _edit_config(f, architectures=["LlamaForCausalLM"]),
        "unsupported architecture LlamaForCausalLM; supported: GPT2LMHeadModel, GPTNeoXForCausalLM",
    )
    f = tmp / "pickle"
    f.mkdir()
    (f / "config.json").write_text(json.dumps(hf.gpt2_config()))
    (f / "pytorch_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    bad["pickle"] = (
        f,
        "only as pytorch_model.bin, a pickle the importer does not open; convert it to "
        'safetensors first: python -c "from transformers import AutoModelForCausalLM as M; '
        f"M.from_pretrained('{f}').save_pretrained('{f}')\"",
    )
    cfg = hf.gpt2_config()
    t = hf.random_tensors(hf.gpt2_shapes(cfg))
    t["transformer.h.1.attn.c_attn.weight"] = t["transformer.h.1.attn.c_attn.weight"][:, :30]
    bad["shape"] = (
        hf.write_folder(tmp / "shape", cfg, t),
        "tensor transformer.h.1.attn.c_attn.weight has shape [12, 30] in model.safetensors "
        "but config.json makes it [12, 36]",
    )
    del t["transformer.h.1.attn.c_attn.weight"]
    bad["missing"] = (
        hf.write_folder(tmp / "missing", cfg, t),
        "tensor h.1.attn.c_attn.weight missing",
    )
    src = hf.series(tmp / "configs", ["step0", "step2"])
    hf.neox_folder(src / "step2", changes={"num_hidden_layers": 1}, tokenizer=False)
    bad["configs"] = (src, "steps differ in their config.json: step2 vs step0: n_layers: 2 vs 1")
    f = hf.gpt2_folder(tmp / "notok", changes={"vocab_size": 200}, tokenizer=False)
    bad["tokenizer"] = (f, "no tokenizer.json in")
    src = hf.series(tmp / "noconfig", ["step0", "step2"])
    (src / "step2" / "config.json").unlink()
    bad["config"] = (src, f"no config.json in {src / 'step2'}")
    bad["empty"] = (tmp, f"no config.json in {tmp} and no step folders in it")
    f = hf.neox_folder(tmp / "corrupt")
    (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-40])
    bad["corrupt"] = (f, "model.safetensors is not a readable safetensors file")
    bad["nosrc"] = (tmp / "nowhere", f"{tmp / 'nowhere'} does not exist")
    f = _edit_config(hf.gpt2_folder(tmp / "nested"), architectures=[["GPT2LMHeadModel"]])
    bad["nested"] = (f, "architectures [['GPT2LMHeadModel']] is not a list of class names")
    f = _edit_config(hf.gpt2_folder(tmp / "mtlist"), architectures=[], model_type=["gpt2"])
    bad["mtlist"] = (f, "model_type ['gpt2'] is not a name")
    bad["float"] = (_edit_config(hf.gpt2_folder(tmp / "f"), n_layer=2.0), "n_layer 2.0 is not an")
    src = hf.series(tmp / "huge", ["step1000000000"])
    bad["huge"] = (src, "step 1000000000 is past 999999999, the largest step a run can hold")
    src = hf.series(tmp / "arabic", ["step\u0663"])  # a digit, but not [0-9]
    bad["arabic"] = (src, "no step folders in it")
    src = hf.series(tmp / "output_dir", ["checkpoint-5", "checkpoint-10"], arch="gpt2")
    hf.gpt2_folder(src, seed=9)  # trainer.save_model(), and no trainer_state.json
    bad["own"] = (src, "and no trainer_state.json says which step its own model is: write one")
    return bad


BAD = [
    "arch",
    "pickle",
    "shape",
    "missing",
    "configs",
    "tokenizer",
    "config",
    "empty",
    "corrupt",
    "nosrc",
    "nested",
    "mtlist",
    "float",
    "huge",
    "arabic",
    "own",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case, capsys):
    src, message = _bad_sources(tmp_path / "in")[case]
    root = tmp_path / "root"
    assert main([str(src), "--root", str(root), "--run", "r"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interp-import: error: ")
    assert message in err
    assert not root.exists() or list(root.iterdir()) == []


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"scale_attn_by_inverse_layer_idx": True},
            "scale_attn_by_inverse_layer_idx=True is not supported",
        ),
        ({"add_cross_attention": True}, "add_cross_attention=True is not supported"),
        ({"activation_function": "silu"}, "activation 'silu' is not supported; supported: gelu,"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling is not supported"),
        ({"rope_parameters": {"rope_type": "yarn"}}, "rope_type 'yarn' is not supported"),
        ({"rotary_pct": 0.1}, "rotary dimensions 0"),
        ({"architectures": ["GPT2LMHeadModel", "X"]}, "lists GPT2LMHeadModel, X; give one"),
        ({"model_type": "gpt2"}, "GPTNeoXForCausalLM and model_type 'gpt2' disagree"),
        ({"num_attention_heads": 0}, "num_attention_heads 0 is not in 1..1,000,000"),
        ({"vocab_size": None}, "vocab_size null is not an integer"),
        ({"max_position_embeddings": 10**7}, "max_position_embeddings 10000000 is not in 1.."),
        ({"layer_norm_eps": math.inf}, "layer_norm_eps inf is not in (0, 1]"),
        ({"rotary_emb_base": math.nan}, "rotary_emb_base nan is not in"),
        ({"use_parallel_residual": "false"}, "use_parallel_residual 'false' is not true or"),
        ({"rope_theta": 500.0}, "rotary settings disagree: rope_theta=500, rotary_emb_base=10000"),
        (
            {"rope_parameters": {"partial_rotary_factor": 1.0}},
            "disagree: rope_parameters.partial_rotary_factor=1, rotary_pct=0.5",
        ),
    ],
)
def test_unsupported_options_are_refused(tmp_path, changes, message):
    make = (
        hf.gpt2_folder
        if "activation_function" in changes
        or "add_cross_attention" in changes
        or "scale_attn_by_inverse_layer_idx" in changes
        else hf.neox_folder
    )
    f = _edit_config(make(tmp_path / "src"), **changes)
    with pytest.raises(HFImportError, match=re.escape(message)):
        load_hf_folder(f)


def test_top_level_rope_keys_are_read(tmp_path):
    """transformers 4.4x writes rope_theta and partial_rotary_factor at the top level."""
    cfg = {k: v for k, v in hf.neox_config().items() if k not in ("rotary_pct", "rotary_emb_base")}
    cfg |= {"rope_theta": 500.0, "partial_rotary_factor": 1.0}
    got = load_hf_folder(hf.write_folder(tmp_path, cfg, hf.random_tensors(hf.neox_shapes(cfg))))
    assert (got.config.rotary_dims, got.config.rotary_base) == (K, 500.0)


def test_non_finite_weights_are_refused_naming_the_tensor_and_step(tmp_path, capsys):
    src = hf.series(tmp_path / "src", ["step0", "step7"])
    t = hf.random_tensors(hf.neox_shapes(hf.neox_config()))
    t["gpt_neox.layers.1.mlp.dense_4h_to_h.weight"][2, 3] = np.inf
    hf.write_tensors(src / "step7", t, dtype="float16")
    root = tmp_path / "root"
    assert main([str(src), "--root", str(root), "--run", "r"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after step 0's progress bar
    assert last == (
        f"interp-import: error: {src / 'step7' / 'model.safetensors'}: tensor "
        "gpt_neox.layers.1.mlp.dense_4h_to_h.weight holds 1 NaN or infinite values (as "
        "float32); a run needs finite weights"
    )
    assert not root.exists()


def test_run_name_that_is_a_path_is_refused(tmp_path, capsys):
    src = hf.gpt2_folder(tmp_path / "src")
    assert main([str(src), "--root", str(tmp_path / "root"), "--run", "../escape"]) == 2
    assert "invalid run name '../escape'" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists() and not (tmp_path / "root").exists()


def test_a_tokenizer_id_past_the_vocabulary_is_refused(tmp_path):
    f = hf.gpt2_folder(tmp_path / "src", changes={"vocab_size": 260})
    with pytest.raises(
        HFImportError, match=r"token id 2[0-9][0-9] but the model's vocab_size is 260 \(ids 0"
    ):
        import_series(f, tmp_path / "root", "r", out=io.StringIO())
    spec = json.loads((f / "tokenizer.json").read_text())
    spec["model"]["vocab"] = {"a": 0, "b": 1, "c": 4000}  # 3 tokens, one id past wte
    spec["model"]["merges"], spec["added_tokens"] = [], []
    _edit_config(f, vocab_size=300)
    hf.write_tensors(f, hf.random_tensors(hf.gpt2_shapes(hf.gpt2_config())))
    (f / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(HFImportError, match="token id 4000 but the model's vocab_size is 300"):
        import_series(f, tmp_path / "root", "r", out=io.StringIO())
    root = tmp_path / "file"
    root.write_text("")
    with pytest.raises(HFImportError, match=f"ROOT {root} is not a folder"):
        import_series(f, root, "r", out=io.StringIO())


def test_cli_end_to_end(tmp_path):
    """The installed command in its own process: a series in, a run out; then a refusal."""
    src = hf.series(tmp_path / "src", ["step0", "step5"], arch="gpt2", dtype="bfloat16")
    cmd = [
        sys.executable,
        "-m",
        "training.hf_import.cli",
        str(src),
        "--root",
        str(tmp_path / "root"),
    ]
    done = subprocess.run([*cmd, "--run", "imp"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "run 'imp' written to" in done.stdout and "(2 steps, 0..5)" in done.stdout
    assert "step 5" in done.stderr  # the progress bars
    again = subprocess.run([*cmd, "--run", "imp"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"interp-import: error: run 'imp' already exists in {tmp_path / 'root'}; "
        "--overwrite replaces it"
    ]


def test_the_importer_and_the_writer_bound_steps_alike():
    """A run's step folders have nine digits, whichever of the two wrote them."""
    from training.hf_import import discover
    from training.series_checks import MAX_STEP

    assert discover.MAX_STEP == MAX_STEP == 10**9 - 1
