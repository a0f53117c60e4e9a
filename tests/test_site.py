"""The built site in headless Chromium with every request to another host blocked.

Needs `make book` first (`make test` does it). On each chapter page: math is typeset by the
local MathJax, the quiz accepts a click and shows feedback, the interactive figure changes when
its slider moves, the references are rendered, there are no console errors, and nothing is
requested from another host.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from conftest import CHAPTERS, ROOT

pytestmark = pytest.mark.browser
SITE = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAGES = ["intro.html"] + [f"chapters/{p.stem}.html" for p in CHAPTERS]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not (SITE / "intro.html").exists():
        pytest.fail("the site is not built: run `make book` first (make test does)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page_on(server, browser):
    """Open a page with other hosts blocked; record console errors and foreign requests."""
    opened = []

    def open_page(path: str):
        context = browser.new_context()
        page = context.new_page()
        page.foreign_requests = []
        page.errors = []

        def route(r):
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                r.continue_()
            else:
                page.foreign_requests.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(f"{server}/{path}", wait_until="load")
        opened.append(context)
        return page

    yield open_page
    for context in opened:
        context.close()


@pytest.mark.parametrize("path", PAGES)
def test_page_is_offline_clean_and_typesets_math(page_on, path):
    page = page_on(path)
    page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0",
                           timeout=20_000)
    page.wait_for_timeout(1500)  # let late scripts (quiz MathJax fallback) run
    assert page.foreign_requests == [], f"requests to other hosts: {page.foreign_requests}"
    assert page.errors == [], f"console errors: {page.errors}"
    prose = page.evaluate("""() => {
        const main = document.querySelector('main').cloneNode(true);
        main.querySelectorAll('pre, code, .cell_input, mjx-container, script, style')
            .forEach(e => e.remove());
        return main.innerText;
    }""")
    leftovers = re.findall(r"\\(?:frac|sqrt|sum|prod|partial|sigma|mu|varepsilon|hat|le|ge|cdot)"
                           r"\b|\$\$", prose)
    assert not leftovers, f"math left untypeset: {leftovers[:5]}"


@pytest.mark.parametrize("path", PAGES[1:])
def test_quiz_accepts_a_click_and_gives_feedback(page_on, path):
    page = page_on(path)
    page.wait_for_selector(".Quiz .MCButton", timeout=20_000)
    question = page.locator(".Quiz:has(.MCButton)").first
    assert page.locator(".Quiz").count() >= 8
    question.locator(".MCButton").first.click()
    feedback = question.locator(".Feedback")
    feedback.wait_for(timeout=5_000)
    assert feedback.inner_text().strip(), "clicking an answer must show feedback"
    assert question.locator(".correctButton, .incorrectButton").count() >= 1


@pytest.mark.parametrize("path", PAGES[1:])
def test_interactive_figure_changes_when_its_slider_moves(page_on, path):
    page = page_on(path)
    page.wait_for_selector(".gradpath-interactive .slider-rail-touch-rect", timeout=20_000)
    visible = ("() => Array.from(document.querySelector('.gradpath-interactive').data,"
               " t => t.visible === true)")
    before = page.evaluate(visible)
    rail = page.locator(".gradpath-interactive .slider-rail-touch-rect").first
    box = rail.bounding_box()
    assert box is not None
    active = page.evaluate("() => document.querySelector('.gradpath-interactive').layout"
                           ".sliders[0].active")
    # Click at the end of the rail that is furthest from the current position.
    target_x = 3 if active > 0 else box["width"] - 3
    rail.click(position={"x": target_x, "y": box["height"] / 2})
    page.wait_for_timeout(500)
    after = page.evaluate(visible)
    assert after != before, "moving the slider must change which traces are shown"
    assert any(after)


@pytest.mark.parametrize("path", PAGES[1:])
def test_references_render(page_on, path):
    page = page_on(path)
    refs = page.locator("a.footnote-reference").count()
    notes = page.locator("aside.footnote").count()
    assert refs >= 1 and notes >= 1
    broken = page.evaluate("""() => Array.from(document.querySelectorAll('a.footnote-reference'))
        .filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length""")
    assert broken == 0
