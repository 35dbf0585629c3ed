"""Peak memory of one view of a GPT-2-small-shaped run: parameters read onto the heap, or
memory-mapped, stored as float32 or float16.

    uv run python bench/memory_bench.py [--root /tmp/memory-root] [--steps 3]

Writes (once, into ``--root``) two runs of random weights of the GPT-2-small shape (12L x
12H x d768, vocab 50,257; 498 MB a step in float32), one stored in float32 and one in
float16, each with ``--steps`` checkpoints. Then each case runs in a fresh process: the
app's view (``interp_app.core.view.compute_view``: the forward pass and every panel's
numbers) of a 128-token prompt at the first step, then at each further step (a step
change), and prints the process's peak RSS and, at the end, how much of its resident
memory is heap (anonymous) and how much is mapped files (page cache the kernel can take
back). ``read`` is the old way (every step read onto the heap, like
``safetensors.numpy.load_file``); ``mapped`` memory-maps the files (``training.checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import checkpoint as ckpt  # noqa: E402
from training.model.config import ModelConfig  # noqa: E402
from training.run_meta import external_metadata  # noqa: E402

GPT2 = ModelConfig(
    vocab_size=50257,
    n_layers=12,
    n_heads=12,
    d_model=768,
    d_mlp=3072,
    context=128,  # the prompt is 128 tokens; the weights do not depend on it but wpe
    dropout=0.0,
    activation="gelu_tanh",
    qkv_bias=True,
)
RUNS = {"gpt2-f32": np.float32, "gpt2-f16": np.float16}
CASES = [("read", "gpt2-f32"), ("mapped", "gpt2-f32"), ("mapped", "gpt2-f16")]
PROMPT = ("the quick brown fox jumps over the lazy dog; " * 4)[:128]  # 128 byte tokens
MB = 1024 * 1024


def write_runs(root: Path, steps: int) -> None:
    """Random weights of the model's shapes, scaled per step, stored in each run's dtype."""
    import jax

    from training.model.params import abstract_model, flat_params

    shapes = abstract_model(GPT2)[1]
    for name, dtype in RUNS.items():
        run = root / name
        if (run / ckpt.RUN_FILE).exists() and len(ckpt.list_steps(run)) >= steps:
            continue
        run.mkdir(parents=True, exist_ok=True)
        meta = external_metadata(GPT2, {"tokenizer": {"kind": "bytes"}}, {"kind": "bench"})
        ckpt.write_json_atomic(run / ckpt.RUN_FILE, meta)
        rng = np.random.default_rng(0)
        base = flat_params(
            jax.tree.map(lambda s, r=rng: r.standard_normal(s.shape, np.float32) * 0.02, shapes)
        )
        for i in range(steps):
            step = 1000 * i
            arrays = {k: (v * (1 + 0.1 * i)).astype(dtype) for k, v in base.items()}
            ckpt.save_step(run, step, arrays, {"step": step, "valid_loss": None})
        print(f"wrote {name}: {steps} steps", file=sys.stderr)


def status_mb(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status in MB: ``VmHWM`` is this process's peak RSS (getrusage's
    ``ru_maxrss`` is carried over from the parent across exec), ``RssAnon`` its heap now,
    ``RssFile`` the mapped files it holds resident."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0]) / 1024
    return out


def peak_mb() -> float:
    return status_mb("VmHWM")["VmHWM"]


def child(mode: str, root: Path, run: str) -> dict[str, object]:
    """One case, in this (fresh) process."""
    from training import runtime

    runtime.configure()
    if mode == "read":
        ckpt.LAZY_BYTES = 1 << 62  # read every file whole onto the heap
    from interp_app.core.analyzer import Analyzer
    from interp_app.core.store import RunStore
    from interp_app.core.view import compute_view, resolve

    analyzer = Analyzer(RunStore(root))
    steps = analyzer.store.steps(run)
    assert analyzer.encode(run, PROMPT).length == 128
    result: dict[str, object] = {"case": f"{mode} {run}", "start_mb": round(peak_mb())}
    for i, step in enumerate(steps):
        t0 = time.perf_counter()
        sel, notes = resolve(analyzer, {"run": run, "step": step, "prompt": PROMPT})
        assert sel is not None, notes
        compute_view(analyzer, sel)
        if i == 0:
            result["first_view_s"] = round(time.perf_counter() - t0, 2)
            result["peak_after_one_view_mb"] = round(peak_mb())
    result["peak_after_all_steps_mb"] = round(peak_mb())
    result["steps"] = len(steps)
    result["cache_mb"] = round(analyzer.store._params.bytes / MB)
    result.update({f"{k}_mb": round(v) for k, v in status_mb("RssAnon", "RssFile").items()})
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/memory-bench-root", help="where the runs are kept")
    ap.add_argument("--steps", type=int, default=3, help="checkpoints per run")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "RUN"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.root)
    if args.child:
        print(json.dumps(child(args.child[0], root, args.child[1])))
        return
    write_runs(root, args.steps)
    print(f"one view of a 128-token prompt, GPT-2-small shape, {args.steps} steps a run")
    for mode, run in CASES:
        command = [sys.executable, __file__, "--root", str(root), "--child", mode, run]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{mode} {run}: failed\n{out.stderr[-2000:]}")
            continue
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
