"""The book's math is typeset when the site is built (gradpath.book.mathrender), not by the reader.

Unit tests of the page rewriting need nothing; the MathJax-in-Node tests need ``make math-tools``
(skipped, saying so, without it); the tests marked ``browser`` check the built site (``make book``
first): every formula arrives typeset with MathML for screen readers, pages load no MathJax until
a quiz or flashcard deck comes near, and then the quiz math is typeset with no console error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import CHAPTERS, ROOT
from gradpath.book import mathrender, sitebench

SITE = ROOT / "_build" / "html"
CHAPTER_PAGES = [f"chapters/{p.stem}.html" for p in CHAPTERS]
MODULES = mathrender.mathjax_modules(ROOT)
needs_mathjax = pytest.mark.skipif(MODULES is None,
                                   reason="mathjax-full is not installed: run `make math-tools`")

HEAD = ('<html><head>\n<script type="module">window.MathJax = {"tex": {"inlineMath": '
        '[["\\\\(", "\\\\)"]]}}</script>\n'
        '<script defer="defer" src="../_static/mathjax/tex-chtml.js?v=1"></script>\n</head>')


# ----------------------------------------------------------------------------- page rewriting

def test_find_formulas_reads_sphinx_math_and_leaves_what_it_cannot_parse():
    page = (HEAD + '<body><p><span class="math notranslate nohighlight">\\(a &lt; b\\)</span> '
            '<div class="math notranslate nohighlight">\n\\[x &amp; y\\]</div>'
            '<div class="math notranslate nohighlight">\\begin{align}a\\end{align}</div>'
            '<span class="math notranslate nohighlight"><em>odd</em></span></p></body></html>')
    found, left = mathrender.find_formulas(page)
    assert [(f.tex, f.display) for f in found] == [
        ("a < b", False), ("x & y", True), ("\\begin{align}a\\end{align}", True)]
    assert left == 1
    assert page[found[0].start:found[0].end] == "\\(a &lt; b\\)"


def test_render_page_replaces_formulas_links_the_style_and_loads_mathjax_only_for_quizzes():
    body = '<body><span class="math notranslate nohighlight">\\(x\\)</span>{}</body></html>'
    rendered = {("x", False): "<mjx-container>X</mjx-container>"}
    plain = mathrender.render_page(HEAD + body.format(""), rendered, "../_static/")
    assert '<span class="math notranslate nohighlight"><mjx-container>X</mjx-container></span>' \
        in plain
    assert 'href="../_static/gradpath-math/math.css"' in plain
    assert "tex-chtml.js" not in plain and "window.MathJax" not in plain
    assert mathrender.RUNTIME_ID not in plain

    quiz = mathrender.render_page(HEAD + body.format('<div data-shufflequestions="x"></div>'),
                                  rendered, "../_static/")
    runtime = re.search(rf'<script type="application/json" id="{mathrender.RUNTIME_ID}">(.*?)'
                        "</script>", quiz)
    assert runtime and '"src": "../_static/mathjax/tex-chtml.js?v=1"' in runtime.group(1)
    assert '"inlineMath"' in runtime.group(1), "the page's MathJax configuration is kept"
    assert "<script defer" not in quiz.split("</head>")[0]


def test_render_page_keeps_mathjax_when_a_formula_is_left_to_the_browser():
    body = ('<body><span class="math notranslate nohighlight">\\(x\\)</span>'
            '<span class="math notranslate nohighlight">\\(y\\)</span></body></html>')
    page = mathrender.render_page(HEAD + body, {("x", False): "<mjx-container/>"}, "")
    assert "tex-chtml.js" in page and "\\(y\\)" in page


# ----------------------------------------------------------------------------- MathJax in Node

@needs_mathjax
def test_typeset_gives_chtml_with_mathml_for_screen_readers_and_reports_tex_errors():
    html, errors, css = mathrender.typeset(
        [("\\frac{\\partial L}{\\partial w}", False),
         ("\\begin{split}a&=b\\\\c&=d\\end{split}", True),
         ("\\frac{a}{", False), ("\\notamacro x", False)], MODULES)
    assert errors[:2] == [None, None]
    assert 'display="true"' in html[1] and 'display="true"' not in html[0]
    for markup in html[:2]:
        assert markup.startswith("<mjx-container") and 'aria-hidden="true"' in markup
        assert "<mjx-assistive-mml" in markup and "<math " in markup
    assert "<mfrac>" in html[0]
    assert html[2] is None and "brace" in errors[2].lower()
    assert html[3] is None and "notamacro" in errors[3]
    assert "@font-face" in css and "MathJax_Main-Regular.woff" in css


# ----------------------------------------------------------------------------- the built site

def _site_pages() -> list[Path]:
    return [p for p in sorted(SITE.rglob("*.html"))
            if p.name != "search.html" and "_static" not in p.relative_to(SITE).parts]


@pytest.mark.browser
def test_every_formula_of_the_site_arrives_typeset_with_mathml():
    pages = _site_pages()
    assert pages, "the site is not built: run `make book` first"
    assert (SITE / "_static" / mathrender.STYLE_DIR / "math.css").is_file()
    typeset = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        found, left = mathrender.find_formulas(text)
        assert not found and not left, f"{page.name}: {len(found) + left} formulas not typeset"
        head = text.split("</head>")[0]
        assert not re.search(r'<script[^>]*\bsrc="[^"]*tex-chtml', head), \
            f"{page.name} loads MathJax before it is needed"
        elements = re.findall(r'<(?:span|div) class="math notranslate nohighlight"[^>]*>'
                              r"(<mjx-container.*?</mjx-container>)", text, re.S)
        typeset += len(elements)
        assert all("<mjx-assistive-mml" in e and "<math " in e for e in elements), page.name
        if elements:
            assert f"{mathrender.STYLE_DIR}/math.css" in head
    assert typeset > 1000


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not (SITE / "intro.html").exists():
        pytest.fail("the site is not built: run `make book` first (make test does)")
    with sitebench.serve(SITE) as httpd:
        yield httpd.url


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium   # one per process (tests/conftest.py)


def _open(browser, server, path, **context_args):
    context = browser.new_context(**({"viewport": {"width": 1280, "height": 900}} | context_args))
    page = context.new_page()
    page.problems = []
    page.requested = []

    def route(r):
        url = r.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname == "127.0.0.1":
            page.requested.append(url)
            r.continue_()
        else:
            page.problems.append(f"request to another host: {url}")
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.problems.append(f"{r.status} {r.url}"))
    page.goto(f"{server}/{path}", wait_until="load")
    return page


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_chapter_math_is_there_without_mathjax_until_the_quiz_comes_near(browser, server, scheme):
    page = _open(browser, server, CHAPTER_PAGES[1], color_scheme=scheme,
                 viewport={"width": 390, "height": 844})
    try:
        page.wait_for_function("() => document.documentElement.dataset.gradpathMath === 'prose'",
                               timeout=20_000)
        assert not any("tex-chtml" in u for u in page.requested), "MathJax loaded at the start"
        shown = page.evaluate("""() => {
            const c = document.querySelector('.bd-article mjx-container');
            const glyph = c.querySelector('mjx-c');
            const text = getComputedStyle(c.closest('p, li, div')).color;
            return {w: c.getBoundingClientRect().width, colour: getComputedStyle(glyph).color,
                    text: text, font: getComputedStyle(glyph, '::before').fontFamily};
        }""")
        assert shown["w"] > 0 and shown["colour"] == shown["text"], shown
        assert "MJXTEX" in shown["font"] or "MJXZERO" in shown["font"], shown
        quiz = page.locator("[data-shufflequestions]").first
        quiz.scroll_into_view_if_needed()
        page.wait_for_function("() => document.documentElement.dataset.gradpathMath === "
                               "'typeset'", timeout=60_000)
        assert any("tex-chtml" in u for u in page.requested)
        assert page.locator(".Quiz mjx-container").count() > 0, "the quiz's math is typeset"
        leftovers = page.evaluate("""() => Array.from(document.querySelectorAll('.Quiz'))
            .map(q => q.innerText).join(' ')""")
        assert not re.findall(r"\\\(|\\frac|\$[^$\s]", leftovers), "quiz math left as TeX"
        page.wait_for_timeout(500)
        assert page.problems == []
    finally:
        page.context.close()
