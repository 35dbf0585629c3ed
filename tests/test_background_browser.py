"""The one-machine background jobs in a real headless Chromium: the served app (gunicorn,
Dash's DiskcacheManager, each job a spawned process) draws a big run's patching and
timelines part by part under a progress bar, answers clicks meanwhile, and stops on Cancel
and goes on with Resume."""

from __future__ import annotations

import os
import time

import diskcache
import pytest

from tests.browser import ARTIFACTS, CHROMIUM_FLAGS, app_command, chromium_path, free_port, serve
from tests.test_celery_worker import STEPS, write_big_run

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("background-root")
    write_big_run(root)
    jobs = tmp_path_factory.mktemp("jobs")
    hold = tmp_path_factory.mktemp("hold") / "parts"
    hold.write_text("1")  # a job computes one part, then waits until the test says
    port = free_port()
    env = {
        **os.environ,
        "INTERP_SYNC_WORK": "0",  # every timeline and patching in the background
        "INTERP_JOB_CACHE": str(jobs),
        "INTERP_JOB_PART_STEPS": "1",
        "INTERP_JOB_HOLD": str(hold),
    }
    with serve(app_command(root, port), port, timeout=180, env=env) as url:
        try:
            yield url, jobs, hold
        finally:  # a job still held would outlive the server
            hold.unlink(missing_ok=True)
            stop_jobs()


@pytest.fixture(autouse=True)
def no_job_left():
    """A job a test leaves held (passing or not) is stopped before the next test counts the
    job processes."""
    yield
    stop_jobs()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield b
        b.close()


TITLE = "() => (document.querySelector('#attention-pattern .gtitle') || {}).textContent || ''"
PATCH_TITLE = "() => (document.querySelector('#patching .gtitle') || {}).textContent || ''"
PARTS = 10  # patching at one step of the run: 5 layer boundaries x 2 blocks of positions


def stored(jobs) -> tuple[int, int]:
    """(patching entries, timeline steps) in the one-machine result cache."""
    with diskcache.Cache(str(jobs)) as cache:
        keys = [str(k) for k in cache.iterkeys()]
    return sum(k.startswith("patching:") for k in keys), sum(
        k.startswith("timeline:") for k in keys
    )


COLUMNS = (
    "() => { const g = document.querySelector('#head-timeline .js-plotly-plot');"
    " const d = g && g.data && g.data[0]; return d && d.x ? d.x.length : 0; }"
)


def columns(page) -> int:
    """Checkpoints drawn in the head timeline (0: its "computing" message)."""
    return page.evaluate(COLUMNS)


def wait_columns(page, n: int, jobs, timeout: float = 120_000) -> None:
    """Wait until the head timeline draws ``n`` checkpoints; say what the page shows if not."""
    try:
        page.wait_for_function(f"() => ({COLUMNS})() === {n}", timeout=timeout)
    except Exception:
        status = page.evaluate("() => document.querySelector('#job-status').textContent")
        title = page.evaluate(
            "() => (document.querySelector('#head-timeline .gtitle') || {}).textContent"
        )
        print(f"columns {columns(page)}, stored {stored(jobs)}; {status}; {title}")
        raise


def wait_title(page, title: str, text: str, present: bool = True, timeout: float = 180_000):
    op = "" if present else "!"
    page.wait_for_function(f"() => {op}({title})().includes({text!r})", timeout=timeout)


