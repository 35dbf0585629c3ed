"""The induction lab in a real headless Chromium: a head clicked in the head grid moves the
composition view's frame and the compare-runs chart to that head; the held-out metric
picked in the grid's picker reaches the compare chart."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, CHROMIUM_FLAGS, app_command, chromium_path, free_port, serve
from tests.test_browser import click_cell, title, wait_title
from training.cli import main as train_main

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-browser")
    argv = ["--task", "induction", "--root", str(root), "--run", "lab", "--seeds", "0,1"]
    argv += ["--steps", "120", "--dense-every", "20", "--dense-until", "120", "--quiet"]
    assert train_main(argv) == 0
    port = free_port()
    with serve(app_command(root, port), port) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1700})
        yield context.new_page()
        browser.close()


def test_a_head_click_moves_the_composition_and_compare_views(page, app_url):
    page.goto(app_url + "/?run=lab-s0&head=L1H0")
    wait_title(page, "composition", "Composition into layer 1", timeout=60_000)
    wait_title(page, "compare-runs", "of L1H0", timeout=60_000)
    assert "selected L1H0" in title(page, "composition")
    assert page.locator("#compare-runs .legendtext").count() == 2  # both seeds

    click_cell(page, "head-grid", 0.75, 0.25)  # layer 0 (top row), head 1 (right column)
    wait_title(page, "composition", "selected L0H1")
    wait_title(page, "compare-runs", "of L0H1")
    assert "head=L0H1" in page.url

    page.locator("#metric-picker").click()
    page.get_by_text("previous-token score (held-out sequences)", exact=True).click()
    wait_title(page, "compare-runs", "previous-token score (held-out sequences) of L0H1")
    wait_title(page, "head-grid", "previous-token score (held-out sequences)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "induction-lab.png"), full_page=True)
