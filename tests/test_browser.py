"""End to end in a real headless Chromium: click, deep link, back button, bad prompt."""

import re
from urllib.parse import urlparse

import pytest

from tests.browser import (
    ARTIFACTS,
    CHROMIUM_FLAGS,
    app_command,
    chromium_path,
    free_port,
    serve,
    train_command,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(default_root):
    root, _ = default_root
    port = free_port()
    with serve(app_command(root, port), port) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1700})
    pg = context.new_page()
    yield pg
    context.close()


def title(page, panel: str) -> str:
    return page.locator(f"#{panel} .gtitle").first.text_content() or ""


def wait_title(page, panel: str, text: str, timeout: float = 20_000) -> None:
    """Look at the panel (a figure off screen is drawn once scrolled to) until its title
    says ``text``. Its first drawing can re-mount it while Playwright scrolls ("not
    attached to the DOM"): then it scrolls again."""
    for attempt in range(5):
        try:
            page.locator(f"#{panel}").scroll_into_view_if_needed(timeout=timeout)
            break
        except Exception as err:  # playwright's Error; anything else goes on up
            if "not attached" not in str(err) or attempt == 4:
                raise
            page.wait_for_timeout(500)
    page.wait_for_function(
        "([id, t]) => { const e = document.querySelector('#' + id + ' .gtitle');"
        " return e && e.textContent.includes(t); }",
        arg=[panel, text],
        timeout=timeout,
    )


def wait_text(page, element: str, text: str, timeout: float = 20_000) -> None:
    """Wait until the element with id ``element`` says ``text``."""
    page.wait_for_function(
        "([id, t]) => { const e = document.getElementById(id);"
        " return e && e.textContent.includes(t); }",
        arg=[element, text],
        timeout=timeout,
    )


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#head-grid .nsewdrag", timeout=30_000)
    wait_title(page, "attention-pattern", "Attention pattern of")


def click_cell(
    page, panel: str, col_frac: float, row_frac: float, crossing: tuple | None = None
) -> None:
    """Click a point of a figure's first plot area; ``crossing``: first move the pointer
    there and press at once (Plotly's click point is then still the crossed one's)."""
    area = page.locator(f"#{panel} .nsewdrag").first
    area.scroll_into_view_if_needed()
    box = area.bounding_box()
    if crossing is not None:
        page.mouse.move(
            box["x"] + crossing[0] * box["width"], box["y"] + crossing[1] * box["height"]
        )
        page.wait_for_timeout(20)
    page.mouse.click(box["x"] + col_frac * box["width"], box["y"] + row_frac * box["height"])


def test_click_a_head_and_every_panel_follows(page, app_url):
    open_page(page, app_url)
    assert "head=L1H0" in page.url
    for panel in ("attention-pattern", "token-attributions", "residual-contributions"):
        wait_title(page, panel, "L1H0")  # scrolled to: a figure off screen is drawn then
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "default-view.png"), full_page=True)

    far = page.evaluate(
        "document.getElementById('residual-contributions').getBoundingClientRect().top"
        " > 2 * innerHeight"
    )
    page.wait_for_timeout(700)  # the page tells the server what is off screen
    click_cell(page, "head-grid", 0.75, 0.25)  # layer 0 (top row), head 1 (right column)
    wait_title(page, "attention-pattern", "L0H1")
    assert "head=L0H1" in page.url
    assert far  # the residual bars are two screens down: left as they were (no bytes, no
    page.wait_for_timeout(500)  # drawing) until scrolled to
    assert "selected L1H0" in title(page, "residual-contributions")
    wait_title(page, "token-attributions", "L0H1")
    wait_title(page, "residual-contributions", "selected L0H1")
    wait_text(page, "multiples-caption", "selected L0H1")
    frame = page.locator("#multiples-frame").bounding_box()  # over the second multiple
    cell = page.locator("#head-multiples .nsewdrag").nth(1).bounding_box()
    assert (
        frame and cell and abs(frame["x"] + frame["width"] / 2 - cell["x"] - cell["width"] / 2) < 4
    )
    label = page.locator("#multiples-labels span", has_text="L0H1").bounding_box()
    assert label and abs(label["x"] + label["width"] / 2 - cell["x"] - cell["width"] / 2) < 4
    assert cell["y"] - 20 < label["y"] + label["height"] <= cell["y"] + 1  # just above it
    inside = (label["y"], cell["y"] + cell["height"])  # the frame holds the name and the cell
    assert frame["y"] < inside[0] and inside[1] < frame["y"] + frame["height"]
    page.screenshot(path=str(ARTIFACTS / "after-head-click.png"), full_page=True)

    page.go_back()
    wait_title(page, "attention-pattern", "L1H0")
    assert "head=L1H0" in page.url