def job_processes() -> list[int]:
    """The spawned job processes this test's server started (its descendants; a process
    that ends while they are listed is left out)."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except psutil.Error:  # ended meanwhile (NoSuchProcess, ZombieProcess)
            pass
    return found


def stop_jobs() -> None:
    """Kill the job processes left (held ones) and wait until they are gone."""
    import psutil

    killed = []
    for pid in job_processes():
        try:
            proc = psutil.Process(pid)
            proc.kill()
            killed.append(proc)
        except psutil.Error:
            pass
    psutil.wait_procs(killed, timeout=10)


def show(page, selector: str) -> None:
    """Scroll a panel into view: the page draws only the panels on screen. Its first
    drawing can re-mount it while Playwright scrolls ("not attached to the DOM"): then
    scroll again (as tests/test_browser.py's ``wait_title``)."""
    for attempt in range(5):
        try:
            page.locator(selector).scroll_into_view_if_needed(timeout=20_000)
            return
        except Exception as err:  # playwright's Error; anything else goes on up
            if "not attached" not in str(err) or attempt == 4:
                raise
            page.wait_for_timeout(500)


def head_click(page) -> float:
    """Seconds from a click on the head grid until the attention panel names another head."""
    show(page, "#head-grid")
    before = page.evaluate(TITLE)
    box = page.locator("#head-grid .nsewdrag").first.bounding_box()
    started = time.monotonic()
    page.mouse.click(box["x"] + 0.1 * box["width"], box["y"] + 0.1 * box["height"])
    page.wait_for_function(f"() => ({TITLE})() !== {before!r}", timeout=60_000)
    return time.monotonic() - started


def test_big_work_arrives_in_parts_while_the_page_answers(browser, served):
    """The job is held by the test (``INTERP_JOB_HOLD``) after a known number of parts, so
    "the page answers while the job runs" is checked while it provably runs, and every
    partial result is a known one: no timing races."""
    url, jobs, hold = served
    page = browser.new_context(viewport={"width": 1500, "height": 1700}).new_page()
    page.goto(url + "/?run=mid")
    page.wait_for_selector("#token-chips button", timeout=180_000)
    page.wait_for_selector(
        "text=Computing activation patching at this step and the timelines over training",
        timeout=60_000,
    )
    # held after its first part: the patching panel is drawn from it, the rest blank
    show(page, "#patching")
    wait_title(page, PATCH_TITLE, f"(computing: 1 of {PARTS} parts)")
    assert page.locator("#job-bar").is_visible()
    assert page.locator("#job-cancel").is_enabled()
    assert stored(jobs) == (2, 0)  # the scalars and one part; no timeline step
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "background-partial.png"), full_page=True)

    # the page answers while the job runs (held): another head, the same job goes on
    answered = head_click(page)
    assert stored(jobs) == (2, 0)
    print(f"head click answered in {answered:.2f} s during the job")

    # let it go on: the patching completes, then two timeline steps are drawn
    hold.write_text(str(PARTS + 2))
    show(page, "#patching")
    wait_title(page, PATCH_TITLE, "(computing:", present=False)
    wait_columns(page, 2, jobs)
    assert stored(jobs) == (PARTS + 1, 2)

    # another query position is another job (held after one part); the click is answered
    hold.write_text("1")
    started = time.monotonic()
    page.locator("#token-chips button").nth(3).click()
    wait_title(page, TITLE, "query row 3", timeout=60_000)
    print(f"query-row click answered in {time.monotonic() - started:.2f} s")
    show(page, "#patching")
    wait_title(page, PATCH_TITLE, f"(computing: 1 of {PARTS} parts)")
    assert stored(jobs) == (PARTS + 3, 2)  # its scalars and first part (held: stopped by
    # ``no_job_left``; the next test starts its own)


def test_cancel_stops_the_job_and_resume_finishes_it(browser, served):
    url, jobs, hold = served
    hold.write_text("1")
    before = stored(jobs)  # what the module's other test left in the shared cache
    page = browser.new_context(viewport={"width": 1500, "height": 1700}).new_page()
    page.goto(url + "/?run=mid&pos=5")
    page.wait_for_selector("#token-chips button", timeout=180_000)
    show(page, "#patching")
    wait_title(page, PATCH_TITLE, f"(computing: 1 of {PARTS} parts)")
    # Cancel stops it: let go of the hold, and nothing more is computed
    page.locator("#job-cancel").click()
    page.wait_for_selector("text=The background job stopped after", timeout=60_000)
    after_cancel = stored(jobs)
    assert job_processes() == []
    hold.unlink()
    time.sleep(3)
    assert stored(jobs) == after_cancel
    assert page.locator("#job-resume").is_visible()

    # Resume computes the rest: the patching of this position and every checkpoint
    page.locator("#job-resume").click()
    page.wait_for_selector("#job-status >> text=Computed", timeout=300_000)
    wait_columns(page, len(STEPS), jobs)
    show(page, "#patching")
    wait_title(page, PATCH_TITLE, "(computing:", present=False)
    assert stored(jobs)[0] == before[0] + PARTS + 1  # this query's scalars and every part
    page.screenshot(path=str(ARTIFACTS / "background-done.png"), full_page=True)
