"""Issue #15's targets table, measured in headless Chromium (Playwright) on three shapes.

    uv run python bench/scale_bench.py [--fruits-root DIR] [--root DIR] [--repeat 20]
                                       [--big-repeat 10] [--columns fruits,pythia,gpt2]
                                       [--trace DIR]

Columns: the article's model (the default ``fruits`` run, trained into ``--fruits-root``
when missing), a Pythia-70m shape (6L x 8H x d512, vocab 50k, 40 checkpoints) and a
GPT-2-small shape (12L x 12H x d768, 10 checkpoints), random weights written by
``bench/scale_runs.py`` into ``--root``; prompts of 128 tokens on the big shapes.

Each column serves its own app (gunicorn, one worker, a root holding only that run) and
drives it as a user would:

- head click: a click on a head-grid cell, until every panel showing the head says so,
  no callback request is in flight and the browser painted twice; "server" is the main
  callback's time until its response headers (Flask sends a response whole: the server's
  compute and serialisation), as the browser saw it;
- step change: one checkpoint back (the slider's thumb, arrow key; the page opens at the
  last), after the previous step settled and the user looked at it for ``--look`` seconds
  (the app prefetches the neighbours meanwhile);
- new prompt: typed and entered (another text each time: nothing cached), until the main
  callback's panels are painted (the 3D views and background timelines may follow);
- response bytes: every callback response an interaction caused, summed;
- peak RSS: the worker's VmHWM at the end.

A figure printed "n=9" says how many actions the median is of (the GPT-2 shape has 10
checkpoints: 9 forward steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from page_checks import PAINTED, multiples_say, settled, title_has  # noqa: E402
from scale_runs import GPT2, PYTHIA, Shape, long_prompt, write_shape  # noqa: E402

from tests.browser import CHROMIUM_FLAGS, app_command, chromium_path, free_port, serve  # noqa: E402

# Every Dash callback request: when it started, its output, server time, bytes.
TRACK = """
window.__req = []; window.__pending = 0;
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const url = String(args[0] && args[0].url ? args[0].url : args[0]);
  if (!url.includes('_dash-update-component')) return realFetch(...args);
  let output = '';
  try { output = JSON.parse(args[1].body).output; } catch (e) {}
  window.__pending += 1;
  const t0 = performance.now();
  try {
    const r = await realFetch(...args);
    const server = performance.now() - t0;
    const text = await r.clone().text();
    window.__req.push({output, server, bytes: new Blob([text]).size, status: r.status});
    return r;
  } finally { window.__pending -= 1; }
};
"""
MAIN = "selection.data"  # an output only the main callback writes
HEAD_PANELS = ("head-grid", "attention-pattern")  # on screen: drawn at once
HOVER_MS = 80  # pointer over the cell before a click (a click sooner selects the cell before)

TARGETS = {  # row -> per column (None: no target)
    "head click, painted (ms)": (200, 300, 400),
    "head click, server (ms)": (5, 50, 80),
    "step change, painted (ms)": (300, 600, 1000),
    "new prompt, first panels painted (ms)": (500, 2000, 4000),
    "response per interaction (KB)": (100, 300, 300),
    "app peak RSS, one worker (MB)": (None, 1536, 2560),
}


@dataclass
class Column:
    name: str
    title: str
    run: str
    root: Path
    prompts: list[str]
    heads: list[tuple[int, int]]
    grid: tuple[int, int]  # layers, heads
    figures: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def requests_since(page, mark: int) -> list[dict]:
    return page.evaluate(f"window.__req.slice({mark})")


def worker_rss_mb(master: int) -> float:
    """The largest VmHWM among the gunicorn master's children (the one worker)."""
    best = 0
    for child in psutil.Process(master).children(recursive=True):
        try:
            with open(f"/proc/{child.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM"):
                        best = max(best, int(line.split()[1]))
        except OSError:
            continue
    return best / 1024


@contextmanager
def served(root: Path, port: int, log: Path, app_dir: str | None):
    """The app on ``root`` (its code from ``app_dir`` when given), and gunicorn's pid."""
    pids: list[int] = []
    real_popen = subprocess.Popen

    def popen(*args, **kw):
        proc = real_popen(*args, **kw)
        pids.append(proc.pid)
        return proc

    subprocess.Popen = popen  # type: ignore[misc]  # serve() starts exactly one process
    try:
        env = {**os.environ, "PYTHONPATH": app_dir} if app_dir else None
        if app_dir:  # ``python -m`` puts the working folder first on the path
            os.chdir(app_dir)
        with serve(app_command(root, port), port, 900, env=env, log=log) as url:
            subprocess.Popen = real_popen  # type: ignore[misc]
            try:
                yield url, pids[0]
            finally:  # its background jobs too (code before session 9 left them running)
                left = psutil.Process(pids[0]).children(recursive=True)
        for proc in left:
            with suppress(psutil.Error):
                proc.kill()
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]


