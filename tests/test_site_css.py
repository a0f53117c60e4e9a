"""The site's style sheets: one render-blocking request per page, and every sheet still applied.

:func:`gradpath.book.site.bundle_page_css` concatenates a page's style sheets into one bundle at
build time (the mobile first paint waited for 15 sheets), with Font Awesome's sheet and fonts cut
to the site's icons (:func:`gradpath.book.site.subset_icon_fonts`). The unit tests check the
rewriting on small sheets; the built-site tests (marker ``browser``, need ``make book``) check
every page's ``<head>`` and, in Chromium with other hosts blocked, that a chapter looks exactly as
it does with its original sheets: the computed style of every element, in light and dark mode and
at phone width.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from gradpath.book import site, sitebench

SITE = ROOT / "_build" / "html"
CHAPTER = "chapters/04-gradient-clipping.html"

HEAD = """<html><head>
  <link href="../_static/styles/theme.css?digest=1" rel="stylesheet" />
  <link href="../_static/vendor/fontawesome/6.5.2/css/all.min.css?digest=1" rel="stylesheet" />
    <link rel="stylesheet" type="text/css" href="../_static/a.css?v=2" />
  <script defer src="../_static/x.js"></script>
    <link rel="stylesheet" type="text/css" href="../_static/math/m.css" />
