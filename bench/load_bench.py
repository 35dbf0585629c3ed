"""Concurrent sessions against gunicorn on loopback, through Dash's callback endpoint.

    uv run python bench/load_bench.py [--root checkpoints]

Starts ``interp-app`` as deployed (gunicorn, default workers and threads, no training) on the
default run, then runs 20 simulated sessions in two phases of 25 s (bounded under 60 s in
all). Each session does what a person does in the page: pick a head, move the step, type a
prompt; every action is the browser's requests (select, then the 2D panels, the 3D view and
the embedding stacks). Phase "paced"
waits 0.3-1.0 s between a session's actions, as a person looking at the result would;
phase "flat out" waits for nothing (the server's saturation point). Prints requests/s,
latency percentiles and errors for each.
"""

from __future__ import annotations

import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_root  # noqa: E402

from interp_app.server.app import create_app  # noqa: E402
from tests.browser import free_port, serve  # noqa: E402
from tests.dash_client import DashClient  # noqa: E402

SESSIONS = 20
DURATION_S = 25.0
PHASES = (("paced", (0.3, 1.0)), ("flat out", (0.0, 0.0)))
HEADS = ["L0H0", "L0H1", "L1H0", "L1H1"]
PROMPTS = [
    "i like spicy so i like",
    "apple is sweet",
    "i like sour so i like",
    "chili is so spicy",
    "lemon is sour so",
    "i like sweet so i like",
]


def session(
    app, url: str, seed: int, stop: float, think: tuple, latencies: list, errors: list
) -> None:
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
    rendered = forward_key = embedding_key = None
    steps = None
    while time.monotonic() < stop and sel:
        time.sleep(rng.uniform(*think))
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
        # what the page then asks for: the 2D panels, the 3D view, the embedding stacks
        out = timed(client.render, sel, rendered=rendered)
        if out and "rendered" in out:
            rendered = out["rendered"]["data"]
        out = timed(
            client.call,
            "forward-3d.figure",
            {"selection.data": sel, "attention-threshold.value": 0.3},
            ["selection.data"],
            {"forward-key.data": forward_key},
        )
        if out and "forward-key" in out:
            forward_key = out["forward-key"]["data"]
        out = timed(
            client.call,
            "embedding-stacks.figure",
            {"selection.data": sel, "embedding-set.value": "fruits"},
            ["selection.data"],
            {"embedding-key.data": embedding_key},
        )
        if out and "embedding-key" in out:
            embedding_key = out["embedding-key"]["data"]


def main() -> None:
    root, tmp = default_root(__doc__)
    port = free_port()
    command = [sys.executable, "-m", "interp_app.server.cli", "--no-train", "--root", str(root)]
    command += ["--port", str(port)]
    app = create_app(root)  # only for the callback map: requests go to gunicorn
    with serve(command, port, timeout=120) as url:
        warm = DashClient(app, base_url=url)
        for _ in range(4):  # each worker compiles on its first prompt shapes
            warm.render(warm.select(None, search="?run=fruits")["selection"]["data"])
        for name, think in PHASES:
            latencies: list[float] = []
            errors: list[str] = []
            stop = time.monotonic() + DURATION_S
            t0 = time.monotonic()
            threads = [
                threading.Thread(target=session, args=(app, url, i, stop, think, latencies, errors))
                for i in range(SESSIONS)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=DURATION_S + 25)
            wall = time.monotonic() - t0
            report(name, think, wall, latencies, errors)
    tmp.cleanup()


def report(name: str, think: tuple, wall: float, latencies: list, errors: list) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(f"load, {name}: {SESSIONS} sessions, think {think[0]}-{think[1]} s, {wall:.1f} s")
    print(f"  requests: {len(latencies)} ok, {len(errors)} errors, {len(latencies) / wall:.1f}/s")
    p50, p95, p99, worst = q[49], q[94], q[98], max(latencies)
    print(f"  latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {worst:.1f}")
    for err in errors[:5]:
        print("  error:", err)


if __name__ == "__main__":
    main()
