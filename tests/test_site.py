"""The built site, as readers meet it: headless Chromium with every request to another host blocked.

Needs `make book` first (`make test` does it); the accessibility checks also need axe-core from
`make site-tools` (they are skipped, saying so, without it). The site is served the way a static
host serves it (gzip for text) by :mod:`gradpath.book.sitebench`.

Per page: math typeset (at build time, MathJax only for quizzes), no console errors or 404s,
nothing from other hosts, a favicon and a meta description; quizzes that accept a click, label
every input and option, check numeric answers with a button and accept paste; an interactive
figure that loads plotly only when it is reached, moves with its slider and its keyboard range
input, and follows dark mode; navigation (☰ and the contents button) that opens at phone width
and works on desktop; display math that scrolls instead of being cut off; figures with real alt
text, wide ones shown wide enough to read; "Live code" that explains itself offline; no serious
or critical axe-core violations in light or dark mode; and a median chapter of at most 1.5 MB
compressed with nothing render-blocking but style sheets.

Each page is opened once per configuration it is checked in (desktop, desktop opened in dark
mode, 390 px with touch, a tall desktop window), every check of that configuration runs on that
one load in a fixed order (see ``_STEPS``), and each test reports one check's outcome. On the
desktop load, axe also runs with the reader's system switched to dark mode, and display math is
checked with the window narrowed to 390 px (each check says why that is what such a reader
sees). Set ``GRADPATH_SITE_TIMINGS=file`` to append each load's seconds per step to ``file``
(JSON lines), to see where the time goes. Run with ``pytest -n 2 --dist loadscope`` (``make
test`` does): every test of one page goes to one worker (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import CHAPTERS, ROOT
from gradpath.book import interactive, site, sitebench

pytestmark = pytest.mark.browser
SITE = ROOT / "_build" / "html"
PAGES = ["intro.html"] + [f"chapters/{p.stem}.html" for p in CHAPTERS]
CHAPTER_PAGES = PAGES[1:]
AXE = ROOT / ".sitetools" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}



# ----------------------------------------------------------------------------- one load per page
#
# Each page is opened ONCE per configuration it is checked in (a fresh browser context: its own
# localStorage and cache), and every check of that configuration runs on that one load, in the
# order of `_STEPS` below: the checks that need the page as it loads come first (nothing
# requested plotly yet; math, names, layout and axe on the untouched page), the ones that move
# things come last (sliders, then quiz answers), and the page's cleanliness (no request to
# another host, no console error, no failed response, whatever the checks did) is judged after
# all of them. Each outcome is recorded, and each test below reports one check's outcome, plus
# the load's cleanliness, as every test did when each had its own load.
# Configurations: desktop (1280x900, light), dark (1280x900, dark), touch (390 px, mobile with
# touch), tall (1280x1600). The desktop load also runs axe in dark mode (the system's colour
# scheme switched to dark, `_check_axe_dark`) and checks display math at 390 px (the window
# narrowed, `_check_display_math_390px`): two loads fewer per page, each of which cost a page
# load, MathJax and a scroll through the page; what they check is CSS that the browser applies
# again on the switch, and the dark-mode load that remains checks what is drawn at load in dark.

CONFIGS = {
    "desktop": {"viewport": DESKTOP, "color_scheme": "light"},
    "dark": {"viewport": DESKTOP, "color_scheme": "dark"},
    "touch": {"viewport": PHONE, "is_mobile": True, "has_touch": True},
    "tall": {"viewport": {"width": 1280, "height": 1600}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not (SITE / "intro.html").exists():
        pytest.fail("the site is not built: run `make book` first (make test does)")
    with sitebench.serve(SITE) as httpd:
        yield httpd.url


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium   # one per process (tests/conftest.py)


class Visit:
    """One load of ``path`` in one configuration, and the outcome of every check run on it:
    ``None`` (passed) or the exception the check raised (a failed assert, a timeout, a skip)."""

    def __init__(self, path: str, config: str) -> None:
        self.path, self.config = path, config
        self.outcomes: dict[str, BaseException | None] = {}
        self.plotly_at_load: bool | None = None

    def report(self, check: str) -> None:
        """Fail (or skip) as ``check`` did on this load; then fail if the load was not clean."""
        assert check in self.outcomes, f"{check!r} is not checked on {self.path} ({self.config})"
        outcome = self.outcomes[check]
        if outcome is not None:
            raise outcome
        clean = self.outcomes.get("clean")
        if clean is not None and check != "clean":
            raise AssertionError(f"{self.path} ({self.config}) was not clean after its checks: "
                                 f"{clean}") from clean


def _open(browser, server: str, path: str, config: str):
    """Open ``path`` with other hosts blocked; record console errors, failed responses,
    foreign requests and every local request. Checks that it loaded its content."""
    context = browser.new_context(**CONFIGS[config])
    page = context.new_page()
    page.foreign_requests = []
    page.errors = []
    page.failed = []
    page.requested = []
    page.path = path

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            page.requested.append(r.request.url)
            r.continue_()
        else:
            page.foreign_requests.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.failed.append(f"{r.status} {r.url}"))
    try:
        response = page.goto(f"{server}/{path}", wait_until="load")
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        _assert_loaded(page, path)
    except BaseException:
        context.close()
        raise
    return context, page


def _run(visit: Visit, browser, server: str) -> Visit:
    steps = [(name, check) for name, check, applies in _STEPS[visit.config]
             if applies(visit.path)]
    start = time.perf_counter()
    try:
        context, page = _open(browser, server, visit.path, visit.config)
        seconds = {"open": time.perf_counter() - start}
    except KeyboardInterrupt:
        raise
    except BaseException as e:   # the page did not load: every check of this load fails so
        for name, _ in steps:
            visit.outcomes[name] = e
        visit.outcomes["clean"] = e
        return visit
    try:
        for name, check in steps:
            try:
                start = time.perf_counter()
                check(page, visit)
                visit.outcomes[name] = None
            except KeyboardInterrupt:
                raise
            except BaseException as e:
                visit.outcomes[name] = e
            finally:
                seconds[name] = time.perf_counter() - start
    finally:
        context.close()
        if os.environ.get("GRADPATH_SITE_TIMINGS"):
            with open(os.environ["GRADPATH_SITE_TIMINGS"], "a", encoding="utf-8") as log:
                log.write(json.dumps({"path": visit.path, "config": visit.config,
                                      **{k: round(v, 3) for k, v in seconds.items()}}) + "\n")
    return visit


@pytest.fixture(scope="module")
def visit(server, browser):
    """``visit(path, config)``: the page's one load in that configuration, with its checks run
    (the first test that asks runs them; later tests read the recorded outcomes)."""
    done: dict[tuple[str, str], Visit] = {}

    def get(path: str, config: str) -> Visit:
        if (path, config) not in done:
            done[path, config] = _run(Visit(path, config), browser, server)
        return done[path, config]

    return get


def _on(config: str, paths: list[str]) -> list:
    """Parameters for the tests of ``paths`` in ``config``: the page is the test's id, which
    ``pytest -n 2 --dist loadscope`` uses (tests/conftest.py) to keep every test of one page
    on one worker, so that each load happens once."""
    return [pytest.param(p, id=p) for p in paths]


def _assert_loaded(page, path: str) -> None:
    """The page shows its own content: its h1 (a chapter's says "Chapter N") and an article
    of real prose, not an empty shell."""
    heading = page.locator("main h1").first
    heading.wait_for(state="attached", timeout=10_000)
    title = " ".join((heading.text_content() or "").split())
    if path.startswith("chapters/"):
        number = int(Path(path).stem[:2])
        assert re.match(rf"Chapter {number}\b", title), f"{path}: heading {title!r}"
    else:
        assert title, f"{path}: empty heading"
    words = page.evaluate("() => (document.querySelector('main article, main')"
                          ".textContent.match(/[A-Za-z]{3,}/g) || []).length")
    assert words > (1500 if path.startswith("chapters/") else 150), \
        f"{path}: only {words} words of content"


def _math_ready(page) -> None:
    """Wait until the page's math is typeset: the prose's at build time, and (on pages with a quiz
    or flashcards, which load MathJax when one comes near) the quizzes' after scrolling to one."""
    page.wait_for_function("() => ['prose', 'typeset'].includes("
                           "document.documentElement.dataset.gradpathMath)", timeout=20_000)
    if page.evaluate("() => document.documentElement.dataset.gradpathMath === 'typeset'"):
        return   # an earlier check brought the quizzes near and MathJax typeset them
    if page.evaluate("() => !!document.getElementById('gradpath-mathjax')"):
        page.locator("[data-shufflequestions], .gp-deck").first.scroll_into_view_if_needed()
        page.wait_for_function("() => document.documentElement.dataset.gradpathMath === "
                               "'typeset'", timeout=30_000)
        page.evaluate("() => scrollTo(0, 0)")


def _scroll_through(page) -> None:
    """Scroll down the page a screenful at a time (so that every part of it is on screen once,
    and whatever loads when it is reached loads), pausing 40 ms (two frames) at each stop."""
    page.evaluate("""async () => {
        for (let y = 0; y < document.body.scrollHeight; y += innerHeight) {
            scrollTo(0, y); await new Promise(r => setTimeout(r, 40));
        }
        scrollTo(0, 0);
    }""")


def _figure_drawn(page):
    figure = page.locator(".gradpath-interactive").first
    figure.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('.gradpath-interactive')"
                           ".dataset.gpState === 'drawn'", timeout=20_000)
    return figure


