"""Big runs' background jobs: a timeline in headless Chromium, and patching in process.

Serves the app (gunicorn, Dash's DiskcacheManager: each job a spawned process) over a
root, opens a run with a long prompt and prints: the first page painted, the first partial
timeline, the whole timeline, and head clicks answered while the job computes against
the same clicks once it is done (alternated figures on a loaded machine: read with uptime).

    python bench/background_bench.py --root /tmp/shot/root --run gpt2-small
    python bench/background_bench.py --patching gpt2     # or pythia: the shapes of
                                                          # bench/scale_runs.py, 128 tokens

``--patching`` prints what activation patching at one step costs in process, part by part
(``causal.patch_parts``), on random weights of the shape: what a job computes.
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


def patching_cost(name: str, tokens: int = 128) -> None:
    """Activation patching at one step of a big shape, part by part, in this process."""
    import jax
    import numpy as np
    from scale_runs import SHAPES  # noqa: I001 (bench/ is on the path: the script's folder)

    from interp_app.core import causal
    from training.model.gpt import capture, init_params

    model = SHAPES[name].model
    graphdef, state = init_params(model, seed=0)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, model.vocab_size, (1, tokens)).astype(np.int32)
    corrupt = clean.copy()
    corrupt[0, : tokens // 2] = rng.integers(0, model.vocab_size, tokens // 2)
    pos, target, answer = tokens - 1, 5, 6
    started = time.perf_counter()
    caps = [jax.device_get(capture(graphdef, state, t)) for t in (clean, corrupt)]
    base = causal.patching_base(*caps, pos, target, answer)
    seconds = {"captures": time.perf_counter() - started}
    parts = causal.patch_parts(model.n_layers, tokens)
    each = []
    for i, part in enumerate(parts):
        tick = time.perf_counter()
        jax.block_until_ready(
            causal.patching_part(graphdef, state, base, *part, pos, target, answer)
        )
        each.append(time.perf_counter() - tick)
        print(f"  part {i + 1}/{len(parts)} {part}: {each[-1]:.1f} s", flush=True)
    print(f"load average: {os.getloadavg()[0]:.1f}")
    print(f"{SHAPES[name].title}, {tokens} tokens: {len(parts)} parts")
    print(f"  two captures: {seconds['captures']:.1f} s; first part (compiling): {each[0]:.1f} s")
    print(f"  parts: {sum(each):.0f} s in all, {min(each[1:]):.1f} to {max(each):.1f} s each")


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--root")
    args.add_argument("--run")
    args.add_argument("--clicks", type=int, default=3)
    args.add_argument("--patching", choices=("pythia", "gpt2"))
    opts = args.parse_args()
    if opts.patching:
        patching_cost(opts.patching)
        return
    if not (opts.root and opts.run):
        args.error("--root and --run (or --patching)")
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
        page.wait_for_selector("text=Computing", timeout=120_000)
        page.wait_for_function(f"() => ({COLUMNS})() > 0", timeout=3_600_000, polling=200)
        first = time.monotonic() - started
        steps = page.evaluate("() => document.querySelector('#job-bar').textContent")
        during = [head_click(page, 0.15 + 0.1 * i) for i in range(opts.clicks)]
        left = page.evaluate("() => document.querySelector('#job-bar').textContent")
        page.wait_for_selector("#job-status >> text=Computed", timeout=3_600_000)
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
