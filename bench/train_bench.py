"""Train the default run from scratch and print where the time goes; then 5 seeds' outcomes.

uv run python bench/train_bench.py [--seeds N]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import training  # noqa: F401  (configures XLA before JAX starts)
from training.config import ModelConfig, TrainConfig
from training.corpus import builtin_corpus
from training.train import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    corpus = builtin_corpus()
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        s = train(root, "fruits", ModelConfig(), TrainConfig(), corpus, progress=False)
        wall = time.perf_counter() - t0
        tm = s.timings
        steady = (tm["steps_s"] - tm["save_s"]) / (10_000 - 1) * 1000
        print("default run (10,000 steps, all checkpoints)")
        print(f"  total wall time      {wall:8.2f} s")
        print(f"  compile (1st chunk)  {tm['compile_s']:8.2f} s")
        print(f"  steady per step      {steady:8.3f} ms")
        print(f"  saving checkpoints   {tm['save_s']:8.2f} s for {len(s.steps)} steps")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak memory (RSS)    {peak:8.0f} MiB")
        word, prob = s.top[0]
        print(f"  top-1 for {s.prompt!r}: {word} ({prob:.1%}), valid loss {s.valid_loss:.3f}")
        chili = 0
        print(f"\n{args.seeds} seeds:")
        for seed in range(args.seeds):
            r = train(
                root, f"seed{seed}", ModelConfig(), TrainConfig(seed=seed), corpus, progress=False
            )
            chili += r.top[0][0] == "chili"
            top = ", ".join(f"{w} {p:.0%}" for w, p in r.top[:2])
            print(f"  seed {seed}: valid loss {r.valid_loss:.3f}  top: {top}")
        print(f"  chili first for {chili} of {args.seeds} seeds")


if __name__ == "__main__":
    main()