def act(page, col: Column, kind: str, do, condition: str, main_only: bool = False) -> None:
    """Do one user action and record its painted time, server time and response bytes."""
    mark = page.evaluate("window.__req.length")
    t = time.perf_counter()
    do()
    if main_only:
        page.wait_for_function(
            f"() => ({condition}) && window.__req.slice({mark})"
            f".some(r => String(r.output).includes({MAIN!r}))",
            timeout=120_000,
        )
        page.evaluate(PAINTED)
    else:
        settled(page, condition, timeout=120_000)
    painted = 1000 * (time.perf_counter() - t)
    if main_only:  # the rest may still be in flight: count its bytes once it lands
        page.wait_for_function("() => window.__pending === 0", timeout=120_000)
    reqs = requests_since(page, mark)
    main = [r["server"] for r in reqs if MAIN in str(r["output"])]
    col.figures.setdefault(f"{kind}, painted (ms)", []).append(painted)
    col.figures.setdefault(f"{kind}, server (ms)", []).append(max(main) if main else 0.0)
    kb = sum(r["bytes"] for r in reqs) / 1024
    col.figures.setdefault(f"{kind}, response (KB)", []).append(kb)


def measure(page, col: Column, url: str, repeat: int, look: float) -> None:
    n_layers, n_heads = col.grid
    t0 = time.perf_counter()
    first = col.heads[0]
    name0 = f"L{first[0]}H{first[1]}"
    page.goto(f"{url}/?run={col.run}&head={name0}", timeout=900_000)
    settled(page, title_has("head-grid", f"selected {name0}"), timeout=900_000)
    col.figures["first page, painted (ms)"] = [1000 * (time.perf_counter() - t0)]

    def action(kind: str, do, condition: str, main_only: bool = False) -> None:
        act(page, col, kind, do, condition, main_only)

    box = page.locator("#head-grid .nsewdrag").first
    for i in range(repeat):
        layer, h = col.heads[(i + 1) % len(col.heads)]
        name = f"L{layer}H{h}"

        box.scroll_into_view_if_needed()  # a long prompt's notices push it down
        b = box.bounding_box()
        x = b["x"] + (h + 0.5) / n_heads * b["width"]
        y = b["y"] + (layer + 0.5) / n_layers * b["height"]
        page.mouse.move(x, y)  # as a user's pointer arrives before the click: Plotly's click
        page.wait_for_timeout(HOVER_MS)  # reports its last hover point (at most every 50 ms)

        def click(x=x, y=y) -> None:
            page.mouse.click(x, y)

        action(
            "head click",
            click,
            " && ".join([*(title_has(p, name) for p in HEAD_PANELS), multiples_say(name)]),
        )

    n_steps = int(page.evaluate("document.querySelectorAll('#step-slider [role=slider]').length"))
    steps_max = page.evaluate(
        "parseInt(document.querySelector('#step-slider [role=slider]')"
        ".getAttribute('aria-valuemax'))"
    )
    moves = min(repeat, int(steps_max)) if n_steps else 0
    for _ in range(moves):
        before = page.locator("#step-label").text_content()

        def step() -> None:
            page.locator("#step-slider [role=slider]").first.focus()
            page.keyboard.press("ArrowLeft")

        action(
            "step change",
            step,
            f"document.querySelector('#step-label').textContent !== {before!r}",
        )
        page.wait_for_timeout(1000 * look)  # the user looks at it: the app prefetches
    col.counts["step change"] = moves

    for i in range(repeat):
        text = col.prompts[i % len(col.prompts)]

        def enter(text=text) -> None:
            box = page.locator("#prompt-input")
            box.fill(text)
            box.press("Enter")

        action("new prompt", enter, "true", main_only=True)
    col.counts["head click"] = col.counts["new prompt"] = repeat


def fruits_column(root: Path) -> Column:
    from common import default_root  # noqa: F401  (configures XLA, trains when missing)

    if not (root / "fruits").exists():
        sys.argv = [sys.argv[0], "--root", str(root)]
        default_root(__doc__)
    words = ["i like sweet so i like", "apple is sweet", "lemon tastes sour"]
    words += ["chili is spicy and i like", "i like juicy so i like"]
    return Column("fruits", "article's model", "fruits", root, words, [(0, 1), (1, 0)], (2, 2))


