"""Time from a user's action to every panel painted, in headless Chromium (Playwright).

    uv run python bench/paint_bench.py [--root checkpoints] [--url http://127.0.0.1:8050]
                                       [--repeat 20]

Serves the app on the default run (trained into a temporary root if missing) unless --url
names a running one (so two versions of the app can be compared side by side). An action
is done when the page shows its result, no callback request is in flight, and the browser
has painted twice since: what the user sees, not the server's share.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from page_checks import multiples_say, settled, title_has  # noqa: E402

from tests.browser import CHROMIUM_FLAGS, app_command, chromium_path, free_port, serve  # noqa: E402

# Counts the Dash callback requests in flight (every panel update goes through one).
TRACK_REQUESTS = """
window.__pending = 0;
const realFetch = window.fetch;
window.fetch = (...args) => {
  const url = String(args[0] && args[0].url ? args[0].url : args[0]);
  if (!url.includes('_dash-update-component')) return realFetch(...args);
  window.__pending += 1;
  return realFetch(...args).finally(() => { window.__pending -= 1; });
};
"""


def click_cell(page, panel: str, col_frac: float, row_frac: float) -> None:
    """Point at a cell, then click it: Plotly's click reports its last hover point, updated
    at most every 50 ms, so a click at once after moving selects the cell before (the
    pointer's 80 ms over the cell count in the figure; a user's pointer arrives first too)."""
    box = page.locator(f"#{panel} .nsewdrag").first.bounding_box()
    x, y = box["x"] + col_frac * box["width"], box["y"] + row_frac * box["height"]
    page.mouse.move(x, y)
    page.wait_for_timeout(80)
    page.mouse.click(x, y)


def timed(action, n: int) -> list[float | None]:
    """Milliseconds per action; None for one that never settled (it is reported, not timed)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    out: list[float | None] = []
    for i in range(n):
        t0 = time.perf_counter()
        try:
            action(i)
        except PlaywrightTimeout:
            out.append(None)
            continue
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(what: str, measured: list[float | None]) -> None:
    times = sorted(t for t in measured if t is not None)
    lost = len(measured) - len(times)
    if not times:
        print(f"{what:<44} never settled ({lost} of {lost})")
        return
    p90 = times[int(0.9 * (len(times) - 1))]
    note = f"   ({lost} of {len(measured)} never settled)" if lost else ""
    print(f"{what:<44} median {statistics.median(times):7.1f} ms   p90 {p90:7.1f} ms{note}")


def measure(url: str, repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(TRACK_REQUESTS)
        t0 = time.perf_counter()
        page.goto(url + "/?run=fruits&head=L1H0")
        settled(page, title_has("head-grid", "selected L1H0"))
        print(f"{'first page, painted':<44} {1000 * (time.perf_counter() - t0):7.1f} ms")
        heads = [("L0H1", 0.75, 0.25), ("L1H0", 0.25, 0.75)]

        def head_click(i: int) -> None:
            name, col, row = heads[i % 2]
            click_cell(page, "head-grid", col, row)
            settled(
                page,
                " && ".join([*(title_has(p, name) for p in PANELS_WITH_HEAD), multiples_say(name)]),
            )

        report("head click, every panel on screen painted", timed(head_click, repeat))

        def step_click(i: int) -> None:
            frac = 0.15 + 0.7 * ((i * 7) % 10) / 10
            before = page.locator("#step-label").text_content()
            rail = page.locator("#step-slider .dash-slider-root").bounding_box()
            page.mouse.click(rail["x"] + frac * rail["width"], rail["y"] + rail["height"] / 2)
            settled(page, f"document.querySelector('#step-label').textContent !== {before!r}")

        report("step change (slider click), painted", timed(step_click, repeat))

        def new_prompt(i: int) -> None:
            text = PROMPTS[i % len(PROMPTS)]
            box = page.locator("#prompt-input")
            box.fill(text)
            box.press("Enter")
            last = text.split()[-1]
            settled(page, title_has("prediction", f":{last} "))

        report("new prompt, every panel painted", timed(new_prompt, repeat))
        browser.close()


PANELS_WITH_HEAD = ("head-grid", "attention-pattern")  # those on screen
PROMPTS = [
    "i like sweet so i like",
    "apple is sweet",
    "lemon tastes sour",
    "chili is spicy and i like",
    "i like juicy so i like",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=None)
    ap.add_argument("--url", default=None, help="a running app (else one is served)")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    with ExitStack() as stack:
        url = args.url
        if url is None:
            sys.argv = [sys.argv[0], *(["--root", args.root] if args.root else [])]
            from common import default_root

            root, tmp = default_root(__doc__)
            stack.callback(tmp.cleanup)
            port = free_port()
            log = Path(tempfile.mkdtemp()) / "app.log"
            url = stack.enter_context(serve(app_command(root, port), port, 180, log=log))
        measure(url.rstrip("/"), args.repeat)


if __name__ == "__main__":
    main()
