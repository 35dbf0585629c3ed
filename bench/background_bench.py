"""A big run's all-checkpoint timeline as a background job, in headless Chromium.

Serves the app (gunicorn, Dash's DiskcacheManager: each job a spawned process) over a
root, opens a run with a long prompt and prints: the first page painted, the first partial
timeline, the whole timeline, and head clicks answered while the job computes against
the same clicks once it is done (alternated figures on a loaded machine: read with uptime).

    python bench/background_bench.py --root /tmp/shot/root --run gpt2-small
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import CHROMIUM_FLAGS, app_command, chromium_path, free_port, serve  # noqa: E402

SENTENCE = (
    "When Mary and John went to the store, John gave a drink to Mary because she was "
    "thirsty after the long walk through the park in the afternoon sun. "
)
LONG_PROMPT = (SENTENCE * 8).strip()  # past 128 tokens: the app analyses the last 128
COLUMNS = (
    "() => { const g = document.querySelector('#head-timeline .js-plotly-plot');"
    " const d = g && g.data && g.data[0]; return d && d.x ? d.x.length : 0; }"
)
TITLE = "() => (document.querySelector('#attention-pattern .gtitle') || {}).textContent || ''"


def head_click(page, frac: float) -> float:
    """Seconds from a click on the head grid until the attention panel names another head."""
    before = page.evaluate(TITLE)
    area = page.locator("#head-grid .nsewdrag").first
    box = area.bounding_box()
    started = time.monotonic()
    page.mouse.click(box["x"] + frac * box["width"], box["y"] + frac * box["height"])
    page.wait_for_function(f"() => ({TITLE})() !== {before!r}", timeout=120_000)
    return time.monotonic() - started


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--root", required=True)
    args.add_argument("--run", required=True)
    args.add_argument("--clicks", type=int, default=3)
    opts = args.parse_args()
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "INTERP_JOB_CACHE": tempfile.mkdtemp(prefix="bench-jobs-")}
    log = Path(tempfile.mkdtemp()) / "server.log"
    command = app_command(Path(opts.root), port)
    with serve(command, port, timeout=600, env=env, log=log) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1700})
        started = time.monotonic()
        page.goto(f"{url}/?run={opts.run}&prompt={quote(LONG_PROMPT)}")
        page.wait_for_selector("#head-grid .nsewdrag", timeout=600_000)
        page.wait_for_function(f"() => ({TITLE})().includes('Attention pattern')")
        painted = time.monotonic() - started
        page.wait_for_selector("text=Computing the timelines", timeout=120_000)
        page.wait_for_function(f"() => ({COLUMNS})() > 0", timeout=3_600_000, polling=200)
        first = time.monotonic() - started
        steps = page.evaluate("() => document.querySelector('#job-bar').textContent")
        during = [head_click(page, 0.15 + 0.1 * i) for i in range(opts.clicks)]
        left = page.evaluate("() => document.querySelector('#job-bar').textContent")
        page.wait_for_selector("text=Timelines computed", timeout=3_600_000)
        whole = time.monotonic() - started
        after = [head_click(page, 0.15 + 0.1 * i) for i in range(opts.clicks)]
        print(f"load average: {os.getloadavg()[0]:.1f}")
        print(f"first page painted: {painted:.1f} s")
        print(f"first partial timeline: {first:.1f} s after opening ({steps})")
        print(f"whole timeline: {whole:.1f} s after opening")
        print(page.locator("#job-status").text_content())
        print(f"head click while computing (job at {left} after them): median ", end="")
        print(f"{statistics.median(during):.2f} s {during}")
        print(f"head click afterwards: median {statistics.median(after):.2f} s {after}")
        browser.close()


if __name__ == "__main__":
    main()