def big_column(name: str, shape: Shape, root: Path) -> Column:
    own = root / "roots" / name  # a root of its own: the app lists (and warms) only this run
    write_shape(own, shape)
    m = shape.model
    heads = [(0, 1), (m.n_layers - 1, m.n_heads - 2), (m.n_layers // 2, m.n_heads // 2), (1, 0)]
    prompts = [long_prompt(offset=i + 2) for i in range(25)]
    return Column(name, shape.title, shape.run, own, prompts, heads, (m.n_layers, m.n_heads))


def in_process(col: Column, app_dir: str | None) -> float:
    """``scale_server.py``: the main callback's time for a head click, nothing else running."""
    here = Path(__file__).resolve().parent
    heads = ",".join(f"L{layer}H{h}" for layer, h in col.heads)
    argv = [sys.executable, str(here / "scale_server.py"), str(col.root), col.run, heads]
    argv += ["--app-dir", app_dir or str(here.parent)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=app_dir or here.parent)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:  # (a daemon thread inside XLA at exit may abort the process after it printed)
        print(out.stderr[-2000:], file=sys.stderr)
        return float("nan")
    return float(json.loads(lines[-1])["ms"])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(columns: list[Column]) -> str:
    """The issue's targets table, measured (target in brackets; ✗ where it does not hold)."""
    index = {"fruits": 0, "pythia": 1, "gpt2": 2}
    head = "| case | " + " | ".join(c.title for c in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]

    def cell(col: Column, row: str, value: float, unit_fmt: str) -> str:
        target = TARGETS[row][index[col.name]]
        mark = "" if target is None else (" ✓" if value <= target else " ✗")
        limit = "" if target is None else f" (≤ {target:g})"
        return f"{value:{unit_fmt}}{limit}{mark}"

    rows = [
        ("head click, painted (ms)", "head click, painted (ms)", ".0f"),
        ("head click, server (ms)", "head click, server in process (ms)", ".1f"),
        ("step change, painted (ms)", "step change, painted (ms)", ".0f"),
        ("new prompt, first panels painted (ms)", "new prompt, painted (ms)", ".0f"),
    ]
    for label, key, fmt in rows:
        cells = []
        for c in columns:
            n = len(c.figures.get(key, []))
            cells.append(f"{cell(c, label, median(c.figures.get(key, [])), fmt)} n={n}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for c in columns:
        worst = max(
            median(c.figures.get(f"{k}, response (KB)", [])) for k in ("head click", "step change")
        )
        prompt = median(c.figures.get("new prompt, response (KB)", []))
        value = max(worst, prompt)
        cells.append(
            cell(c, "response per interaction (KB)", value, ".0f")
            + f" [head {median(c.figures.get('head click, response (KB)', [])):.0f},"
            f" step {median(c.figures.get('step change, response (KB)', [])):.0f},"
            f" prompt {prompt:.0f}]"
        )
    lines.append("| response per interaction (KB) | " + " | ".join(cells) + " |")
    cells = [cell(c, "app peak RSS, one worker (MB)", c.figures["rss"][0], ".0f") for c in columns]
    lines.append("| app peak RSS, one worker (MB) | " + " | ".join(cells) + " |")
    extra = [
        "| first page, painted (ms) | "
        + " | ".join(f"{c.figures['first page, painted (ms)'][0]:.0f}" for c in columns)
        + " |",
        "| head click, main request as the browser saw it (ms) | "
        + " | ".join(f"{median(c.figures.get('head click, server (ms)', [])):.0f}" for c in columns)
        + " |",
        "| server: step change / new prompt (ms) | "
        + " | ".join(
            f"{median(c.figures.get('step change, server (ms)', [])):.0f} / "
            f"{median(c.figures.get('new prompt, server (ms)', [])):.0f}"
            for c in columns
        )
        + " |",
    ]
    return "\n".join(lines + extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fruits-root", default="/tmp/benchroot")
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "scale-bench"))

    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--big-repeat", type=int, default=None, help="repeat on the big shapes")
    ap.add_argument("--columns", default="fruits,pythia,gpt2")
    ap.add_argument("--trace", default=None, help="a folder for Chrome traces of head clicks")
    ap.add_argument("--look", type=float, default=3.0, help="seconds on a step (big shapes)")
    ap.add_argument("--app-dir", default=None, help="serve the app's code from this copy")
    ap.add_argument("--json", default=None, help="write the raw figures here")
    args = ap.parse_args()
    root = Path(args.root)
    chosen = args.columns.split(",")
    from playwright.sync_api import sync_playwright

    columns = []
    for name in chosen:
        if name == "fruits":
            col = fruits_column(Path(args.fruits_root))
        else:
            col = big_column(name, {"pythia": PYTHIA, "gpt2": GPT2}[name], root)
        repeat = args.repeat if name == "fruits" else (args.big_repeat or args.repeat)
        port = free_port()
        log = Path(tempfile.mkdtemp()) / "app.log"
        with served(col.root, port, log, args.app_dir) as (url, master), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(TRACK)
            if args.trace:
                browser.start_tracing(page=page, path=f"{args.trace}/{name}.json")
            measure(page, col, url, repeat, args.look if name != "fruits" else 1.0)
            if args.trace:
                browser.stop_tracing()
            col.figures["rss"] = [worker_rss_mb(master)]
            browser.close()
        col.figures["head click, server in process (ms)"] = [in_process(col, args.app_dir)]
        columns.append(col)
        print(f"{name}: done", json.dumps({k: round(median(v), 1) for k, v in col.figures.items()}))
    print(table(columns))
    if args.json:
        Path(args.json).write_text(json.dumps({c.name: c.figures for c in columns}))


if __name__ == "__main__":
    main()
