"""Circuits over training: every edge's exact path patching, EAP and EAP-IG at every
checkpoint of the default run, cold (a fresh process: checkpoints read, programs compiled)
and warm (compiled; a new prompt pair), with the figures issue #17 asks for.

uv run python bench/circuits_bench.py [--root checkpoints]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

T_START = time.perf_counter()
import numpy as np  # noqa: E402
from common import default_root  # noqa: E402

from interp_app.core import api  # noqa: E402

PROMPT, CORRUPT = "i like spicy so i like", "i like sweet so i like"


def s(t0: float) -> str:
    return f"{time.perf_counter() - t0:.2f} s"


def main() -> None:
    root, tmp = default_root(__doc__)
    print(f"imports (JAX, the app's core): {s(T_START)}")
    run = api.open_run(root, "fruits")
    n_steps = len(run.steps)

    # cold, in its parts: reading every checkpoint, the capture that picks the corrupted
    # prompt's answer at the latest step, then compiling and scoring (the warm repeat below
    # is the scoring alone, so compilation is the difference)
    t0 = time.perf_counter()
    run.store.stacked(run.name, run.steps)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    run.analyzer.logits(run.name, run.steps[-1], run.encode(CORRUPT), 5)
    t_answer = time.perf_counter() - t1
    t2 = time.perf_counter()
    found = run.circuits(PROMPT, CORRUPT, target="chili")
    t_score = time.perf_counter() - t2
    n_edges = len(found.edges)
    print(
        f"cold: {n_edges} edges x {n_steps} checkpoints, exact path patching + EAP + EAP-IG "
        f"({found.ig_steps} points) + both faithfulness curves: {s(t0)} (reading the "
        f"checkpoints {t_load:.2f} s, the answer's capture {t_answer:.2f} s, compiling and "
        f"scoring {t_score:.2f} s)"
    )
    run.analyzer.forget_results()
    t0 = time.perf_counter()
    run.circuits(PROMPT, CORRUPT, target="chili")
    warm = time.perf_counter() - t0
    print(f"warm (compiled, checkpoints in memory), same query: {warm:.2f} s")
    print(f"so compiling took about {t_score - warm:.2f} s of the cold figure")
    t0 = time.perf_counter()
    run.circuits("i like sour so i like", CORRUPT, target="lemon")
    print(f"warm, another prompt pair (no recompilation): {s(t0)}")

    late = found.steps > 1_000
    for label, method, absolute in [
        ("EAP-IG", "eap_ig", False),
        ("|EAP-IG|", "eap_ig", True),
        ("EAP", "eap", False),
    ]:
        rho = found.spearman(method, absolute)
        print(
            f"Spearman {label:8} vs exact, after step 1,000: rho >= 0.9 at "
            f"{int((rho[late] >= 0.9).sum())}/{int(late.sum())} checkpoints "
            f"({np.mean(rho[late] >= 0.9):.0%}); median {np.nanmedian(rho[late]):.3f}, "
            f"min {np.nanmin(rho[late]):.3f}"
        )
    rho = found.spearman("eap_ig")
    every = max(1, n_steps // 20)
    print(
        "rho(EAP-IG, exact) by step: "
        + ", ".join(
            f"{int(st)}: {r:.2f}" for st, r in zip(found.steps[::every], rho[::every], strict=True)
        )
    )
    i = found.index(10_000) if 10_000 in found.steps else -1
    rec = found.recovered("exact")[i]
    k20 = int(0.2 * n_edges)
    print(
        f"step {int(found.steps[i])}: {found.description}, clean {found.clean_metric[i]:+.3f}, "
        f"corrupted {found.corrupt_metric[i]:+.3f}; keeping the top {k20} edges (20%) "
        f"recovers {rec[k20]:.0%}, 80% needs {int(np.argmax(rec >= 0.8))} edges"
    )
    top = np.argsort(-np.abs(found.exact[i]), kind="stable")[:5]
    print(
        "strongest edges (exact): "
        + "; ".join(f"{found.edges[e]} {found.exact[i, e]:+.2f}" for e in top)
    )
    del tmp


if __name__ == "__main__":
    main()
