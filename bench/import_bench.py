"""Importing and serving a GPT-2-small-shaped Hugging Face checkpoint; our capture against
transformers' forward pass on the same weights and tokens.

    UV_PROJECT_ENVIRONMENT=.venv-hf .tools/bin/uv run --group hf-ref python bench/import_bench.py

Needs JAX and torch in one environment (the ``hf-ref`` group). A random GPT-2 small
(12 layers, 12 heads, width 768, vocabulary 50,257; transformers' own init, seeded) is
written with ``save_pretrained`` as a series of ``--steps`` step folders in a temporary
folder, then:

- ``import_series`` over the series: seconds per checkpoint;
- every internal of a 128-token prompt: our jitted ``capture`` (residual stream, patterns,
  values, each head's output, ...) against transformers' eager forward with
  ``output_hidden_states`` and ``output_attentions``, alternating, median of ``--repeats``
  after one warm-up each (the goal: ours at least 1.5x faster), and each side's logits-only
  forward pass, which says how much of the time is the recording;
- peak RSS (VmHWM) of a fresh process that opens the imported run with ``api.open_run`` and
  computes one view (``Run.capture``, then ``Run.metrics``) of a 128-token prompt, with the
  seconds of each stage; and of processes that only open the run or only import.

Prints figures; asserts nothing. Says the machine and its load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402, F401  (XLA's CPU flags, before JAX starts)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from training.hf_import import import_series, load_hf_folder  # noqa: E402
from training.model.interp import capture  # noqa: E402
from training.model.params import unflatten_params  # noqa: E402

TOKENS = 128
TEXT = "the quick brown fox jumps over the lazy dog while the cat sat on the mat " * 20
#: Run in a fresh process: open the imported run, compute one view; print the peak RSS in
#: MiB and the seconds of each stage. The peak is /proc/self/status VmHWM where it exists:
#: getrusage's ru_maxrss carries the parent's high-water mark over fork and exec on Linux, so
#: a child of this (large) process would report the parent's peak.
SERVE = """
import resource, sys, time
def peak():
    try:
        line = [x for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
        return int(line.split()[1]) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
laps = []
def lap(what):
    laps.append(f"{what} {time.perf_counter() - t0:.1f} s")
from interp_app.core import api
lap("imports")
if sys.argv[2] != "imports":
    run = api.open_run(sys.argv[1], "g2")
    step = run.steps[-1]
    lap("open_run")
if sys.argv[2] == "view":
    cap = run.capture(step, sys.argv[3])
    lap(f"capture of {len(cap.tokens)} tokens")
    m = run.metrics(step, sys.argv[3])
    lap(f"metrics ({len(m.components)} components)")
print(peak(), "; ".join(laps))
"""


def machine() -> str:
    """CPU model and count, for the figures' context."""
    model = platform.processor() or "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__}, jax {jax.__version__}"


def load() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())


def write_series(src: Path, steps: int) -> tuple[float, int]:
    """``steps`` GPT-2-small step folders (each step's weights nudged, so none is a copy)
    and a tokenizer.json; returns save_pretrained's seconds per step and the bytes of one."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    saves = []
    for i in range(steps):
        with torch.no_grad():
            model.transformer.ln_f.bias.add_(0.01)
        t0 = time.perf_counter()
        model.save_pretrained(src / f"step{1000 * i}")
        saves.append(time.perf_counter() - t0)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([TEXT] * 4, trainer=trainer)
    tok.save(str(src / "tokenizer.json"))
    size = sum(f.stat().st_size for f in (src / "step0").iterdir())
    return statistics.median(saves), size


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare_capture(folder: Path, repeats: int) -> tuple[dict[str, list[float]], float]:
    """Seconds per call of each pass (ours and transformers', every internal and logits
    only), taken in turn after a warm-up each; and the largest logit difference between
    the two (the same weights and tokens)."""
    ck = load_hf_folder(folder)
    graphdef, params = unflatten_params(ck.config, ck.params)
    del ck
    ids = np.random.default_rng(0).integers(0, 50257, TOKENS)
    tokens = jnp.asarray(ids[None], jnp.int32)
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    x = torch.tensor(ids[None])
    forward = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))

    @torch.no_grad()
    def theirs(internals: bool) -> Any:
        return hf(x, output_hidden_states=internals, output_attentions=internals)

    passes: dict[str, Callable[[], Any]] = {
        "ours, every internal (capture)": lambda: jax.block_until_ready(
            capture(graphdef, params, tokens)
        ),
        "transformers, every internal": lambda: theirs(True),
        "ours, logits only": lambda: jax.block_until_ready(forward(params, tokens)),
        "transformers, logits only": lambda: theirs(False),
    }
    first = timed(next(iter(passes.values())))
    print(f"  our first capture (compile included) {first:.2f} s")
    for run in passes.values():
        run()
    mine = np.asarray(capture(graphdef, params, tokens).logits[0])
    diff = float(np.abs(mine - theirs(True).logits[0].numpy()).max())
    times: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(repeats):
        for name, run in passes.items():
            times[name].append(timed(run))
    return times, diff


def peak_rss(root: Path, mode: str) -> str:
    """Peak RSS of a fresh process: ``view`` (open the run, capture and metrics of its last
    step), ``open`` (``open_run`` only) or ``imports`` (the modules only)."""
    prompt = " ".join(TEXT.split()[:TOKENS])  # one token a word with this tokenizer
    cmd = [sys.executable, "-c", SERVE, str(root), mode, prompt]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    mib, what = out.strip().splitlines()[-1].split(" ", 1)
    return f"{float(mib):7.0f} MiB  ({what})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="checkpoints in the imported series")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls of each forward pass")
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    print(f"machine: {machine()}")
    print(f"before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        src, root = Path(tmp) / "src", Path(tmp) / "root"
        save_s, size = write_series(src, args.steps)
        print(f"GPT-2 small, {size / 2**20:.0f} MiB a step on disk; save_pretrained {save_s:.2f} s")
        with open(os.devnull, "w") as quiet:
            t_import = timed(lambda: import_series(src, root, "g2", out=quiet))
        print(f"import_series: {args.steps} steps in {t_import:.2f} s,")
        print(f"  {t_import / args.steps:.2f} s per checkpoint (checks, read, convert, write)")
        print(f"capture of every internal, {TOKENS} tokens, median of {args.repeats}:")
        times, diff = compare_capture(src / "step0", args.repeats)
        for name, ts in times.items():
            print(f"  {name:32s} {statistics.median(ts) * 1000:8.1f} ms  {_spread(ts)}")
        ours, theirs = (statistics.median(ts) for ts in list(times.values())[:2])
        print(f"  capture speed-up, transformers' time / ours: {theirs / ours:.2f} (goal 1.5)")
        print(f"  max |logit difference| {diff:.1e}")
        print("peak RSS of a fresh process (stages: seconds since start):")
        print(f"  imports only                   {peak_rss(root, 'imports')}")
        print(f"  open_run                       {peak_rss(root, 'open')}")
        print(f"  one view of one step           {peak_rss(root, 'view')}")
    print(f"after: {load()}")


def _spread(xs: list[float]) -> str:
    return f"(min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


if __name__ == "__main__":
    main()
