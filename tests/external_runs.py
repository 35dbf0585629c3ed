"""Runs that ``interp-train`` did not make, written without torch: a tiny byte-level BPE
tokenizer trained offline (``tokenizers``' BpeTrainer, as in docs/plans/hf-import.md §5),
random parameters, ``run.json`` from ``training.run_meta.external_metadata`` and a few
steps by ``training.checkpoint.save_step``.

Every run here shares one model shape (:data:`CONFIG`), so the app compiles its passes once
for all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.hf_folders import bpe_tokenizer
from training import checkpoint as ckpt
from training.model.config import ModelConfig
from training.model.gpt import init_params
from training.model.params import flat_params
from training.run_meta import TOKENIZER_FILE, external_metadata

TEXTS = ["the cat sat on the mat", "the dog sat on the log", "héllo wörld 🙂"]
CONFIG = ModelConfig(vocab_size=320, n_layers=2, n_heads=2, d_model=16, d_mlp=32, context=16)
STEPS = (0, 10, 20)
PROMPT = "the cat sat on x→y"  # "→" is in no training text: its three bytes split


def train_tokenizer(path: Path) -> Any:
    """A byte-level BPE of under 300 tokens (256 bytes, merges, one special token)."""
    tok = bpe_tokenizer(TEXTS)
    tok.save(str(path))
    return tok


def write_steps(run: Path, cfg: ModelConfig, steps: tuple[int, ...] = STEPS) -> None:
    """Random parameters (another seed each step), saved as a user's loop would."""
    for i, step in enumerate(steps):
        params = flat_params(init_params(cfg, seed=i)[1])
        params = {k: np.asarray(v) * (1.0 + 5.0 * i) for k, v in params.items()}  # not all alike
        ckpt.save_step(run, step, params, {"step": step, "valid_loss": None})


def write_run(
    root: Path, name: str, tokenizer: str, cfg: ModelConfig = CONFIG, **extra: Any
) -> Path:
    """An external run: ``tokenizer`` is ``huggingface`` (a trained BPE file) or ``bytes``;
    ``extra`` goes into run.json (``prompt``, ``corrupt``)."""
    run = ckpt.run_dir(root, name)
    run.mkdir(parents=True)
    if tokenizer == "huggingface":
        train_tokenizer(run / TOKENIZER_FILE)
        spec = {"tokenizer": {"kind": "huggingface", "file": TOKENIZER_FILE}}
    else:
        spec = {"tokenizer": {"kind": "bytes"}}
    meta = external_metadata(cfg, spec, {"kind": "test", "path": str(run)})
    ckpt.write_json_atomic(run / ckpt.RUN_FILE, {**meta, **extra})
    write_steps(run, cfg)
    return run