def test_a_click_selects_the_cell_pressed_and_survives_a_listing_that_comes_at_once(page, app_url):
    """Plotly names a click's point from its last hover (recomputed at most every 50 ms):
    the pointer crossing one cell and pressing the next at once selected the one crossed
    (12 of 12 before the page read the press's position). And a listing found by the live
    poll just after a click waits until the click is answered: a newer request of the main
    callback makes Dash drop the answer of the one in flight, and the click with it."""
    page.add_init_script(  # the order of the page's requests and their answers
        "window.__asked = []; const f = window.fetch; window.fetch = async (...a) => {"
        " let c = ''; try { c = JSON.parse(a[1].body).changedPropIds.join(); } catch (e) {}"
        " window.__asked.push(c); const r = await f(...a);"
        " window.__asked.push('answered ' + c); return r; };"
    )
    open_page(page, app_url)
    page.wait_for_timeout(700)  # the page tells the server what is off screen
    area = page.locator("#head-grid .nsewdrag").first
    box = area.bounding_box()
    assert box

    def at(col: float, row: float) -> tuple[float, float]:
        return box["x"] + col * box["width"], box["y"] + row * box["height"]

    for crossed, pressed, head in [
        ((0.25, 0.75), (0.75, 0.25), "L0H1"),
        ((0.75, 0.25), (0.25, 0.25), "L0H0"),
        ((0.25, 0.25), (0.75, 0.75), "L1H1"),
    ]:
        page.mouse.move(*at(*crossed))  # its hover is computed at once
        page.wait_for_timeout(20)
        page.evaluate("window.__asked = []")
        page.mouse.click(*at(*pressed))  # hover throttled: Plotly's point is the crossed cell
        page.evaluate("window.dash_clientside.set_props('listing-found', {data: 'new'})")
        try:
            wait_title(page, "attention-pattern", f"Attention pattern of {head} ")
        except Exception:
            print("asked", page.evaluate("window.__asked"), "title", title(page, "head-grid"))
            raise
        assert f"head={head}" in page.url
        page.wait_for_function("window.__asked.includes('listing.data')", timeout=10_000)
        asked = page.evaluate("window.__asked")
        assert asked.index("answered grid-click.data") < asked.index("listing.data"), asked
    # zoomed in on L0H0 (drag-zoom, kept across redraws): the whole plot area is that cell
    page.evaluate(
        "Plotly.relayout(document.querySelector('#head-grid .js-plotly-plot'),"
        " {'xaxis.range': [-0.5, 0.5], 'yaxis.range': [0.5, -0.5]})"
    )
    page.wait_for_timeout(400)  # drawn, and past Plotly's double-click window
    box = area.bounding_box()
    assert box
    page.mouse.move(*at(0.75, 0.75))  # where L1H1 is when the grid is not zoomed
    page.wait_for_timeout(80)
    page.evaluate("window.__asked = []")
    page.mouse.click(*at(0.75, 0.75))
    try:
        wait_title(page, "attention-pattern", "Attention pattern of L0H0 ")
    except Exception:
        ranges = "(g => [g._fullLayout.xaxis.range, g._fullLayout.yaxis.range])"
        grid = f"{ranges}(document.querySelector('#head-grid .js-plotly-plot'))"
        print("asked", page.evaluate("window.__asked"), "ranges", page.evaluate(grid))
        raise


def test_deep_link_opens_that_view(page, app_url):
    open_page(
        page, app_url + "/?run=fruits&step=500&prompt=apple+is+so+sweet&pos=2&target=so&head=L0H0"
    )
    wait_title(page, "attention-pattern", "Attention pattern of L0H0 (query row 2 framed)")
    wait_title(page, "residual-contributions", "'so' at 2")
    assert page.locator("#step-label").text_content() == "step 500"
    chips = page.locator("#token-chips button").all_text_contents()
    assert chips == ["0:apple", "1:is", "2:so", "3:sweet"]


def test_over_long_prompt_shows_a_notice(page, app_url):
    open_page(page, app_url)
    box = page.locator("#prompt-input")
    box.fill("i like spicy so i like " * 3)
    box.press("Enter")
    page.wait_for_selector("text=more than the context", timeout=20_000)
    page.wait_for_function("document.querySelectorAll('#token-chips button').length === 12")
    assert re.search(r"pos=11", page.url)


