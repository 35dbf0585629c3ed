"""What the benchmarks share: a checkpoint root that holds the default run."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import checkpoint as ckpt  # noqa: E402
from training import runtime  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.corpus import builtin_corpus  # noqa: E402
from training.model.config import ModelConfig  # noqa: E402
from training.train import train  # noqa: E402

# XLA's CPU flags, before JAX starts: every bench but train_bench imports this module first.
runtime.configure()


def default_root(description: str) -> tuple[Path, tempfile.TemporaryDirectory]:
    """``--root`` if given (training the default run there if missing), else a temporary one.

    Keep the returned temporary folder alive while the root is in use.
    """
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--root", default=None, help="checkpoint root holding (or to hold) 'fruits'")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.root or tmp.name)
    if "fruits" not in ckpt.list_runs(root):
        train(root, "fruits", ModelConfig(), TrainConfig(), builtin_corpus(), progress=False)
    return root, tmp
