"""The induction lab's benchmark: seeds 0, 1 and 2 trained together (one vmapped loop) and
one at a time, timed; then issue #16's acceptance figures of each seed.

    .venv/bin/python bench/induction_bench.py [--seeds 0,1,2] [--no-separate]

Prints the load average before and after (timings on a busy machine are not comparable).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import runtime  # noqa: E402

runtime.configure()

from interp_app.core.induction_run import (  # noqa: E402
    LabRun,
    ablated_repeat_loss,
    phase_figures,
    recorded,
    timeline,
)
from training.induction.config import InductionConfig  # noqa: E402
from training.induction.loop import run_names, train_induction  # noqa: E402


def _timed(root: Path, name: str, cfg: InductionConfig, seeds: list[int]) -> float:
    t0 = time.perf_counter()
    train_induction(root, name, cfg, seeds, progress=False)
    return time.perf_counter() - t0


def _report(root: Path, run: str) -> None:
    tl = timeline(root, run)
    fig = phase_figures(tl)
    lab = LabRun.open(root, run)
    head = int(fig["induction_head"][-1])
    last = int(tl.steps[-1])
    clean = tl.repeat_loss[-1]
    ablated = [ablated_repeat_loss(lab, last, 1, h) for h in range(lab.mc.n_heads)]
    k_last = tl.composition[-1, 1]  # [layer-0 head, layer-1 head]
    prev_head = int(fig["previous_head"][-1])
    rank = 1 + int((k_last > k_last[prev_head, head]).sum())
    print(f"{run}:")
    for key, value in fig.items():
        print(f"  {key:<18} {value}")
    print(f"  phase (recorded)   {recorded(root, run).phase_steps()}")
    print(f"  induction by head  {[round(float(x), 3) for x in tl.induction[-1, 1]]}")
    print(
        f"  K-composition      {k_last.round(3).tolist()} "
        f"(L0H{prev_head}->{fig['induction_head']}: rank {rank} of {k_last.size})"
    )
    for h, loss in enumerate(ablated):
        print(
            f"  ablating L1H{h} at step {last}: repeated-part loss {clean:.3f} -> "
            f"{loss:.3f} (+{loss - clean:.2f} nats)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--no-separate", action="store_true", help="skip the one-at-a-time runs")
    ap.add_argument("--steps", type=int, default=InductionConfig().steps)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = InductionConfig(steps=args.steps)
    print(f"load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        together = _timed(root, "together", cfg, seeds)
        print(f"{len(seeds)} seeds together: {together:.1f} s (load {os.getloadavg()[0]:.1f})")
        if not args.no_separate:
            alone = [_timed(root, f"alone{s}", cfg, [s]) for s in seeds]
            print(f"one at a time: {' + '.join(f'{t:.1f}' for t in alone)} = {sum(alone):.1f} s")
            again = _timed(root, "again", cfg, seeds)  # A B A: the load drifts
            print(f"{len(seeds)} seeds together again: {again:.1f} s")
        print(f"load after training: {os.getloadavg()}")
        for run in run_names("together", seeds):
            _report(root, run)


if __name__ == "__main__":
    main()