def test_chip_and_prediction_clicks(page, app_url):
    open_page(page, app_url)
    page.locator("#token-chips button", has_text="2:spicy").click()
    wait_title(page, "attention-pattern", "query row 2")
    assert "pos=2" in page.url


def test_timeline_click_moves_every_panel(page, app_url):
    open_page(page, app_url)
    page.wait_for_selector("#head-timeline .nsewdrag")
    click_cell(page, "head-timeline", 0.5, 1.5 / 4)  # row L0H1, a checkpoint mid-way
    page.wait_for_function("location.search.includes('head=L0H1')", timeout=20_000)
    step = int(re.search(r"step=(\d+)", page.url).group(1))
    assert step not in (0, 10000)
    wait_title(page, "attention-pattern", "Attention pattern of L0H1")
    wait_title(page, "head-grid", "selected L0H1")
    wait_title(page, "residual-contributions", "selected L0H1")
    wait_title(page, "head-timeline", f"selected L0H1 at step {step}")
    assert page.locator("#step-label").text_content() == f"step {step}"
    slider = page.locator("#step-slider [role=slider]").first
    assert slider.get_attribute("aria-valuenow") not in (None, "112")


def test_play_advances_the_step(page, app_url):
    open_page(page, app_url + "/?step=100")
    page.locator("#play-button").click()
    page.wait_for_function(
        "!location.search.includes('step=100&') && /step=(2|3|4)00/.test(location.search)",
        timeout=20_000,
    )
    page.locator("#play-button").click()  # pause
    page.wait_for_function(
        "document.querySelector('#play-button').textContent.includes('Play')", timeout=10_000
    )


