"""Concurrent sessions against gunicorn on loopback, through Dash's callback endpoint.

    uv run python bench/load_bench.py [--root checkpoints]

Starts ``interp-app`` as deployed (gunicorn, default workers and threads, no training) on the
default run, then runs 20 simulated sessions for 30 s (bounded well under 60 s). Each session
does what a person does in the page: pick a head, move the step, type a prompt; every action
is the browser's two requests (select, then render). Prints requests/s, latency percentiles
and errors.
"""

from __future__ import annotations

import random
import statistics
import sys
import threading
import time
from pathlib import Path

import training  # noqa: F401  (configures XLA before JAX starts)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_root  # noqa: E402

from interp_app.app import create_app  # noqa: E402
from tests.browser import free_port, serve  # noqa: E402
from tests.dash_client import DashClient  # noqa: E402

SESSIONS = 20
DURATION_S = 30.0
HEADS = ["L0H0", "L0H1", "L1H0", "L1H1"]
PROMPTS = [
    "i like spicy so i like",
    "apple is sweet",
    "i like sour so i like",
    "chili is so spicy",
    "lemon is sour so",
    "i like sweet so i like",
]


def session(app, url: str, seed: int, stop: float, latencies: list, errors: list) -> None:
    rng = random.Random(seed)
    client = DashClient(app, base_url=url)

    def timed(fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001  (every failure counts as an error)
            errors.append(repr(err)[:200])
            return None
        latencies.append((time.perf_counter() - t0) * 1000)
        return out

    first = timed(client.select, None, search="?run=fruits")
    sel = first and first["selection"]["data"]
    rendered = None
    steps = None
    while time.monotonic() < stop and sel:
        action = rng.choice(("head", "step", "prompt"))
        if action == "head":
            r = timed(client.select, "grid-click.data", {"head": rng.choice(HEADS)}, sel)
        elif action == "step":
            steps = steps or client.render(sel)["step-slider"]["max"]
            r = timed(client.select, "step-slider.value", rng.randint(0, steps), sel)
        else:
            r = timed(client.select, "prompt-input.value", rng.choice(PROMPTS), sel)
        if r and "selection" in r:
            sel = r["selection"]["data"]
        out = timed(client.render, sel, rendered=rendered)
        if out and "rendered" in out:
            rendered = out["rendered"]["data"]


def main() -> None:
    root, tmp = default_root(__doc__)
    port = free_port()
    command = [sys.executable, "-m", "interp_app.cli", "--no-train", "--root", str(root)]
    command += ["--port", str(port)]
    app = create_app(root)  # only for the callback map: requests go to gunicorn
    with serve(command, port, timeout=120) as url:
        warm = DashClient(app, base_url=url)
        for _ in range(4):  # each worker compiles on its first prompt shapes
            warm.render(warm.select(None, search="?run=fruits")["selection"]["data"])
        latencies: list[float] = []
        errors: list[str] = []
        stop = time.monotonic() + DURATION_S
        t0 = time.monotonic()
        threads = [
            threading.Thread(target=session, args=(app, url, i, stop, latencies, errors))
            for i in range(SESSIONS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=DURATION_S + 25)
        wall = time.monotonic() - t0
    q = statistics.quantiles(latencies, n=100)
    print(f"load: {SESSIONS} sessions for {wall:.1f} s against gunicorn (default workers)")
    print(f"  requests: {len(latencies)} ok, {len(errors)} errors, {len(latencies) / wall:.1f}/s")
    p50, p95, p99, worst = q[49], q[94], q[98], max(latencies)
    print(f"  latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {worst:.1f}")
    for err in errors[:5]:
        print("  error:", err)
    tmp.cleanup()


if __name__ == "__main__":
    main()
