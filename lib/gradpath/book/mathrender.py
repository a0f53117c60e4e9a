"""Typeset the book's math once, when the site is built, instead of in every reader's browser.

A Sphinx extension (``_config.yml`` → ``sphinx.extra_extensions``). After the HTML is written it
hands every formula of every page (Sphinx's ``<span class="math">\\(...\\)</span>`` and
``<div class="math">\\[...\\]</div>``) to MathJax 3 running in Node (``node/prerender-math.cjs``,
with ``mathjax-full`` from the npm registry, installed once into ``.sitetools/`` by
``make math-tools``), and writes the result into the page:

* each formula becomes the CHTML that MathJax's ``tex-chtml.js`` would have produced in the
  browser, with the same fonts, and with MathJax's assistive MathML beside it
  (``<mjx-assistive-mml>``), so screen readers read the math as before;
* the CHTML style sheet for all formulas goes to ``_static/gradpath-math/math.css`` with
  MathJax's web fonts beside it;
* MathJax itself is no longer loaded by the page. Quizzes and flashcards build their questions
  in the browser, so a page that has them keeps MathJax's address in
  ``<script type="application/json" id="gradpath-mathjax">`` and ``static/gradpath.js`` loads
  it when a quiz or deck comes near the screen.

The reader gets the same math without 1.1 MB of JavaScript typesetting every formula on the
phone (the main cost of a chapter page under Lighthouse), and without the page shifting when
the formulas are typeset. A TeX error is reported as a Sphinx warning with the page and the
formula (the book builds with ``-W``, so it fails the build).

Without Node or ``mathjax-full`` the pages are left as Sphinx wrote them (MathJax typesets in
the browser, as before) and the build says so; ``make book`` installs both.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MATHJAX_VERSION", "MODULES_ENV", "RUNTIME_ID", "STYLE_DIR", "Formula",
           "find_formulas", "mathjax_modules", "typeset", "render_page", "prerender_site",
           "setup"]

MATHJAX_VERSION = "3.2.2"                  # the mathjax-full the Makefile installs
MODULES_ENV = "GRADPATH_MATHJAX_MODULES"   # a node_modules folder holding mathjax-full
DEFAULT_MODULES = Path(".sitetools") / "node_modules"
SCRIPT = Path(__file__).parent / "node" / "prerender-math.cjs"
STYLE_DIR = "gradpath-math"                # under _static/: math.css and the fonts
RUNTIME_ID = "gradpath-mathjax"            # the JSON script that tells gradpath.js where MathJax is
# The page's own font is about 1.195 times MathJax's x-height (what tex-chtml.js measures with
# the theme's sans-serif font and writes as font-size: 119.5% on every formula).
SCALE = 1.195
# Markup that builds math in the browser (jupyterquiz questions, jupytercards decks).
RUNTIME_MARKERS = ("data-shufflequestions", "flip-container")

_MATH = re.compile(r'<(span|div) class="math notranslate nohighlight"([^>]*)>(.*?)</\1>', re.S)
_CONFIG_SCRIPT = re.compile(r'\s*<script(?: type="module")?>\s*window\.MathJax\s*=\s*(\{.*?\})\s*'
                            r'</script>', re.S)
_MATHJAX_SCRIPT = re.compile(r'\s*<script\b[^>]*\bsrc="([^"]*mathjax/tex-chtml\.js[^"]*)"[^>]*>'
                             r'\s*</script>')


@dataclass(frozen=True)
class Formula:
    """One formula of a page: where its TeX sits in the HTML and how it is displayed."""

    start: int      # offsets of the element's content (the delimited TeX) in the page
    end: int
    tex: str        # without delimiters, HTML entities decoded
    display: bool


def _strip(content: str, tag: str) -> tuple[str, bool] | None:
    text = html.unescape(content).strip()
    if tag == "span" and text.startswith("\\(") and text.endswith("\\)"):
        return text[2:-2], False
    if tag == "div" and text.startswith("\\[") and text.endswith("\\]"):
        return text[2:-2], True
    if tag == "div" and text.startswith("\\begin{") and text.endswith("}"):
        return text, True   # an amsmath environment written out without \[ \]
    return None


def find_formulas(page: str) -> tuple[list[Formula], int]:
    """The page's Sphinx math elements whose content is one delimited formula, and how many
    math elements are left to the browser (markup inside, or delimiters this does not know)."""
    found, left = [], 0
    end_of_head = page.find("</head>")
    for match in _MATH.finditer(page, max(end_of_head, 0)):
        content = match.group(3)
        if content.lstrip().startswith("<mjx-container"):
            continue                        # typeset already
        parsed = None if "<" in content else _strip(content, match.group(1))
        if parsed is None:
            left += 1
            continue
        found.append(Formula(match.start(3), match.end(3), parsed[0], parsed[1]))
    return found, left


def mathjax_modules(srcdir: str | Path = ".") -> Path | None:
    """The ``node_modules`` folder with ``mathjax-full`` (``$GRADPATH_MATHJAX_MODULES``, else
    ``.sitetools/node_modules`` in the book's folder), or ``None`` when it or Node is missing."""
    configured = os.environ.get(MODULES_ENV)
    folder = Path(configured) if configured else Path(srcdir) / DEFAULT_MODULES
    if shutil.which("node") is None or not (folder / "mathjax-full" / "package.json").is_file():
        return None
    return folder.resolve()


def typeset(items: Iterable[tuple[str, bool]], modules: str | Path, font_url: str = ".",
            timeout: float = 600.0) -> tuple[list[str | None], list[str | None], str]:
    """CHTML for each ``(tex, display)``: ``(html, errors, css)``, one run of MathJax in Node.

    ``html[i]`` is the ``<mjx-container>`` (``None`` where ``errors[i]`` says why TeX failed);
    ``css`` is the style sheet for all of them, its fonts at ``font_url``.

    Raises:
        RuntimeError: if Node fails (its error output is in the message).
    """
    items = list(items)
    request = {"modules": str(modules), "fontURL": font_url, "scale": SCALE,
               "items": [{"tex": tex, "display": display} for tex, display in items]}
    done = subprocess.run(["node", str(SCRIPT)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"MathJax (node {SCRIPT.name}) failed: {done.stderr[-2000:]}")
    answer = json.loads(done.stdout)
    if answer.get("version") != MATHJAX_VERSION:
        raise RuntimeError(f"mathjax-full {answer.get('version')} is installed in {modules}; "
                           f"the book is typeset with {MATHJAX_VERSION} (run `make math-tools`)")
    return answer["html"], answer["errors"], answer["css"]


def render_page(page: str, rendered: dict[tuple[str, bool], str], static_prefix: str) -> str:
    """``page`` with every formula found by :func:`find_formulas` replaced by its CHTML from
    ``rendered``, the math style sheet linked, and MathJax loaded only on demand (see the
    module docstring). ``static_prefix`` is the page's relative path to ``_static/``."""
    found, left = find_formulas(page)
    formulas = [f for f in found if (f.tex, f.display) in rendered]
    left += len(found) - len(formulas)      # a TeX error: the browser's MathJax shows it
    out, last = [], 0
    for f in formulas:
        out.append(page[last:f.start])
        out.append(rendered[(f.tex, f.display)])
        last = f.end
    out.append(page[last:])
    page = "".join(out)
    end = page.find("</head>")
    if end < 0:
        return page
    head, body = page[:end], page[end:]
    config_match = _CONFIG_SCRIPT.search(head)
    script_match = _MATHJAX_SCRIPT.search(head)
    if script_match and left == 0:
        config: dict[str, Any] = {}
        if config_match:
            try:
                config = json.loads(config_match.group(1))
            except ValueError:
                config = {}
        src = script_match.group(1)
        head = _MATHJAX_SCRIPT.sub("", head)
        head = _CONFIG_SCRIPT.sub("", head)
        if any(marker in body for marker in RUNTIME_MARKERS):
            payload = json.dumps({"src": src, "config": config}).replace("</", "<\\/")
            head += (f'    <script type="application/json" id="{RUNTIME_ID}">{payload}'
                     "</script>\n")
    if formulas:
        head += (f'    <link rel="stylesheet" type="text/css" '
                 f'href="{static_prefix}{STYLE_DIR}/math.css" />\n')
    return head + body


def _pages(outdir: Path) -> list[Path]:
    return [p for p in sorted(outdir.rglob("*.html"))
            if p.name != "search.html" and "_static" not in p.relative_to(outdir).parts]


def prerender_site(outdir: str | Path, modules: str | Path) -> tuple[int, list[str]]:
    """Typeset every formula of the built site in ``outdir`` (see the module docstring).

    Returns:
        ``(formulas typeset, TeX errors)``; each error names the page and the formula, which
        is left for the browser's MathJax.
    """
    outdir, modules = Path(outdir), Path(modules)
    pages = {path: path.read_text(encoding="utf-8") for path in _pages(outdir)}
    where: dict[tuple[str, bool], str] = {}
    for path, text in pages.items():
        for formula in find_formulas(text)[0]:
            where.setdefault((formula.tex, formula.display), path.relative_to(outdir).as_posix())
    items = list(where)
    htmls, errors, css = typeset(items, modules, font_url=".")
    rendered, problems = {}, []
    for item, markup, error in zip(items, htmls, errors, strict=True):
        if markup is None:
            problems.append(f"{where[item]}: TeX error in {item[0]!r}: {error}")
        else:
            rendered[item] = markup
    style_dir = outdir / "_static" / STYLE_DIR
    style_dir.mkdir(parents=True, exist_ok=True)
    fonts = modules / "mathjax-full" / "es5" / "output" / "chtml" / "fonts" / "woff-v2"
    for font in fonts.glob("*.woff"):
        shutil.copyfile(font, style_dir / font.name)
    (style_dir / "math.css").write_text(css, encoding="utf-8")
    for path, text in pages.items():
        depth = len(path.relative_to(outdir).parts) - 1
        new = render_page(text, rendered, "../" * depth + "_static/")
        if new != text:
            path.write_text(new, encoding="utf-8")
    return len(rendered), problems


def _finish(app: Any, exception: Exception | None) -> None:
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    if exception is not None or app.builder.format != "html":
        return
    modules = mathjax_modules(app.srcdir)
    if modules is None:
        logger.info("gradpath: math is typeset in the browser (mathjax-full %s or node missing: "
                    "`make math-tools` installs it into .sitetools/)", MATHJAX_VERSION)
        return
    count, problems = prerender_site(app.outdir, modules)
    for problem in problems:
        logger.warning("%s", problem)
    logger.info("gradpath: %d formulas typeset at build time", count)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point. Runs after ``gradpath.book.site`` has finished the pages."""
    app.connect("build-finished", _finish, priority=800)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
