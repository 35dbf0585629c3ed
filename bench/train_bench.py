"""Train the default run from scratch and print where the time goes; then 5 seeds' outcomes.

uv run python bench/train_bench.py [--seeds N]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time

from training import runtime
from training.config import TrainConfig
from training.corpus import builtin_corpus
from training.model.config import ModelConfig
from training.train import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    runtime.configure()  # XLA's CPU flags, as interp-train sets them, before JAX starts
    corpus = builtin_corpus()
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        s = train(root, "fruits", ModelConfig(), TrainConfig(), corpus, progress=False)
        wall = time.perf_counter() - t0
        tm = s.timings
        per_step = tm["steps_s"] / 10_000 * 1000
        print("default run (10,000 steps, all checkpoints)")
        print(f"  total wall time      {wall:8.2f} s   (train() in this process)")
        print(f"  initialise weights   {tm['init_s']:8.2f} s   (while the loop compiles)")
        print(f"  compile (to ready)   {tm['compile_s']:8.2f} s")
        loop, saves = tm["steps_s"], tm["save_s"]
        print(f"  training loop        {loop:8.2f} s   ({per_step:.3f} ms a step, saving included)")
        print(f"  saving checkpoints   {saves:8.2f} s   {len(s.steps)} steps, overlapping training")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak memory (RSS)    {peak:8.0f} MiB")
        word, prob = s.top[0]
        print(f"  top-1 for {s.prompt!r}: {word} ({prob:.1%}), valid loss {s.valid_loss:.3f}")
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "training.cli", "--root", root, "--run", "cli"]
        subprocess.run(cmd, check=True, capture_output=True)
        print(f"  interp-train, whole command (imports included): {time.perf_counter() - t0:.2f} s")
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
