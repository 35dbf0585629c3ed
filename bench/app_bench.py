"""Server time and payload of the explorer's callbacks, through Dash's own endpoint.

    uv run python bench/app_bench.py [--root checkpoints]

Trains the default run into a temporary root when --root has no 'fruits' run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_root  # noqa: E402

from interp_app.server.app import create_app  # noqa: E402
from tests.browser import app_command, free_port  # noqa: E402
from tests.dash_client import DashClient  # noqa: E402


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    root, tmp = default_root(__doc__)

    client = DashClient(create_app(root))
    sel = client.select(None, search="")["selection"]["data"]
    rendered = client.render(sel)["rendered"]["data"]
    heads = ["L0H0", "L0H1", "L1H0", "L1H1"]

    def head_click(i=[0]):  # noqa: B006  (a counter across calls)
        name = heads[i[0] % 4]
        i[0] += 1
        client.select("grid-click.data", {"head": name, "shift": False}, sel, rendered=rendered)

    head_click()
    times = timed(head_click, 200)
    print("head click (one request: selection and the panels it changes), 200 clicks")
    print(f"  median {statistics.median(times):6.1f} ms   p90 {sorted(times)[179]:6.1f} ms")
    print(f"  response {client.last_bytes / 1024:6.1f} KB")

    print("new prompt (uncached: capture, 113-step timelines, all panels), by prompt length")
    words = ["i", "like", "the", "spicy", "taste", "of", "chili", "so", "i", "like", "the", "sour"]
    for length in (1, 3, 6, 9, 12):
        costs = []
        for rep in range(5):
            prompt = " ".join(words[:length]) + (" so" * 0)
            s = {**sel, "prompt": prompt + ("" if rep == 0 else " " + "i" * 0), "pos": length - 1}
            client.app.server.config["ANALYZER"].forget_results()
            t0 = time.perf_counter()
            client.render(s)
            costs.append((time.perf_counter() - t0) * 1000)
        print(f"  {length:2d} tokens: median {statistics.median(costs):6.1f} ms")
    from training.model.gpt import capture

    print(f"  compiled capture shapes: {capture._cache_size()} (one means no recompilation)")

    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        app_command(root, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        up = time.perf_counter() - t0
        ready = page_ready(f"http://127.0.0.1:{port}/")
        print(f"server start {up:.2f} s; page ready (all panels drawn) {ready:.2f} s after that")
    finally:
        proc.terminate()
        proc.wait()
    tmp.cleanup()


def page_ready(url: str) -> float:
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_FLAGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = b.new_page()
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_function(
            "document.querySelector('#logit-lens .gtitle') && "
            "document.querySelector('#attention-pattern .gtitle')",
            timeout=60_000,
        )
        ready = time.perf_counter() - t0
        b.close()
    return ready


if __name__ == "__main__":
    main()