def test_new_checkpoints_appear_without_reload(browser, small_root, tmp_path):
    import shutil
    import subprocess

    shutil.copytree(small_root[0] / "small", tmp_path / "small")
    port = free_port()
    with serve(app_command(tmp_path, port) + ["--live-ms", "1000"], port) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1600})
        pg = context.new_page()
        open_page(pg, url + "/?run=small")
        pg.evaluate("window.__marker = 'same page'")
        assert "450" not in (pg.locator("#step-slider").text_content() or "")
        trainer = subprocess.run(
            train_command(tmp_path, "small", "--resume", "--steps", "450", "--save-every", "50"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert trainer.returncode == 0, trainer.stderr
        pg.wait_for_function(
            "document.querySelector('#step-slider').textContent.includes('450')", timeout=30_000
        )
        assert pg.evaluate("window.__marker") == "same page"  # no reload happened
        context.close()


def test_ablate_from_the_ui_and_click_patching(page, app_url):
    open_page(page, app_url + "/?head=L0H1")
    page.locator("#ablate-button").click()
    page.wait_for_function("location.search.includes('ablate=L0H1')", timeout=20_000)
    wait_title(page, "prediction", "zero-ablated")
    names = page.locator("#prediction .legendtext").all_text_contents()
    assert names == ["before ablation", "ablated"]
    wait_title(page, "patching", "Activation patching")
    # heads heatmap: layer 1 (bottom row), head 0, pressed right after crossing layer 0
    click_cell(page, "patching", 0.1, 0.75, crossing=(0.1, 0.25))
    page.wait_for_function("location.search.includes('head=L1H0')", timeout=20_000)
    wait_title(page, "attention-pattern", "L1H0")
    page.keyboard.down("Shift")
    click_cell(page, "head-grid", 0.25, 0.25)  # shift-click L0H0: ablate it, keep L1H0 selected
    page.keyboard.up("Shift")
    page.wait_for_function("location.search.includes('ablate=L0H0%2CL0H1')", timeout=20_000)
    assert "head=L1H0" in page.url
    page.screenshot(path=str(ARTIFACTS / "ablation-and-patching.png"), full_page=True)


def test_page_works_offline_and_styled(browser, app_url):
    """Every request that leaves this machine is blocked: the page still renders, styled."""
    context = browser.new_context(viewport={"width": 1500, "height": 1700}, accept_downloads=True)
    leaving: list[str] = []

    def only_local(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            leaving.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    pg = context.new_page()
    open_page(pg, app_url)
    # Bootstrap's CSS (served from assets/) styles the buttons and the body font
    primary = pg.evaluate(
        "getComputedStyle(document.querySelector('.btn-primary, .btn-outline-primary')).borderColor"
    )
    assert primary == "rgb(13, 110, 253)", primary
    assert "system-ui" in pg.evaluate("getComputedStyle(document.body).fontFamily")
    assert pg.locator(".js-plotly-plot").count() >= 10  # Plotly's JS is served locally too
    # a 2D panel's PNG export from Plotly's mode bar works offline too
    pg.locator("#attention-pattern").hover()
    with pg.expect_download() as download:
        pg.locator("#attention-pattern .modebar-btn[data-title='Download plot as a PNG']").click()
    path = download.value.path()
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert leaving == []
    context.close()


def forward_traces(page, meta: str) -> list:
    return page.evaluate(
        "(meta) => (document.querySelector('#forward-3d .js-plotly-plot').data || [])"
        ".filter(t => t.meta === meta).map(t => t.customdata ? t.customdata[0] : null)",
        meta,
    )


def test_forward_view_in_3d_follows_threshold_and_head(page, app_url):
    open_page(page, app_url)
    page.locator("#forward-3d").scroll_into_view_if_needed()
    wait_title(page, "forward-3d", "attention of L1H0 strong")
    # WebGL draws in headless Chromium (software): the scene has its canvas
    assert page.locator("#forward-3d .gl-container canvas").count() >= 1
    assert len(forward_traces(page, "stack")) == 6 * 3  # prompt length x (layers + 1)
    strong = forward_traces(page, "attn-strong")
    assert strong and {h for h, _ in strong} == {"L1H0"}
    before = len(forward_traces(page, "attn")) + len(strong)

    slider = page.locator("#attention-threshold .dash-slider-root")
    slider.scroll_into_view_if_needed()
    rail = slider.bounding_box()
    page.mouse.click(rail["x"] + 0.9 * rail["width"], rail["y"] + rail["height"] / 2)
    wait_title(page, "forward-3d", "weights > 0.8")
    after = len(forward_traces(page, "attn")) + len(forward_traces(page, "attn-strong"))
    assert 0 < after < before

    click_cell(page, "head-grid", 0.75, 0.25)  # L0H1 in the head grid
    wait_title(page, "head-grid", "selected L0H1")  # the selection changed off the section
    page.locator("#forward-3d").scroll_into_view_if_needed()  # drawn once on screen
    wait_title(page, "forward-3d", "attention of L0H1 strong", timeout=40_000)
    strong = forward_traces(page, "attn-strong")
    assert strong and {h for h, _ in strong} == {"L0H1"}
    assert "L0H1" not in {h for h, _ in forward_traces(page, "attn")}
    slider.scroll_into_view_if_needed()
    rail = slider.bounding_box()
    page.mouse.click(rail["x"] + 0.2 * rail["width"], rail["y"] + rail["height"] / 2)
    wait_title(page, "forward-3d", "weights > 0.2")
    page.wait_for_timeout(1500)  # let WebGL finish drawing before the picture
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#forward-3d").locator(
        "xpath=ancestor::div[contains(@class,'card')]"
    ).first.screenshot(path=str(ARTIFACTS / "forward-3d.png"))


def test_multiples_click_head_search_and_3d_drawn_when_scrolled_to(page, app_url):
    """A multiple selects its head (through the clientside hop to its trace's name), a
    typed head name selects that head, and the 3D section sends no request at all
    until it is scrolled to, then draws the current selection."""
    page.add_init_script(  # each callback request's output and response status
        "window.__outputs = []; const f = window.fetch; window.fetch = async (...a) => {"
        " let o = ''; try { o = JSON.parse(a[1].body).output; } catch (e) {}"
        " const r = await f(...a); window.__outputs.push([String(o), r.status]); return r; };"
    )
    open_page(page, app_url)
    far = page.evaluate(
        "document.getElementById('section-3d').getBoundingClientRect().top > 2 * innerHeight"
    )
    page.evaluate("window.__outputs = []")  # what the page asks from here on
    click_cell(page, "head-multiples", 0.5, 0.5)  # the first multiple: L0H0
    wait_title(page, "attention-pattern", "L0H0")
    wait_text(page, "multiples-caption", "selected L0H0")
    search = page.locator("#head-search")
    search.fill("l1h1")
    search.press("Enter")
    wait_title(page, "attention-pattern", "L1H1")
    assert "head=L1H1" in page.url
    if far:  # the section was off screen (more than a screen away) the whole time
        # the head-grid's answer comes with the main callback's: once it is drawn and
        # nothing is in flight, a 3D request would have been sent (the gate is clientside)
        wait_title(page, "head-grid", "selected L1H1")
        page.wait_for_timeout(500)
        asked = page.evaluate("window.__outputs.filter(o => o[0].includes('forward-3d'))")
        assert asked == []  # no request at all while off screen
    page.locator("#forward-3d").scroll_into_view_if_needed()
    wait_title(page, "forward-3d", "attention of L1H1 strong")
