"""Imported Hugging Face models compute what transformers computes.

``tests/golden/hf/*/`` are tiny random GPT-2 and GPT-NeoX folders written by
``scripts/hf_goldens.py`` with transformers' own outputs beside them (``expected.npz``), so
this runs without torch: each folder goes through ``load_hf_folder`` into our model, and the
logits, every layer's residual stream, the final LayerNorm's output and the attention
patterns must equal transformers' within 1e-4. When torch and transformers can be imported
(the ``hf-ref`` group), one model is also rebuilt and compared live.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tokenizers import Tokenizer

from training.hf_import import load_hf_folder
from training.model.interp import capture
from training.model.params import unflatten_params

GOLDEN = Path(__file__).resolve().parent / "golden" / "hf"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "hf_goldens.py"
FOLDERS = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.npz").is_file())
ATOL = 1e-4

#: What each golden is there to exercise, as the importer must read it from config.json.
CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2": dict(positions="learned", activation="gelu_tanh", tied=True, qkv_bias=True),
    "neox_par": dict(positions="rotary", rotary_dims=2, parallel=True, tied=False),
    "neox_seq_r50": dict(rotary_dims=4, rotary_base=500.0, parallel=False, ln_eps=1e-3),
    "neox_nobias": dict(rotary_dims=8, qkv_bias=False, activation="gelu", parallel=True),
    "gpt2_sharded": dict(positions="learned", tied=False, unembed_bias=False),
}


def _compare(folder: Path, want: dict[str, np.ndarray]) -> None:
    """Our capture of ``want["ids"]`` through the imported folder against transformers'."""
    ck = load_hf_folder(folder)
    graphdef, params = unflatten_params(ck.config, ck.params)
    tokens = jnp.asarray(want["ids"][None], jnp.int32)
    cap = jax.tree.map(np.asarray, capture(graphdef, params, tokens))
    hidden, n_layers = want["hidden_states"], ck.config.n_layers
    assert hidden.shape[0] == n_layers + 1
    np.testing.assert_allclose(cap.logits[0], want["logits"], atol=ATOL, err_msg="logits")
    for i in range(n_layers):
        np.testing.assert_allclose(cap.resid[0, i], hidden[i], atol=ATOL, err_msg=f"resid {i}")
    # transformers' last hidden state is after the final LayerNorm: our ``final``
    np.testing.assert_allclose(cap.final[0], hidden[n_layers], atol=ATOL, err_msg="final")
    np.testing.assert_allclose(cap.patterns[0], want["attentions"], atol=ATOL, err_msg="attn")


@pytest.mark.parametrize("name", FOLDERS)
def test_imported_model_equals_transformers(name: str) -> None:
    want = dict(np.load(GOLDEN / name / "expected.npz"))
    _compare(GOLDEN / name, want)


def test_every_golden_exercises_what_it_is_for() -> None:
    """The config fields each golden stands for (legacy rotary keys, shards, no biases)."""
    assert set(FOLDERS) == set(CONFIGS)
    for name, fields in CONFIGS.items():
        config = load_hf_folder(GOLDEN / name).config
        got = {field: getattr(config, field) for field in fields}
        assert got == fields, name
    assert (GOLDEN / "gpt2_sharded" / "model.safetensors.index.json").is_file()


@pytest.mark.parametrize("name", FOLDERS)
def test_tokenizer_file_gives_the_stored_ids(name: str) -> None:
    want = np.load(GOLDEN / name / "expected.npz")
    ck_file = load_hf_folder(GOLDEN / name).tokenizer_file
    assert ck_file is not None
    enc = Tokenizer.from_file(str(ck_file)).encode(str(want["text"]), add_special_tokens=False)
    assert enc.ids == want["ids"].tolist()
    assert enc.tokens == want["tokens"].tolist()
    assert [list(o) for o in enc.offsets] == want["offsets"].tolist()


def _goldens_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hf_goldens", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_live_against_transformers(tmp_path: Path) -> None:
    """Rebuild one golden with the installed transformers and compare on a new text (skipped
    where torch is not installed, as in CI)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    script = _goldens_script()
    tok = script.train_tokenizer()
    folder = script.build("neox_seq_r50", tok, out=tmp_path)
    _compare(folder, script.reference(folder, tok, "the dog ate the mat 🙂 héllo"))