_VISIBLE_ON_TOP = """(sel) => Array.from(document.querySelectorAll(sel)).filter(a => {
        const r = a.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || r.right <= 0 || r.left >= innerWidth) return false;
        const e = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return e === a || a.contains(e);
    }).length"""


def _visible_on_top(page, selector: str) -> int:
    """How many elements matching ``selector`` a reader can see (on screen and not covered)."""
    return page.evaluate(_VISIBLE_ON_TOP, selector)


def _settle(page, condition: str, arg: object = None, timeout: float = 5_000) -> None:
    """Wait until the JavaScript predicate ``condition(arg)`` holds, or ``timeout`` ms have
    passed; then return either way, so that the check's own assert (which follows) reports
    what it sees. This replaces a fixed sleep before an assert: a page that passes waits only
    until it does, and a page that fails still fails, with the assert's message."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, arg=arg, timeout=timeout)
    except PlaywrightTimeout:
        pass


# ----------------------------------------------------------------------------- the build

@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_page_is_built_with_its_content(notebook):
    # jupyter-book 2 (now the index's default) builds a different site from the same sources;
    # a silent upgrade once published empty pages. Check the pin and the pages themselves.
    pins = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^jupyter-book==1\.", pins, re.M), "keep jupyter-book pinned to v1"
    page = SITE / "chapters" / f"{notebook.stem}.html"
    assert page.is_file(), f"{page} was not built"
    text = page.read_text(encoding="utf-8")
    number = int(notebook.stem[:2])
    assert re.search(rf"<h1>Chapter {number}\b", text), "the chapter title is missing"
    article = re.sub(r"<[^>]+>", " ", text.split('<article class="bd-article"')[-1])
    words = len(re.findall(r"[A-Za-z]{3,}", article))
    assert words > 1500, f"only {words} words of content: the page is (nearly) empty"
    for needle in ("Learning objectives", "Interactive figure", "Quiz", "Key takeaways",
                   "References", 'class="cell_output', "_images/", site.PLOTLY_MARKER,
                   "data-shufflequestions"):
        assert needle in text, f"{needle!r} is missing from {page.name}"
    # a result table displayed as Markdown must render as a table, not as pipes in a paragraph
    raw_tables = re.findall(r"<p>\|[^<]{0,60}", text)
    assert not raw_tables, f"Markdown tables left unrendered: {raw_tables[:3]}"


def test_the_theme_pair_is_pinned():
    pins = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^sphinx-book-theme==\S+$", pins, re.M)
    assert re.search(r"^pydata-sphinx-theme==\S+$", pins, re.M)


@pytest.mark.parametrize("path", PAGES)
def test_nothing_but_style_sheets_blocks_the_first_paint(path):
    head = (SITE / path).read_text(encoding="utf-8").split("</head>")[0]
    blocking = [tag for tag in re.findall(r"<script\b[^>]*\bsrc=[^>]*>", head)
                if not re.search(r"\b(defer|async)\b", tag)]
    assert blocking == [], f"render-blocking scripts: {blocking}"
    assert "plotly" not in head and "fontawesome/6.5.2/js" not in head



# ----------------------------------------------------------------------------- the checks
# Each takes the open page (and its Visit, for what an earlier step recorded) and asserts.

def _check_plotly_not_at_load(page, visit: Visit) -> None:
    """Record whether plotly was requested before the reader reached a figure (asserted by
    ``_check_plotly_lazy`` once the figure is drawn)."""
    page.wait_for_timeout(500)
    visit.plotly_at_load = any(site.PLOTLY_JS in u for u in page.requested)


# The text of the page's prose (what a reader reads as text, not code or typeset math), and
# what TeX left in it looks like (the same pattern in Python's and JavaScript's syntax).
_PROSE = """(() => {
        const main = document.querySelector('main').cloneNode(true);
        // flashcard decks typeset each card as it is shown (tests/test_learning.py checks it)
        main.querySelectorAll('pre, code, .cell_input, mjx-container, script, style, .gp-deck')
            .forEach(e => e.remove());
        return main.innerText;
    })()"""
_TEX_LEFT = (r"\\(?:frac|sqrt|sum|prod|partial|sigma|mu|varepsilon|hat|le|ge|cdot)\b|\$\$|\\\(|"
             r"\\\[")


def check_math_is_typeset(page, visit: Visit | None = None) -> None:
    """The page's math is typeset (at build time; MathJax is loaded only for quizzes and
    flashcards) and no TeX is left in its prose."""
    page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0",
                           timeout=20_000)
    _math_ready(page)
    # Late scripts (jupyterquiz typesets its questions 500 ms after drawing them) get up to 5 s
    # to leave no TeX in the prose; then the prose is read and checked.
    _settle(page, f"() => !({_PROSE}).match(new RegExp({json.dumps(_TEX_LEFT)}))")
    prose = page.evaluate(_PROSE)
    leftovers = re.findall(_TEX_LEFT, prose)
    assert not leftovers, f"math left untypeset: {leftovers[:5]}"


def _check_clean(page, visit: Visit) -> None:
    """No request to another host, no console error, no failed response, from the load and
    from everything the checks before this one did with the page."""
    page.wait_for_timeout(200)     # let the last actions' requests and errors arrive
    assert page.foreign_requests == [], f"requests to other hosts: {page.foreign_requests}"
    assert page.errors == [], f"console errors: {page.errors}"
    assert page.failed == [], f"failed requests (a favicon.ico 404 counts): {page.failed}"


def _check_favicon_and_description(page, visit: Visit) -> None:
    icon = page.locator("link[rel~='icon']")
    assert icon.count() >= 1
    assert page.request.get(icon.first.evaluate("l => l.href")).ok
    description = page.locator("meta[name='description']").get_attribute("content") or ""
    assert len(description) >= 40 and "\\" not in description, description


def _check_intro_links(page, visit: Visit) -> None:
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('main ol a'),"
                          " a => a.getAttribute('href'))")
    for notebook in CHAPTERS:
        assert any(h and h.split("#")[0].endswith(f"{notebook.stem}.html") for h in hrefs), \
            f"the intro's chapter list has no link to {notebook.stem}"


def _check_phone_menus(page, visit: Visit) -> None:
    chapter_links = ".bd-sidebar-primary .bd-links a[href*='-']"
    assert _visible_on_top(page, chapter_links) == 0
    page.locator(".primary-toggle:visible").first.tap()
    page.wait_for_function("""(sel) => Array.from(document.querySelectorAll(sel)).some(a => {
        const r = a.getBoundingClientRect();
        const e = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return r.width > 0 && r.left >= 0 && (e === a || a.contains(e)); })""",
                           arg=chapter_links, timeout=5_000)
    assert _visible_on_top(page, chapter_links) >= len(CHAPTERS) // 2
    page.keyboard.press("Escape")
    page.mouse.click(370, 600)  # tap outside the drawer closes it
    # until the drawer has slid away (it covered the page's own buttons)
    _settle(page, f"(sel) => ({_VISIBLE_ON_TOP})(sel) === 0", chapter_links)
    if visit.path.startswith("chapters/"):
        toc_links = ".bd-sidebar-secondary nav a"
        assert _visible_on_top(page, toc_links) == 0
        page.locator(".secondary-toggle:visible").first.tap()
        _settle(page, f"(sel) => ({_VISIBLE_ON_TOP})(sel) >= 3", toc_links)
        assert _visible_on_top(page, toc_links) >= 3, "the contents button shows the contents"


def _check_desktop_menu(page, visit: Visit) -> None:
    links = ".bd-sidebar-primary .bd-links a[href*='-']"
    shown = len(CHAPTERS) - 1
    assert _visible_on_top(page, links) >= shown
    page.locator(".primary-toggle:visible").first.click()
    _settle(page, f"(sel) => ({_VISIBLE_ON_TOP})(sel) === 0", links)
    assert _visible_on_top(page, links) == 0
    page.locator(".primary-toggle:visible").first.click()
    _settle(page, f"([sel, n]) => ({_VISIBLE_ON_TOP})(sel) >= n", [links, shown])
    assert _visible_on_top(page, links) >= shown


def _plain(html_text: str) -> str:
    """Quiz HTML as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_text)).split())


