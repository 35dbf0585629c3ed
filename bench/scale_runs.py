"""The benchmark's big runs: random weights of the Pythia-70m and GPT-2-small shapes.

    uv run python bench/scale_runs.py --root /tmp/scale-root [--only pythia|gpt2]

Written as a user's own loop would (``training.checkpoint.save_step`` of the model's flat
parameters, ``run.json`` from ``external_metadata``), with a byte-level BPE tokenizer
trained offline on this repository's README (a few thousand tokens: the model's vocabulary
is the shape's, 50k, the tokenizer names its first ids). Each step's parameters are the
first step's, scaled: every step is its own file on disk, read as such by the app.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hf_folders import bpe_tokenizer  # noqa: E402
from training import checkpoint as ckpt  # noqa: E402
from training.model.config import ModelConfig  # noqa: E402
from training.model.gpt import init_params  # noqa: E402
from training.model.params import flat_params  # noqa: E402
from training.run_meta import TOKENIZER_FILE, external_metadata  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class Shape:
    """One column of the targets table."""

    run: str
    title: str
    model: ModelConfig
    steps: tuple[int, ...]


PYTHIA = Shape(
    "pythia-shape",
    "6L x 8H x d512, vocab 50k, 40 ckpts",
    ModelConfig(
        vocab_size=50304,
        n_layers=6,
        n_heads=8,
        d_model=512,
        d_mlp=2048,
        context=2048,
        dropout=0.0,
        positions="rotary",
        rotary_dims=16,
        parallel=True,
        activation="gelu",
        qkv_bias=True,
        tied=False,
        unembed_bias=False,
    ),
    tuple(range(0, 40_000, 1000)),
)
GPT2 = Shape(
    "gpt2-shape",
    "12L x 12H x d768, 10 ckpts",
    ModelConfig(
        vocab_size=50257,
        n_layers=12,
        n_heads=12,
        d_model=768,
        d_mlp=3072,
        context=1024,
        dropout=0.0,
        activation="gelu_tanh",
        qkv_bias=True,
    ),
    tuple(range(0, 10_000, 1000)),
)
SHAPES = {"pythia": PYTHIA, "gpt2": GPT2}


def readme_lines() -> list[str]:
    return [line for line in README.read_text().splitlines() if line.strip()]


def long_prompt(n_words: int = 200, offset: int = 0) -> str:
    """README text of ``n_words`` words: well over 128 tokens (the app keeps the last 128)."""
    words = " ".join(readme_lines()).split()
    start = (offset * 37) % max(1, len(words) - n_words)
    return " ".join(words[start : start + n_words])


def write_shape(root: Path, shape: Shape) -> Path:
    """The run, unless a complete one is already there."""
    run = ckpt.run_dir(root, shape.run)
    if run.exists() and len(ckpt.list_steps(run)) == len(shape.steps):
        return run
    run.mkdir(parents=True, exist_ok=True)
    tok = bpe_tokenizer(readme_lines(), vocab_size=4000)
    tok.save(str(run / TOKENIZER_FILE))
    spec = {"tokenizer": {"kind": "huggingface", "file": TOKENIZER_FILE}}
    meta = external_metadata(shape.model, spec, {"kind": "bench", "path": str(run)})
    prompts = {"prompt": long_prompt(), "corrupt": long_prompt(offset=1)}
    ckpt.write_json_atomic(run / ckpt.RUN_FILE, {**meta, **prompts})
    base = {k: np.asarray(v) for k, v in flat_params(init_params(shape.model, seed=0)[1]).items()}
    done = set(ckpt.list_steps(run))
    for i, step in enumerate(shape.steps):
        if step in done:
            continue
        params = {k: (v * (1.0 + 0.05 * i)).astype(v.dtype) for k, v in base.items()}
        ckpt.save_step(run, step, params, {"step": step, "valid_loss": None})
        print(f"{shape.run}: step {step} written", flush=True)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--only", choices=sorted(SHAPES))
    args = ap.parse_args()
    for name, shape in SHAPES.items():
        if args.only in (None, name):
            write_shape(Path(args.root), shape)


if __name__ == "__main__":
    main()
