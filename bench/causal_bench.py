"""Server time of the causal experiments on the default run.

uv run python bench/causal_bench.py [--root checkpoints]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_root  # noqa: E402

from interp_app.core.analyzer import Analyzer  # noqa: E402
from interp_app.core.prompt import encode_prompt  # noqa: E402
from interp_app.core.store import RunStore  # noqa: E402
from interp_app.core.view import compute_patching, compute_view, resolve  # noqa: E402


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    root, tmp = default_root(__doc__)
    analyzer = Analyzer(RunStore(root))
    sel, _ = resolve(analyzer, {})
    compute_view(analyzer, sel)
    compute_patching(analyzer, sel)  # compile once
    times = []
    for corrupt in [
        "i like sweet so i like",
        "i like sour so i like",
        "i like juicy so i like",
    ] * 10:
        analyzer.forget_results(captures=False)  # computed again, from cached forward passes
        t0 = time.perf_counter()
        compute_patching(analyzer, sel.with_(corrupt=corrupt))
        times.append(ms(t0))
    print(f"head + residual patching heatmaps: median {statistics.median(times):.1f} ms")

    times = []
    for ablate in [("L0H1",), ("L0H0", "L0H1"), ("L1H1",), ()] * 5:
        analyzer.forget_results(captures=False)
        t0 = time.perf_counter()
        compute_view(analyzer, sel.with_(ablate=ablate))
        times.append(ms(t0))
    print(f"ablated view with all-head ablation effects: median {statistics.median(times):.1f} ms")

    info = analyzer.store.info("fruits")
    chili = info.tokenizer.vocab.index("chili")
    for s in analyzer.store.steps("fruits"):
        analyzer.store.params("fruits", s)
    analyzer.timeline("fruits", encode_prompt(info.tokenizer, 12, "lemon tastes sour"), 2, chili)
    cold = []
    for text in ["i like sweet so i like", "apple is so sweet", "chili is so spicy"]:
        p = encode_prompt(info.tokenizer, 12, text)
        t0 = time.perf_counter()
        analyzer.timeline("fruits", p, p.length - 1, chili)
        cold.append(ms(t0))
    n = len(analyzer.store.steps("fruits"))
    print(
        f"ablation effect of every head at all {n} checkpoints (with all timeline metrics), "
        f"cold: median {statistics.median(cold):.0f} ms"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