def _key(text: str) -> str:
    """Text compared as letters and digits only (tags and spacing differ between JSON and page)."""
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _notebook(path: str) -> Path:
    return ROOT / "chapters" / f"{Path(path).stem}.ipynb"


def _single_answer_question(notebook: Path) -> tuple[str, str, str]:
    """From the quiz's JSON (not from the page): a multiple-choice question with one right
    answer, free of math (so its rendered text is its plain text): (question, right, wrong)."""
    questions = json.loads((notebook.parent / "quizzes" / f"{notebook.stem}.json").read_text())
    for q in questions:
        if q["type"] != "multiple_choice":
            continue
        texts = [q["question"]] + [a["answer"] for a in q["answers"]]
        if any("$" in t or "\\" in t for t in texts):
            continue
        right = [a["answer"] for a in q["answers"] if a["correct"]]
        wrong = [a["answer"] for a in q["answers"] if not a["correct"]]
        if len(right) == 1 and wrong:
            return _plain(q["question"]), _plain(right[0]), _plain(wrong[0])
    pytest.fail(f"{notebook.stem} has no single-answer multiple-choice question without math")


def _check_quiz_right_and_wrong(page, visit: Visit) -> None:
    question_text, right, wrong = _single_answer_question(_notebook(visit.path))
    page.wait_for_selector(".Quiz .MCButton", timeout=20_000)
    assert page.locator(".Quiz").count() >= 8
    quizzes = [_key(t) for t in page.locator(".Quiz").all_inner_texts()]
    found = [i for i, t in enumerate(quizzes) if _key(question_text) in t]
    assert len(found) == 1, f"question not found once on the page: {question_text[:60]}"
    question = page.locator(".Quiz").nth(found[0])
    feedback = question.locator(".Feedback")

    def option(text: str):
        labels = question.locator(".MCButton")
        texts = [_key(t) for t in labels.all_inner_texts()]
        assert texts.count(_key(text)) == 1, f"option {text!r} not among {texts}"
        return labels.nth(texts.index(_key(text)))

    def state(label) -> tuple[list[str], list[str]]:
        return (label.evaluate("l => Array.from(l.classList)"),
                (feedback.get_attribute("class") or "").split())

    fb = state(option(wrong))[1]   # nothing before this check answers a question
    assert "correct" not in fb and "incorrect" not in fb, f"answered before the check: {fb}"
    option(wrong).click()
    feedback.wait_for(timeout=5_000)
    marked, fb = state(option(wrong))
    assert "incorrectButton" in marked and "correctButton" not in marked, marked
    assert "incorrect" in fb and "correct" not in fb, fb
    assert feedback.inner_text().strip(), "a wrong answer must explain itself"
    assert feedback.get_attribute("aria-live") == "polite"

    option(right).click()
    page.wait_for_timeout(200)
    marked, fb = state(option(right))
    assert "correctButton" in marked and "incorrectButton" not in marked, marked
    assert "correct" in fb and "incorrect" not in fb, fb
    assert "incorrectButton" not in state(option(wrong))[0], "the earlier mark is cleared"


