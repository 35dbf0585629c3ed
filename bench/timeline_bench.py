"""All-checkpoint metrics and scrubbing: vectorised pass vs one call per checkpoint.

uv run python bench/timeline_bench.py [--root checkpoints]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_root  # noqa: E402

from interp_app.core import metrics  # noqa: E402
from interp_app.core.analyzer import Analyzer  # noqa: E402
from interp_app.core.prompt import encode_prompt  # noqa: E402
from interp_app.core.store import RunStore  # noqa: E402
from interp_app.server.app import create_app  # noqa: E402
from tests.dash_client import DashClient  # noqa: E402
from training import checkpoint as ckpt  # noqa: E402


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def synthetic_run(root: Path, source: Path, n: int) -> None:
    """A run with ``n`` checkpoints of the default model (noisy copies of real steps)."""
    run = root / "synthetic"
    run.mkdir(parents=True)
    (run / ckpt.RUN_FILE).write_text((source / ckpt.RUN_FILE).read_text())
    base = ckpt.load_params(source, ckpt.list_steps(source)[-1])
    rng = np.random.default_rng(0)
    for step in range(n):
        params = {
            k: v + 0.01 * rng.standard_normal(v.shape).astype(v.dtype) for k, v in base.items()
        }
        ckpt.save_step(run, step * 10, params, {"step": step * 10})


def main() -> None:
    root, tmp = default_root(__doc__)

    analyzer = Analyzer(RunStore(root))
    store = analyzer.store
    info = store.info("fruits")
    steps = store.steps("fruits")
    t0 = time.perf_counter()
    for s in steps:
        store.params("fruits", s)
    print(f"default run: {len(steps)} checkpoints, parameters loaded in {ms(t0):.0f} ms")
    chili = info.tokenizer.vocab.index("chili")
    warm = encode_prompt(info.tokenizer, 12, "lemon tastes sour")
    analyzer.timeline("fruits", warm, 2, chili)  # compile once

    prompts = [
        "i like spicy so i like",
        "i like sweet so i like",
        "apple is so sweet",
        "i like the juicy taste of orange",
        "chili is so spicy",
    ]
    cold, cached, loop = [], [], []
    for text in prompts:
        p = encode_prompt(info.tokenizer, 12, text)
        pos = p.length - 1
        t0 = time.perf_counter()
        analyzer.timeline("fruits", p, pos, chili)
        cold.append(ms(t0))
        t0 = time.perf_counter()
        analyzer.timeline("fruits", p, pos, chili)
        cached.append(ms(t0))
        analyzer.forget_results()
        t0 = time.perf_counter()
        for s in steps:  # the one-call-per-checkpoint loop (the panels' one-step pass)
            cap = analyzer.capture("fruits", s, p)
            metrics.one_step(
                cap,
                store.params("fruits", s),
                pos=pos,
                target=chili,
                length=p.length,
                src=0,
                layer=1,
                head=0,
                eps=info.model.ln_eps,
            )
        loop.append(ms(t0))
    print("all-checkpoint metrics on a new prompt (median of 5 prompts)")
    print(f"  vectorised, cold   {statistics.median(cold):7.1f} ms")
    print(f"  vectorised, cached {statistics.median(cached):7.2f} ms")
    print(
        f"  per-checkpoint loop{statistics.median(loop):7.1f} ms   "
        f"(vectorised is {statistics.median(loop) / statistics.median(cold):.0f}x faster)"
    )

    client = DashClient(create_app(root))
    sel = client.select(None, search="")["selection"]["data"]
    rendered = client.render(sel)["rendered"]["data"]
    for i in range(len(steps)):  # visit every step once: the cache is warm
        rendered = client.render({**sel, "step": steps[i]}, rendered=rendered)["rendered"]["data"]
    times = []
    for i in range(len(steps)):
        t0 = time.perf_counter()
        r = client.select("step-slider.value", i, sel)
        new = r["selection"]["data"] if r else sel
        rendered = client.render(new, rendered=rendered)["rendered"]["data"]
        times.append(ms(t0))
        sel = new
    print(
        f"scrubbing the slider (cached), all panels: median {statistics.median(times):.1f} ms, "
        f"response {client.last_bytes / 1024:.0f} KB"
    )

    scratch = tempfile.TemporaryDirectory()
    syn = Path(scratch.name)
    synthetic_run(syn, root / "fruits", 1000)
    s2 = Analyzer(RunStore(syn))
    t0 = time.perf_counter()
    listed = s2.store.steps("synthetic")
    print(f"synthetic run: {len(listed)} checkpoints listed in {ms(t0):.0f} ms")
    p = encode_prompt(info.tokenizer, 12, "i like spicy so i like")
    t0 = time.perf_counter()
    s2.timeline("synthetic", p, 5, chili)
    print(f"  head timeline cold (load 1,000 checkpoints + vectorised pass): {ms(t0):.0f} ms")
    scratch.cleanup()
    tmp.cleanup()


if __name__ == "__main__":
    main()
