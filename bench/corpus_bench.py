"""Train on a large generated corpus and print setup time and peak memory.

A 50,000-line corpus of 20,000 distinct words once took more than 300 s to set up (the
tokenizer rebuilt its index for every line) and a 5,000-line one was killed at 20 GB
(evaluation held the logits of the whole corpus). Targets: set up in under 10 s, train
with a peak RSS under 2 GB.

uv run python bench/corpus_bench.py [--lines 50000] [--words 20000] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def word(i: int) -> str:
    """The i-th distinct word: letters only, so the tokenizer keeps it whole."""
    letters = ""
    while True:
        i, r = divmod(i, 26)
        letters += chr(ord("a") + r)
        if i == 0:
            return "w" + letters
        i -= 1


def write_corpus(path: Path, lines: int, words: int, context: int, seed: int = 0) -> None:
    """Every word appears at least once (the first lines walk through all of them), the
    rest are drawn at random; lines have 3 to ``context`` words."""
    rng = random.Random(seed)
    vocab = [word(i) for i in range(words)]
    order = vocab[:]
    rng.shuffle(order)
    out = []
    for _ in range(lines):
        n = rng.randint(3, context)
        line = [order.pop() for _ in range(min(n, len(order)))]
        line += rng.choices(vocab, k=n - len(line))
        out.append(" ".join(line))
    if order:
        raise SystemExit(f"{lines} lines of at most {context} words cannot hold {words} words")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


CHILD = """
import json, sys, time
t0 = time.perf_counter()
from training import runtime
runtime.configure()  # XLA's CPU flags, as interp-train sets them
from training.config import TrainConfig
from training.model.config import ModelConfig
from training.corpus import load_corpus
from training.train import train
imports = time.perf_counter() - t0
root, corpus, steps, log_spaced = sys.argv[1:]
tc = TrainConfig(steps=int(steps), log_spaced=int(log_spaced))
lines = load_corpus(corpus, None)
t1 = time.perf_counter()
s = train(root, "big", ModelConfig(), tc, lines, progress=False)
print(json.dumps({**s.timings, "imports_s": imports, "before_train_s": t1 - t0,
                  "valid_loss": s.valid_loss, "steps": len(s.steps)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--words", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument(
        "--log-spaced",
        type=int,
        default=2,
        help="log-spaced checkpoints (each evaluates the whole corpus)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        write_corpus(corpus, args.lines, args.words, context=12)
        cmd = [sys.executable, "-c", CHILD, tmp, str(corpus), str(args.steps), str(args.log_spaced)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"trainer failed ({done.returncode}): {done.stderr[-2000:]}")
        tm = json.loads(done.stdout.strip().splitlines()[-1])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        setup = tm["before_train_s"] + tm["setup_s"]
        print(f"corpus: {args.lines:,} lines, {args.words:,} distinct words, {args.steps} steps")
        print(f"  setup                {setup:7.2f} s   (process start to a compiled, ready loop)")
        print(f"    of which imports   {tm['imports_s']:7.2f} s")
        prep = setup - tm["imports_s"] - tm["compile_s"]
        print(f"    corpus, tokenizer  {prep:7.2f} s   (reading, vocabulary, encoding, checks)")
        print(f"    compile            {tm['compile_s']:7.2f} s   (weights initialised meanwhile)")
        print(f"  first evaluation     {tm['first_eval_s']:7.2f} s   (the whole corpus, step 0)")
        print(
            f"  training loop        {tm['steps_s']:7.2f} s   ({tm['steps'] - 1} more evaluations)"
        )
        print(f"  whole process        {wall:7.2f} s")
        print(f"  peak memory (RSS)    {peak:7.0f} MiB  (the trainer process)")
        print(f"  validation loss      {tm['valid_loss']:7.3f}")


if __name__ == "__main__":
    main()