def _first_numeric(notebook: Path) -> tuple[int, str]:
    questions = json.loads((notebook.parent / "quizzes" / f"{notebook.stem}.json").read_text())
    for i, q in enumerate(questions):
        if q["type"] == "numeric":
            for a in q["answers"]:
                if a.get("correct") and a.get("type") == "value":
                    return i, repr(a["value"])
                if a.get("correct") and a.get("type") == "range":
                    lo, hi = a["range"]
                    return i, repr(lo if lo == hi else (lo + hi) / 2)
    pytest.skip(f"{notebook.stem} has no numeric question")


def _check_numeric_question(page, visit: Visit) -> None:
    index, answer = _first_numeric(_notebook(visit.path))
    question = page.locator(".Quiz").nth(index)
    box = question.locator("input.Input-text")
    box.wait_for(timeout=20_000)
    assert box.input_value() == "", "nothing before this check types into the box"
    name = box.evaluate("b => (b.labels && b.labels[0] ? b.labels[0].textContent : '') || "
                        "b.getAttribute('aria-label') || ''")
    assert name.strip(), "the numeric input needs a label"
    assert box.get_attribute("aria-describedby"), "the hint must be tied to the input"
    blocked = box.evaluate("b => { const e = new Event('paste', {cancelable: true});"
                           " b.dispatchEvent(e); return e.defaultPrevented; }")
    assert not blocked, "paste must be allowed"
    box.click()
    box.type(answer)
    page.locator("body").click(position={"x": 5, "y": 5})
    box.focus()
    assert box.input_value() == answer, "focusing the box again must keep the answer"
    question.get_by_role("button", name="Check").click()
    feedback = question.locator(".Feedback")
    feedback.wait_for(timeout=5_000)
    assert "correct" in (feedback.get_attribute("class") or "").split(), \
        f"{answer} is the quiz's correct answer: {feedback.inner_text()}"


def _check_option_names(page, visit: Visit) -> None:
    _math_ready(page)
    page.wait_for_timeout(300)
    names = page.evaluate("""() => Array.from(document.querySelectorAll('.Quiz .MCButton input'),
        i => (i.getAttribute('aria-label') || i.parentNode.innerText || '').trim())""")
    assert names and all(names), "every option needs an accessible name"
    assert not any("\\" in n for n in names), [n for n in names if "\\" in n][:3]


def _check_plotly_lazy(page, visit: Visit) -> None:
    assert visit.plotly_at_load is False, "plotly loaded at page load"
    _figure_drawn(page)
    assert any(site.PLOTLY_JS in u for u in page.requested)


def _pages_with_figures() -> list[str]:
    """Every built page that has an interactive figure (not only the chapters)."""
    if not SITE.is_dir():
        return CHAPTER_PAGES
    return sorted(str(p.relative_to(SITE)) for p in SITE.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts
                  and 'class="gradpath-interactive' in p.read_text(encoding="utf-8"))


FIGURE_PAGES = _pages_with_figures()
_FIGURE_STATE = """([i, j]) => { const el = document.querySelectorAll('.gradpath-interactive')[i];
    return [el.layout.sliders[j].active, el.data.map(t => t.visible === true)]; }"""
# What the checks below wait for (instead of a fixed sleep) before they assert where a slider
# went and what the figure shows: slider j of figure i has left position `start`, the traces
# shown are no longer `shown`, and the figure's range input follows its first slider.
_FIGURE_MOVED = """([i, j, start, shown]) => {
    const el = document.querySelectorAll('.gradpath-interactive')[i];
    const active = el.layout.sliders[j].active;
    const range = document.getElementById(el.id + '-range');
    return active !== start
        && JSON.stringify(el.data.map(t => t.visible === true)) !== JSON.stringify(shown)
        && (j !== 0 || !range || range.value === String(active)); }"""