</head><body><link rel="stylesheet" href="../_static/a.css" /></body></html>"""


def _static(tmp_path: Path) -> Path:
    static = tmp_path / "_static"
    (static / "styles").mkdir(parents=True)
    (static / "math").mkdir()
    (static / "vendor/fontawesome/6.5.2/css").mkdir(parents=True)
    (static / "basic.css").write_text("/* basic */ div.x { background: url(file.png) }\n")
    (static / "styles" / "theme.css").write_text('@import "../basic.css";\n')
    (static / "vendor/fontawesome/6.5.2/css/all.min.css").write_text(
        ".fa{font-family:F}@font-face{src:url(../webfonts/fa.woff2)}")
    (static / "a.css").write_text(
        '@charset "UTF-8";\n.a { content: "url(x.png)" } '
        ".b { background: url(\"data:image/svg+xml;charset=utf-8,%3Csvg fill='url(%23g)'\") }")
    (static / "math" / "m.css").write_text(
        "@font-face { src: url('./M.woff?v=1#x') } .c { mask: url(#clip) }")
    (tmp_path / "chapters").mkdir()
    return static


def test_bundle_css_inlines_imports_and_rewrites_relative_urls(tmp_path):
    static = _static(tmp_path)
    assert site.bundle_css(static / "styles" / "theme.css", static) == \
        "div.x { background: url(file.png) }"
    assert site.bundle_css(static / "math" / "m.css", static) == \
        "@font-face { src: url('math/M.woff?v=1#x') } .c { mask: url(#clip) }"
    text = site.bundle_css(static / "a.css", static)
    assert "@charset" not in text and 'content: "url(x.png)"' in text
    assert "fill='url(%23g)'" in text  # a data: URI is left alone
    (static / "loop.css").write_text('@import "loop.css";')
    with pytest.raises(ValueError, match="loop.css"):
        site.bundle_css(static / "loop.css", static)


def test_bundle_page_css_leaves_one_blocking_sheet_in_order_and_is_idempotent(tmp_path):
    static = _static(tmp_path)
    page_path = tmp_path / "chapters" / "p.html"
    (static / "vendor/fontawesome/6.5.2/css" / site.ICON_CSS).write_text(".fa-bars{x:y}")
    bundles: dict[tuple[str, ...], str] = {}
    out = site.bundle_page_css(HEAD, page_path, static, bundles)
    head, body = out.split("</head>")
    assert body == HEAD.split("</head>")[1]  # the body is not touched
    blocking = _blocking_sheets(head)
    assert len(blocking) == 1
    (name,) = bundles.values()
    assert f'href="../_static/{name}"' in blocking[0]
    bundle = (static / name).read_text()
    assert bundle.startswith('@charset "UTF-8";') and bundle.count("@charset") == 1
    # in the page's order; Font Awesome as its icons-only sheet
    assert bundle.index("div.x") < bundle.index(".fa-bars") < bundle.index(".a {") \
        < bundle.index("math/M.woff")
    assert ".fa{font-family:F}" not in bundle  # the full Font Awesome sheet is not
    # A second build's pass (Sphinx leaves unchanged pages as they were) bundles the same
    # sheets again from their current text.
    (static / "a.css").write_text(".a { color: red }")
    again = site.bundle_page_css(out, page_path, static, {})
    new = re.search(r'href="\.\./_static/(gradpath-site\.[0-9a-f]+\.css)"', again)
    assert new and new.group(1) != name and len(_blocking_sheets(again.split("</head>")[0])) == 1
    assert ".a { color: red }" in (static / new.group(1)).read_text()


def test_bundle_page_css_leaves_a_page_it_cannot_bundle_as_it_is(tmp_path):
    static = _static(tmp_path)
    page_path = tmp_path / "chapters" / "p.html"
    for head in (HEAD.replace("../_static/a.css?v=2", "https://example.org/a.css"),
                 HEAD.replace("../_static/a.css?v=2", "../_static/missing.css"),
                 HEAD.replace('href="../_static/math/m.css"',
                              'href="../_static/math/m.css" media="screen"')):
        assert site.bundle_page_css(head, page_path, static, {}) == head


# ----------------------------------------------------------------------------- the built site

def _pages() -> list[Path]:
    return [p for p in sorted(SITE.rglob("*.html")) if "_static" not in p.relative_to(SITE).parts]


def _blocking_sheets(head: str) -> list[str]:
    return [t for t in re.findall(r"<link\b[^>]*>", head) if 'rel="stylesheet"' in t]


@pytest.mark.browser
def test_every_page_has_one_render_blocking_style_sheet_with_all_its_sheets():
    pages = _pages()
    assert pages, "the site is not built: run `make book` first"
    for page in pages:
        head = page.read_text(encoding="utf-8").split("</head>")[0]
        if 'rel="stylesheet"' not in head:
            continue  # index.html: a redirect
        blocking = _blocking_sheets(head)
        assert len(blocking) == 1, f"{page.name}: {len(blocking)} render-blocking sheets"
        sheets = re.search(r'data-gradpath-sheets="([^"]*)"', blocking[0])
        href = re.search(r'href="([^"]*)"', blocking[0])
        assert sheets and href, blocking[0]
        bundle = (page.parent / href.group(1)).resolve()
        text = bundle.read_text(encoding="utf-8")
        for name in sheets.group(1).split():
            assert (SITE / "_static" / name).is_file(), name
            assert f"/* {name} */" in text, f"{bundle.name} lacks {name}"
        assert "@import" not in text
        for reference in re.findall(r"url\(\s*['\"]?([^'\")]+)", text):
            if not re.match(r"(data:|#|%23|[a-z]+:)", reference):
                target = bundle.parent / reference.split("?")[0].split("#")[0]
                assert target.is_file(), f"{bundle.name}: url({reference}) is missing"
        if "chapters/" in page.as_posix():
            assert "styles/pydata-sphinx-theme.css" in sheets.group(1)
            assert "gradpath.css" in sheets.group(1) and "learning.css" in sheets.group(1)
            assert "vendor/fontawesome/6.5.2/css/all.min.css" in sheets.group(1)
            assert "gradpath-fa-solid-900.woff" in text and ".fa-bars:before" in text
            assert ".fa-anchor:before" not in text  # an icon the site does not draw


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not (SITE / "intro.html").exists():
        pytest.fail("the site is not built: run `make book` first (make test does)")
    with sitebench.serve(SITE) as httpd:
        yield httpd.url


@pytest.fixture(scope="module")
def browser(chromium):
    """The session's shared Chromium (tests/conftest.py): a second Playwright in the same process
    would fail ("Sync API inside the asyncio loop")."""
    return chromium


def _unbundled(page_html: str) -> str:
    """The page as it was before bundling: each sheet linked on its own, in order, blocking."""
    def expand(match: re.Match[str]) -> str:
        prefix = match.group(1)
        return "".join(f'<link rel="stylesheet" type="text/css" href="{prefix}{name}" />\n'
                       for name in match.group(2).split())
    head, body = page_html.split("</head>", 1)
    head = re.sub(r'<link rel="stylesheet" type="text/css" href="([^"]*_static/)'
                  r'gradpath-site\.[0-9a-f]+\.css" data-gradpath-sheets="([^"]*)" />\n?',
                  expand, head)
    return head + "</head>" + body


_STYLES = """() => {
  const props = ['display', 'position', 'color', 'background-color', 'font-family', 'font-size',
    'font-weight', 'margin-top', 'margin-left', 'padding-top', 'padding-left', 'width',
    'border-top-width', 'border-top-color', 'visibility', 'line-height', 'text-align'];
  return Array.from(document.querySelectorAll('body *')).slice(0, 3000).map(e => {
    const s = getComputedStyle(e), b = getComputedStyle(e, '::before');
    return e.tagName + '.' + e.className + ' ' + props.map(p => s.getPropertyValue(p)).join('|')
      + ' ::before ' + b.getPropertyValue('content') + '|' + b.getPropertyValue('font-family');
  });
}"""


@pytest.mark.browser
@pytest.mark.parametrize("config", [
    {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
    {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"},
    {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
], ids=["light", "dark", "phone"])
def test_a_chapter_looks_as_it_did_with_its_separate_style_sheets(server, browser, config):
    original = _unbundled((SITE / CHAPTER).read_text(encoding="utf-8"))
    assert "gradpath-site." not in original and original.count('rel="stylesheet"') > 10
    styles = []
    for rewrite in (False, True):
        context = browser.new_context(**config)
        page = context.new_page()
        failed: list[str] = []
        page.on("response", lambda r, failed=failed: failed.append(r.url) if r.status >= 400
                else None)
        page.route(lambda url: not url.startswith(server), lambda route: route.abort())
        if rewrite:
            page.route(f"{server}/{CHAPTER}", lambda route: route.fulfill(
                status=200, content_type="text/html; charset=utf-8", body=original))
        page.goto(f"{server}/{CHAPTER}", wait_until="load")
        page.wait_for_function("document.fonts.status === 'loaded' && Array.from("
                               "document.styleSheets).every(s => s.media.mediaText !== 'print')")
        assert not failed, failed
        # the theme fades colours in when it sets dark mode: compare where they end
        page.add_style_tag(content="*, *::before, *::after { transition: none !important; "
                                   "animation: none !important }")
        page.wait_for_timeout(200)
        styles.append(page.evaluate(_STYLES))
        context.close()
    bundled, separate = styles
    assert len(bundled) == len(separate) > 500
    differ = [(a, b) for a, b in zip(bundled, separate, strict=True) if a != b]
    assert not differ, f"{len(differ)} elements styled differently, e.g. {differ[:3]}"


# ----------------------------------------------------------------------------- icon fonts

def _fontawesome() -> Path:
    theme = pytest.importorskip("pydata_sphinx_theme")
    found = sorted(Path(theme.__file__).parent.rglob("fontawesome/*/webfonts/fa-solid-900.ttf"))
    if not found:
        pytest.skip("the theme ships no Font Awesome fonts")
    return found[0].parent


def _cmap(path: Path) -> set[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path)) as font:
        return set(font.getBestCmap())


def test_icon_fonts_are_cut_to_the_icons_the_site_names(tmp_path):
    fonts = tmp_path / "_static" / "vendor" / "fontawesome" / "6.5.2"
    (fonts / "css").mkdir(parents=True)
    shutil.copytree(_fontawesome(), fonts / "webfonts")
    face = ('@font-face{{font-display:block;font-family:"F";font-weight:{w};src:url(../webfonts/'
            '{f}.woff2) format("woff2"),url(../webfonts/{f}.ttf) format("truetype")}}')
    (fonts / "css" / "all.min.css").write_text(
        face.format(w=900, f="fa-solid-900") + face.format(w=400, f="fa-brands-400")
        + '.fa-bars:before,.fa-navicon:before{content:"\\f0c9"}'
        + '.fa-anchor:before{content:"\\f13d"}.fa-github:before{content:"\\f09b"}')
    (tmp_path / "_static" / "theme.css").write_text('.x:before{content:"\uf058"}')
    (tmp_path / "page.html").write_text('<i class="fa-solid fa-navicon"></i><i class="fa-github">')
    original_css = (fonts / "css" / "all.min.css").read_text()
    assert site.subset_icon_fonts(tmp_path) == 3
    assert (fonts / "css" / "all.min.css").read_text() == original_css
    css = (fonts / "css" / site.ICON_CSS).read_text()
    assert "woff2" not in css and ".fa-bars:before" in css and ".fa-anchor" not in css
    assert 'url(../webfonts/gradpath-fa-solid-900.woff) format("woff")' in css
    solid = fonts / "webfonts" / "gradpath-fa-solid-900.woff"
    original = fonts / "webfonts" / "fa-solid-900.woff2"
    assert solid.stat().st_size < 10_000 < original.stat().st_size
    assert {0xF0C9, 0xF058} <= _cmap(solid) and 0xF13D not in _cmap(solid)
    assert 0xF09B in _cmap(fonts / "webfonts" / "gradpath-fa-brands-400.woff")
    assert site.subset_icon_fonts(tmp_path) == 3  # a second build's pass changes nothing
    assert (fonts / "css" / site.ICON_CSS).read_text() == css


@pytest.mark.browser
def test_the_built_site_draws_every_icon_it_names_from_the_subset_fonts():
    css_files = sorted((SITE / "_static" / "vendor" / "fontawesome").glob(f"*/css/{site.ICON_CSS}"))
    assert css_files, "the site is not built: run `make book` first"
    css = css_files[0].read_text(encoding="utf-8")
    assert ".woff2" not in re.sub(r"fa-v4compatibility\.woff2", "", css)
    webfonts = css_files[0].parent.parent / "webfonts"
    covered = set().union(*(_cmap(webfonts / f"gradpath-{stem}.woff")
                            for stem in ("fa-solid-900", "fa-regular-400", "fa-brands-400")))
    page = (SITE / CHAPTER).read_text(encoding="utf-8")
    names = set(re.findall(r'class="[^"]*\b(fa-[a-z0-9-]+)', page)) - {
        "fa-solid", "fa-regular", "fa-brands", "fa-lg", "fa-fw"}
    assert {"fa-bars", "fa-github"} <= names
    for name in names:
        rule = re.search(r"\." + re.escape(name) + r':before[^{]*\{content:"\\([0-9a-f]+)"', css)
        if rule:
            assert int(rule.group(1), 16) in covered, f"{name} is not in the subset fonts"