def _draw_every_figure(page) -> int:
    """Scroll to every interactive figure and wait until each is drawn; return how many."""
    count = page.locator(".gradpath-interactive").count()
    assert count >= 1
    for i in range(count):
        page.locator(".gradpath-interactive").nth(i).scroll_into_view_if_needed()
        page.wait_for_function("(i) => document.querySelectorAll('.gradpath-interactive')[i]"
                               ".dataset.gpState === 'drawn'", arg=i, timeout=20_000)
    return count


def _check_sliders(page, visit: Visit) -> None:
    for i in range(_draw_every_figure(page)):
        figure = page.locator(".gradpath-interactive").nth(i)
        sliders = figure.evaluate("el => (el.layout.sliders || []).length")
        assert sliders >= 1, f"figure {i} has no slider"
        for j in range(sliders):
            steps = figure.evaluate("(el, j) => el.layout.sliders[j].steps.length", j)
            assert steps >= 2
            start, shown = page.evaluate(_FIGURE_STATE, [i, j])
            rail = figure.locator(".slider-rail-touch-rect").nth(j)
            box = rail.bounding_box()
            assert box is not None
            # click at the end of the rail furthest from the current position
            rail.click(position={"x": 3 if start > 0 else box["width"] - 3,
                                 "y": box["height"] / 2})
            _settle(page, _FIGURE_MOVED, [i, j, start, shown])
            now, shown_now = page.evaluate(_FIGURE_STATE, [i, j])
            assert now == (0 if start > 0 else steps - 1), (visit.path, i, j, start, now)
            assert shown_now != shown and any(shown_now), "the slider must change the traces"
            if j == 0:          # the figure's range input follows its first slider
                assert page.locator(f"#{figure.get_attribute('id')}-range").input_value() \
                    == str(now)


def _check_keyboard(page, visit: Visit) -> None:
    # Runs on figures as they load (before _check_sliders moves them), as it always has.
    for i in range(_draw_every_figure(page)):
        figure = page.locator(".gradpath-interactive").nth(i)
        slider = page.locator(f"#{figure.get_attribute('id')}-range")
        label = page.evaluate("(id) => document.querySelector(`label[for='${id}']`).textContent",
                              slider.get_attribute("id"))
        assert label.strip()
        steps = figure.evaluate("el => el.layout.sliders[0].steps.length")
        slider.focus()
        before, shown = page.evaluate(_FIGURE_STATE, [i, 0])
        page.keyboard.press("Home")
        if before != 0:
            _settle(page, _FIGURE_MOVED, [i, 0, before, shown])
        else:   # already there: give a wrong move (which the assert catches) time to happen
            page.wait_for_timeout(300)
        position, shown = page.evaluate(_FIGURE_STATE, [i, 0])
        assert position == 0
        for step in range(1, steps):
            page.keyboard.press("ArrowRight")
            _settle(page, _FIGURE_MOVED, [i, 0, step - 1, shown])
            now, shown_now = page.evaluate(_FIGURE_STATE, [i, 0])
            assert now == step, (visit.path, i, step, now)
            assert shown_now != shown and any(shown_now), f"step {step} shows the same traces"
            assert slider.get_attribute("aria-valuetext")
            shown = shown_now


def _tick_number(text: str) -> float:
    """The value a tick label states: "0.02", "20", "10⁻⁸", "5×10⁷"."""
    powers = text.translate(str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789"))
    if "×10" in powers:
        mantissa, exponent = powers.split("×10")
        return float(mantissa) * 10.0 ** int(exponent)
    if powers != text:  # "10" followed by a superscript exponent
        return 10.0 ** int(powers[2:])
    return float(text)


def _check_log_ticks(page, visit: Visit) -> None:
    _figure_drawn(page)
    axes = page.evaluate("""() => {
        const el = document.querySelector('.gradpath-interactive');
        return ['xaxis', 'yaxis'].filter(a => el._fullLayout[a].type === 'log').map(a =>
            [el._fullLayout[a].tickmode, el._fullLayout[a].tickvals, el._fullLayout[a].ticktext,
             Array.from(el.querySelectorAll(`.${a.charAt(0)}tick text`), t => t.textContent)]);
    }""")
    for mode, values, texts, shown in axes:
        # Every label states its whole value (plotly's own log labels write bare mantissa
        # digits, "3 2 1 9 8 ...", between powers of ten).
        assert mode == "array" and shown, f"log axis without explicit labels: {shown}"
        for value, text in zip(values, texts, strict=True):
            assert _tick_number(text) == pytest.approx(value, rel=1e-9), (text, value)


def _check_alt_text(page, visit: Visit) -> None:
    alts = page.evaluate("() => Array.from(document.querySelectorAll('main .cell_output img'),"
                         " i => i.getAttribute('alt') || '')")
    assert alts, "no figures?"
    bad = [a for a in alts if len(a) < 15 or re.search(r"\.(png|svg|jpe?g)\b|_images/", a)]
    assert not bad, f"alt text that is a path or too short: {bad[:3]}"
    captions = page.locator(".gradpath-figure figcaption").all_inner_texts()
    assert captions and all(len(c) > 20 for c in captions)


def _check_figure_scale(page, visit: Visit) -> None:
    scales = page.evaluate("""async () => {
        const imgs = Array.from(document.querySelectorAll('main .cell_output img'));
        imgs.forEach(i => { i.loading = 'eager'; });  // figures load lazily
        await Promise.all(imgs.map(i => i.complete ? 0 : new Promise(r => i.onload = r)));
        return imgs.map(i => [i.getAttribute('src'), i.clientWidth / i.naturalWidth]);
    }""")
    # Figures are drawn at 100 dpi with 10-point text: shown at 70% or more, text is >= 9.7 px.
    small = [(src, round(s, 2)) for src, s in scales if s < 0.7]
    assert not small, f"figures shrunk below 70% at 1280 px: {small}"
    # Every figure reserves its space before it loads (no layout shift) and keeps its shape.
    sized = page.evaluate("""() => Array.from(document.querySelectorAll('main .cell_output img'),
        i => [i.getAttribute('width'), i.getAttribute('height'),
              Math.abs(i.clientHeight / i.clientWidth - i.naturalHeight / i.naturalWidth)])""")
    assert all(w and h and err < 0.02 for w, h, err in sized), sized


# The relative luminance of the first interactive figure's font colour (as _luminance computes it)
_FONT_LUMINANCE = """() => {
    const c = document.querySelector('.gradpath-interactive')._fullLayout.font.color;
    const v = c.startsWith('rgb') ? c.match(/\\d+/g).slice(0, 3).map(Number)
        : [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16));
    return (0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]) / 255; }"""


def _luminance(color: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", color)[:3]) if color.startswith("rgb") \
        else (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _check_dark_mode(page, visit: Visit) -> None:
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    _figure_drawn(page)
    font = "() => document.querySelector('.gradpath-interactive')._fullLayout.font.color"
    assert _luminance(page.evaluate(font)) > 0.7, "figure text must be light in dark mode"
    button = page.locator(".Quiz .MCButton").first
    assert _luminance(button.evaluate("b => getComputedStyle(b).backgroundColor")) < 0.3
    panel = page.locator(".text_html:has(.Quiz)").first
    assert panel.evaluate("p => getComputedStyle(p).backgroundColor") in ("rgba(0, 0, 0, 0)",
                                                                        "transparent")
    # Switching the theme restyles the figure without a reload.
    page.evaluate("() => { document.documentElement.dataset.theme = 'light'; }")
    page.wait_for_timeout(600)
    assert _luminance(page.evaluate(font)) < 0.3, "figure text must be dark in light mode"


def _check_display_math(page, visit: Visit) -> None:
    _math_ready(page)
    page.wait_for_timeout(300)
    cut = page.evaluate("""() => {
        const main = document.querySelector('.bd-article').getBoundingClientRect();
        return Array.from(document.querySelectorAll('mjx-container[display="true"]')).filter(c => {
            const r = c.getBoundingClientRect();
            const scrolls = ['auto', 'scroll'].includes(getComputedStyle(c).overflowX);
            const overflows = c.scrollWidth > c.clientWidth + 1;
            return r.right > main.right + 1 || (overflows && !scrolls);
        }).map(c => c.textContent.slice(0, 40));
    }""")
    assert not cut, f"display equations cut off: {cut}"
    wide = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
    assert wide <= 1, f"the page scrolls sideways by {wide}px"


def _check_display_math_390px(page, visit: Visit) -> None:
    """``_check_display_math`` with the window narrowed to a phone's 390 px (and back): the
    equations' overflow and the page's width are CSS (media queries and ``overflow-x``), which
    the browser applies again on a resize; the build typesets the equations, so nothing about
    them depends on the width the page was opened at."""
    page.set_viewport_size(PHONE)
    try:
        page.wait_for_function("() => innerWidth === 390", timeout=5_000)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                      "requestAnimationFrame(r)))")
        _check_display_math(page, visit)
    finally:
        page.set_viewport_size(DESKTOP)


def _check_live_code(page, visit: Visit) -> None:
    """Runs after ``_check_clean`` (the load and every other check made no foreign request and
    logged no error), so the requests and errors seen here are the click's alone."""
    assert visit.outcomes.get("clean") is None, "the page was not clean before the click"
    page.locator(".btn-launch-thebe").first.evaluate("b => b.click()")
    note = page.locator(".gradpath-thebe-note")
    note.wait_for(timeout=12_000)
    assert "Colab" in note.inner_text()
    # The one request to another host a click on "Live code" makes is Thebe's own script (the
    # route blocks it: that is the offline case), and its failed load is the one console
    # error. Anything else still fails the check when the page is checked again below.
    assert page.foreign_requests and all(
        re.fullmatch(r"https://unpkg\.com/thebe@[\d.]+/lib/index\.js", u)
        for u in page.foreign_requests), page.foreign_requests
    assert page.errors and all(e == "Failed to load resource: net::ERR_FAILED"
                               for e in page.errors), page.errors
    page.foreign_requests.clear()
    page.errors.clear()
    _check_clean(page, visit)


def _check_axe(page, visit: Visit) -> None:
    _prepare_axe(page)
    _run_axe(page)


def _prepare_axe(page) -> None:
    """The page as a reader has seen all of it (math typeset, figures drawn, scrolled through
    to the end), and axe-core loaded into it; once per load."""
    if not AXE.is_file():
        pytest.skip("axe-core is not installed: run `make site-tools`")
    if page.evaluate("() => typeof axe") == "object":
        return
    _math_ready(page)
    if page.locator(".gradpath-interactive").count():
        _figure_drawn(page)
    _scroll_through(page)
    page.wait_for_timeout(500)
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))


def _check_axe_dark(page, visit: Visit) -> None:
    """axe-core on the page as a dark-mode reader sees it: the reader's system turns dark
    (``prefers-color-scheme``) on the page ``_check_axe`` just checked in light mode, so the same
    content (scrolled through, its figures drawn, its quizzes' math typeset) is checked again in
    the colours a dark-mode reader gets. The theme follows the system (``data-theme``), every
    colour is CSS and the interactive figures restyle themselves on the switch (the dark_mode
    test checks that on a page loaded dark); axe reads computed colours. Then back to light."""
    _prepare_axe(page)
    page.emulate_media(color_scheme="dark")
    try:
        page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'",
                               timeout=5_000)
        if page.locator(".gradpath-interactive").count():   # restyled by gradpath.js
            page.wait_for_function(f"() => ({_FONT_LUMINANCE})() > 0.7", timeout=5_000)
        page.evaluate(_TRANSITIONS_DONE)
        _run_axe(page)
    finally:
        page.emulate_media(color_scheme="light")
        page.wait_for_function("() => document.documentElement.dataset.theme === 'light'",
                               timeout=5_000)
        page.evaluate(_TRANSITIONS_DONE)


# The theme's buttons fade to their new colours (CSS transitions of 150-250 ms) when the theme
# switches; a reader sees the colours they end at, and axe must too (mid-fade, a button's text
# and background are neither theme's). Waits for every running CSS transition (at most 5 s).
_TRANSITIONS_DONE = """async () => {
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const fades = document.getAnimations().filter(a => a instanceof CSSTransition);
    await Promise.race([Promise.all(fades.map(a => a.finished.catch(() => null))),
                        new Promise(r => setTimeout(r, 5000))]);
}"""


def _run_axe(page) -> None:
    # preload: false — axe would otherwise fetch every stylesheet's @import itself, resolving
    # the theme's "../basic.css" against the page instead of the stylesheet (a 404 that the
    # browser, which resolves it correctly, never makes)
    violations = page.evaluate("""async () => (await axe.run(document,
        {resultTypes: ['violations'], preload: false})).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => `${v.impact} ${v.id} (${v.nodes.length}): ${v.help}; e.g. `
                  + v.nodes.slice(0, 2).map(n => n.target.join(' ')).join(' | '))""")
    assert violations == [], "\n".join(violations)


# What runs on each load, in order: (outcome name, check, which paths it applies to).
def _any(path: str) -> bool:
    return True


def _chapter(path: str) -> bool:
    return path in CHAPTER_PAGES


def _book_page(path: str) -> bool:
    return path in PAGES


_STEPS = {
    "desktop": [
        # the page as it loads: nothing has scrolled to a figure yet
        ("plotly_not_at_load", _check_plotly_not_at_load, _chapter),
        ("favicon", _check_favicon_and_description, _book_page),
        ("intro_links", _check_intro_links, lambda p: p == "intro.html"),
        ("math", check_math_is_typeset, _book_page),
        ("option_names", _check_option_names, _chapter),
        ("display_math", _check_display_math, _chapter),
        ("alt_text", _check_alt_text, _chapter),
        ("figure_scale", _check_figure_scale, _chapter),
        ("axe", _check_axe, _book_page),
        ("axe_dark", _check_axe_dark, _book_page),
        # the figure is reached (axe scrolled through the page)
        ("plotly_lazy", _check_plotly_lazy, _chapter),
        ("log_ticks", _check_log_ticks, _chapter),
        # interactions last: the keyboard first (figures as loaded), then slider clicks, then
        # one multiple-choice and one numeric question (each its own question)
        ("keyboard", _check_keyboard, lambda p: p in FIGURE_PAGES),
        ("sliders", _check_sliders, lambda p: p in FIGURE_PAGES),
        ("quiz", _check_quiz_right_and_wrong, _chapter),
        ("numeric", _check_numeric_question, _chapter),
        ("display_math_390px", _check_display_math_390px, _chapter),
        ("clean", _check_clean, _any),
        ("live_code", _check_live_code, lambda p: p == CHAPTER_PAGES[0]),
    ],
    "dark": [
        ("dark_mode", _check_dark_mode, lambda p: p == CHAPTER_PAGES[0]),  # switches to light
        ("clean", _check_clean, _any),
    ],
    "touch": [
        ("menus", _check_phone_menus, _any),
        ("clean", _check_clean, _any),
    ],
    "tall": [
        ("desktop_menu", _check_desktop_menu, _any),
        ("clean", _check_clean, _any),
    ],
}


# ----------------------------------------------------------------------------- every page

@pytest.mark.parametrize("path", _on("desktop", PAGES))
def test_page_is_offline_clean_and_typesets_math(visit, path):
    v = visit(path, "desktop")
    v.report("math")
    v.report("clean")


@pytest.mark.parametrize("path", _on("desktop", PAGES))
def test_page_has_a_favicon_and_a_meta_description(visit, path):
    visit(path, "desktop").report("favicon")


@pytest.mark.parametrize("path", _on("desktop", ["intro.html"]))
def test_intro_lists_every_chapter_as_a_link(visit, path):
    visit(path, "desktop").report("intro_links")


# ----------------------------------------------------------------------------- navigation

@pytest.mark.parametrize("path", _on("touch", ["intro.html", CHAPTER_PAGES[1]]))
def test_menu_and_contents_buttons_open_at_phone_width(visit, path):
    visit(path, "touch").report("menus")


@pytest.mark.parametrize("path", _on("tall", [CHAPTER_PAGES[0]]))
def test_menu_button_hides_and_shows_the_sidebar_on_desktop(visit, path):
    # a tall desktop window, so that every chapter's link fits on screen at once
    visit(path, "tall").report("desktop_menu")


# ----------------------------------------------------------------------------- quizzes

@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_quiz_marks_a_right_answer_right_and_a_wrong_answer_wrong(visit, path):
    visit(path, "desktop").report("quiz")


@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_numeric_questions_are_labelled_checkable_and_accept_paste(visit, path):
    visit(path, "desktop").report("numeric")


@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_every_answer_option_has_a_text_name(visit, path):
    visit(path, "desktop").report("option_names")


# ----------------------------------------------------------------------------- figures

@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_plotly_loads_only_when_the_figure_is_reached(visit, path):
    v = visit(path, "desktop")
    v.report("plotly_not_at_load")
    v.report("plotly_lazy")


def test_every_page_with_a_figure_is_tested():
    assert set(CHAPTER_PAGES) <= set(FIGURE_PAGES)


@pytest.mark.parametrize("path", _on("desktop", FIGURE_PAGES))
def test_every_slider_of_every_figure_changes_its_figure(visit, path):
    visit(path, "desktop").report("sliders")


@pytest.mark.parametrize("path", _on("desktop", FIGURE_PAGES))
def test_the_keyboard_moves_every_figure_through_every_step(visit, path):
    visit(path, "desktop").report("keyboard")


@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_log_axes_have_unambiguous_tick_labels(visit, path):
    visit(path, "desktop").report("log_ticks")


@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_figures_have_real_alt_text(visit, path):
    visit(path, "desktop").report("alt_text")


@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_figure_labels_are_not_shrunk_to_unreadable(visit, path):
    visit(path, "desktop").report("figure_scale")


# ----------------------------------------------------------------------------- dark mode

@pytest.mark.parametrize("path", _on("dark", [CHAPTER_PAGES[0]]))
def test_dark_mode_restyles_the_figure_and_the_quiz(visit, path):
    visit(path, "dark").report("dark_mode")


# ----------------------------------------------------------------------------- math and Thebe

@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_display_math_scrolls_instead_of_being_cut_off_at_390px(visit, path):
    visit(path, "desktop").report("display_math_390px")


@pytest.mark.parametrize("path", _on("desktop", CHAPTER_PAGES))
def test_display_math_scrolls_instead_of_being_cut_off_at_1280px(visit, path):
    visit(path, "desktop").report("display_math")


@pytest.mark.parametrize("path", _on("desktop", [CHAPTER_PAGES[0]]))
def test_live_code_explains_itself_offline(visit, path):
    visit(path, "desktop").report("live_code")


# ----------------------------------------------------------------------------- accessibility

@pytest.mark.parametrize("path", _on("desktop", PAGES))
def test_axe_finds_no_serious_or_critical_violations_in_light_mode(visit, path):
    visit(path, "desktop").report("axe")


@pytest.mark.parametrize("path", _on("desktop", PAGES))
def test_axe_finds_no_serious_or_critical_violations_in_dark_mode(visit, path):
    visit(path, "desktop").report("axe_dark")


# ----------------------------------------------------------------------------- weight

def test_median_chapter_weighs_at_most_1_5_mb_compressed(browser):
    weights = {}
    with sitebench.serve(SITE) as httpd:
        for path in CHAPTER_PAGES:
            weights[path] = sitebench.page_weight(browser, httpd, path)
    first = statistics.median(w[0] for w in weights.values())
    scrolled = statistics.median(w[1] for w in weights.values())
    assert scrolled <= sitebench.MAX_MEDIAN_CHAPTER_BYTES, weights
    assert first < scrolled, "plotly should arrive only when the reader scrolls to the figure"


# ----------------------------------------------------------------------------- units (no browser)

def test_log_ticks_label_every_tick_in_full():
    for lo, hi in [(3e-3, 0.4), (0.02, 0.09), (1e-20, 10), (2e5, 3e9), (0.5, 3)]:
        values, labels = interactive.log_ticks(lo, hi)
        assert [_tick_number(t) for t in labels] == pytest.approx(values, rel=1e-9)
    values, labels = interactive.log_ticks(3e-3, 0.4)
    assert labels[:3] == ["0.001", "0.01", "0.1"] or "0.002" in labels
    assert not any(re.fullmatch(r"[2-9]", t) for t in labels)
    values, labels = interactive.log_ticks(1e-20, 10)
    assert len(values) <= 9 and all("10" in t or t == "1" for t in labels)
    with pytest.raises(ValueError, match="lo"):
        interactive.log_ticks(0, 1)


def test_slim_html_defers_head_scripts_and_drops_font_awesome_js():
    page = ('<html><head><script src="_static/documentation_options.js?v=1"></script>'
            '<script>DOCUMENTATION_OPTIONS.pagename = "x";</script>'
            '<script src="_static/vendor/fontawesome/6.5.2/js/all.min.js?d=1"></script>'
            '<link rel="preload" as="font" href="_static/vendor/fontawesome/6.5.2/a.woff2" />'
            '<link rel="preload" as="font" href="_static/vendor/fontawesome/fa-regular-400.woff2">'
            '<script async="async" src="a.js"></script><script src="b.js"></script></head>'
            '<body><script src="c.js"></script></body></html>')
    out = site.slim_html(page, "const DOCUMENTATION_OPTIONS = {};")
    assert "fontawesome/6.5.2/js" not in out and "a.woff2" in out
    assert '<script>const DOCUMENTATION_OPTIONS = {};</script>' in out
    assert '<script defer src="b.js">' in out and '<script async="async" src="a.js">' in out
    assert '<script src="c.js">' in out  # the body is left alone
    assert "fa-regular" not in out


def test_the_search_button_is_named_by_the_text_it_shows():
    button = ('<button class="btn search-button-field search-button__button" title="Search" '
              'aria-label="Search" data-bs-toggle="tooltip">\n <span>Search</span>'
              '<span class="search-button__kbd-shortcut"><kbd>Ctrl</kbd>+<kbd>K</kbd></span>')
    out = site.name_search_button(f"<div>{button}</div><button aria-label=\"Search\">")
    assert 'aria-label="Search"' not in out.split("</div>")[0] and 'title="Search"' in out
    assert out.endswith('<button aria-label="Search">'), "other buttons are left alone"


def test_slider_figure_has_a_description():
    frames = {"2": {"s": ([1, 2], [1.0, 0.1])}, "3": {"s": ([1, 2, 3], [1.0, 0.5, 0.01])}}
    fig = interactive.slider_figure(frames, title="Norms", x_title="layer", y_title="norm",
                                    slider_label="depth: ")
    html = interactive.to_html(fig)
    assert "Interactive figure: Norms" in html and "<figcaption" in html
    fig = interactive.slider_figure(frames, title="t", x_title="x", y_title="y",
                                    slider_label="d", description="Custom words.")
    assert "Custom words." in interactive.to_html(fig)


def test_the_partial_plotly_bundle_matches_the_installed_plotly():
    # Replaces the old check that plotly.js went into the head of pages with a figure: now no
    # page loads it up front, and the site serves the vendored partial bundle when it matches.
    from plotly.offline import get_plotlyjs_version

    assert site.plotly_js_path() == site.PLOTLY_BASIC, (
        f"update {site.PLOTLY_BASIC.name} to plotly.js-basic-dist-min@{get_plotlyjs_version()}")
    assert f"v{get_plotlyjs_version()}" in site.PLOTLY_BASIC.read_text(encoding="utf-8")[:300]


def test_figure_descriptions_come_from_the_figure():
    import matplotlib.pyplot as plt
    from gradpath.plots import describe, figure_description, plot_gradient_norms_by_layer

    ax = plot_gradient_norms_by_layer({"depth 5": [1e-3, 1e-2, float("inf")]})
    text = figure_description(ax.figure)
    assert "Gradient norm by layer" in text and "depth 5" in text and "log scale" in text
    assert "\\" not in text and "$" not in text
    describe(ax, "Norms grow toward the output.")
    assert figure_description(ax.figure) == "Norms grow toward the output."
    with pytest.raises(ValueError, match="empty"):
        describe(ax, " ")
    plt.close("all")
