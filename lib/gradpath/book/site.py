"""How the book build and gradpath talk to each other.

The book's Sphinx build loads this module as an extension (``_config.yml`` →
``sphinx.extra_extensions``). It:

1. sets ``GRADPATH_STATIC_BUILD=1`` in the build's environment, which the notebook kernels
   inherit, so gradpath leaves live-only widgets (ipywidgets explorers, tqdm bars) out of the
   static pages and no page needs require.js or a widget manager from a CDN;
2. adds the course's page assets from ``gradpath/book/static/`` to every page: ``gradpath.css``
   (display math that scrolls, quiz contrast and focus, dark mode) and ``gradpath.js`` (deferred:
   draws interactive figures lazily, makes quizzes accessible, explains "Live code" offline), and
   a ``<meta name="description">`` written from the page's text;
3. copies a partial plotly bundle (scatter traces, sliders: all the course's interactive figures
   use) to ``_static/`` — ``gradpath.js`` loads it only when a figure comes near the screen, so no
   page waits for plotly before it paints;
4. gives every notebook figure a text alternative: the description that
   :func:`gradpath.plots.describe` (or the course's automatic description) wrote into the PNG,
   and marks wide figures ``full-width`` so their labels stay readable;
5. after the build, slims each page's ``<head>``: the Font Awesome script (1.5 MB, render-blocking;
   the theme's Font Awesome CSS already draws the icons) is dropped, ``documentation_options.js``
   is inlined, and the other head scripts are deferred;
6. before the build reads its sources, forgets the cached execution of a notebook whose data
   files (a quiz or flashcard JSON its cells show) changed since it ran, so the page is executed
   again instead of showing the old questions (:func:`drop_stale_executions`);
7. last of all (after :mod:`gradpath.book.mathrender` has linked its ``math.css``), makes each
   page's style sheets one render-blocking request: they are concatenated, in order, into
   ``_static/gradpath-site.<hash>.css`` with their ``url()`` paths rewritten and ``@import``
   rules inlined (:func:`bundle_page_css`); Font Awesome's sheet and fonts are cut down to the
   icons the site uses first (:func:`subset_icon_fonts`: fonts 275 kB -> 6 kB). Fifteen
   blocking sheets and the icon fonts held a phone's first paint for seconds.
"""

from __future__ import annotations

import functools
import hashlib
import html
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

from gradpath.progress import STATIC_BUILD_ENV, is_static_build

__all__ = ["STATIC_BUILD_ENV", "is_static_build", "setup", "plotly_js_path", "slim_html",
           "page_description", "png_description", "PLOTLY_JS", "PLOTLY_MARKER", "SITE_META",
           "bundle_css", "bundle_page_css", "icons_in_use", "subset_icon_fonts", "ICON_CSS"]

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = Path(__file__).parent / "vendor"
PLOTLY_JS = "gradpath-plotly.min.js"       # the name gradpath.js loads from _static/
PLOTLY_BASIC = VENDOR_DIR / "plotly-basic.min.js"
PLOTLY_MARKER = "gradpath-interactive"
SITE_META = "gradpath-site"                # tells a figure that the site's script draws it
PNG_DESCRIPTION_KEY = "Description"        # the PNG text chunk gradpath.plots writes
WIDE_FIGURE_PX = 820                       # wider PNGs are shown full-width on wide screens
DESCRIPTION_CHARS = 155


def _bundle_version(path: Path) -> str | None:
    head = path.read_text(encoding="utf-8", errors="replace")[:400]
    match = re.search(r"plotly\.js[^\n]*?v(\d+\.\d+\.\d+)", head)
    return match.group(1) if match else None


def plotly_js_path() -> Path:
    """The plotly.js the site serves: the vendored partial bundle (``plotly-basic``: scatter
    traces, sliders, legends, log axes) when its version is the one the installed ``plotly``
    package writes figures for, else the package's full bundle (4.8 MB) with a warning."""
    import plotly
    from plotly.offline import get_plotlyjs_version

    wanted = get_plotlyjs_version()
    if PLOTLY_BASIC.is_file() and _bundle_version(PLOTLY_BASIC) == wanted:
        return PLOTLY_BASIC
    warnings.warn(f"the vendored plotly-basic bundle is v{_bundle_version(PLOTLY_BASIC)}, but "
                  f"plotly {plotly.__version__} writes figures for plotly.js v{wanted}: serving "
                  f"the full bundle. Update {PLOTLY_BASIC} from the npm package "
                  f"plotly.js-basic-dist-min@{wanted}.", stacklevel=2)
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.exists():  # pragma: no cover - depends on the plotly wheel
        raise FileNotFoundError(f"plotly.js not found at {path}")
    return path


# ----------------------------------------------------------------------------- page metadata

def _text_of(node: Any) -> str:
    return re.sub(r"\s+", " ", node.astext()).strip()


def page_description(doctree: Any, title: str = "", site: str = "Gradient Flow") -> str:
    """A one-sentence summary for ``<meta name="description">``: the page title, then the first
    paragraph of real prose (at least 60 characters), cut at a word near 155 characters."""
    from docutils import nodes

    prose = ""
    if doctree is not None:
        for para in doctree.findall(nodes.paragraph):
            if any(isinstance(a, (nodes.list_item, nodes.footnote, nodes.citation, nodes.table,
                                  nodes.admonition, nodes.caption)) for a in _ancestors(para)):
                continue
            if _in_output(para):
                continue
            text = _prose_text(para)
            if len(text) >= 60:
                prose = text
                break
    title = re.sub(r"<[^>]+>", "", title or "").strip()
    lead = f"{title}: " if title and title != site else f"{site}: "
    text = lead + prose if prose else lead.rstrip(": ")
    if len(text) > DESCRIPTION_CHARS:
        text = text[:DESCRIPTION_CHARS].rsplit(" ", 1)[0].rstrip(",;:—-") + "…"
    return text


def _prose_text(para: Any) -> str:
    """A paragraph's text without its footnote and citation markers, its math as plain text."""
    from docutils import nodes

    from gradpath.plots import tex_to_text

    skip = (nodes.footnote_reference, nodes.citation_reference, nodes.substitution_reference,
            nodes.math)
    words = []
    for node in para.findall(lambda n: isinstance(n, (nodes.Text, nodes.math))):
        if any(isinstance(a, skip) for a in _ancestors(node)):
            continue
        words.append(tex_to_text(node.astext()) if isinstance(node, nodes.math) else str(node))
    text = re.sub(r"\s+", " ", "".join(words)).strip()
    return re.sub(r"\s+([,.;:])", r"\1", text)


def _ancestors(node: Any) -> list[Any]:
    found = []
    parent = node.parent
    while parent is not None:
        found.append(parent)
        parent = parent.parent
    return found


def _in_output(node: Any) -> bool:
    return any("cell_output" in (getattr(a, "get", lambda *_: [])("classes") or [])
               for a in _ancestors(node))


def _page_context(app: Any, pagename: str, templatename: str, context: dict,
                  doctree: Any) -> None:
    tags = [f'<meta name="{SITE_META}" content="1" />']
    metatags = context.get("metatags", "")
    if 'name="description"' not in metatags:
        description = page_description(doctree, context.get("title", ""))
        tags.append(f'<meta name="description" content="{html.escape(description)}" />')
    context["metatags"] = metatags + "\n" + "\n".join(tags) + "\n"


def _drop_duplicate_scripts(app: Any, pagename: str, templatename: str, context: dict,
                            doctree: Any) -> None:
    # sphinx-thebe registers its inline configuration script twice under Jupyter Book, and the
    # second copy fails with "Identifier 'THEBE_JS_URL' has already been declared".
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""),  # None and "" both mean inline
               repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


# ----------------------------------------------------------------------------- execution cache

# A quoted relative path to a course data file in a code cell, e.g. show_quiz("quizzes/x.json").
_DATA_FILE = re.compile(r"""["']([\w./-]+\.(?:json|ya?ml|csv|bib))["']""")


def data_files(notebook: Path, course_root: Path) -> list[Path]:
    """The course data files a notebook's code cells name, e.g. ``quizzes/01-chain-rule.json``.

    A name is found as :func:`gradpath.book.quiz.locate` finds it when the notebook runs in the
    book build: next to the notebook (its working directory), else in ``chapters/`` of the
    course. Names that match no file are left out.
    """
    import nbformat

    found: list[Path] = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for name in _DATA_FILE.findall(cell.source):
            for folder in (notebook.parent, course_root / "chapters"):
                if (folder / name).is_file() and (folder / name) not in found:
                    found.append(folder / name)
                    break
    return found


def drop_stale_executions(cache_path: Path, notebooks: dict[str, Path],
                          course_root: Path) -> list[str]:
    """Forget the cached execution of each notebook whose data files changed since it ran.

    MyST-NB's execution cache (jupyter-cache) matches a notebook by its code cells alone, so a
    page whose cell shows ``quizzes/exam.json`` would keep the old questions after the JSON is
    edited. Each notebook's matching cache record is removed when one of its :func:`data_files`
    was modified after the record was created; the build then executes the notebook again.

    Args:
        cache_path: the jupyter-cache folder (``_build/.jupyter_cache``); nothing happens if it
            holds no cache yet.
        notebooks: ``{name: path}`` of the notebooks to check (Sphinx docnames in the build).
        course_root: the course's folder (holding ``chapters/``).

    Returns:
        The names of the notebooks whose record was removed (they must be read again).
    """
    from datetime import timezone

    import nbformat

    if not (Path(cache_path) / "global.db").is_file():
        return []
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_path))
    stale = []
    for name, path in notebooks.items():
        try:
            record = cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:       # not cached: the build executes it anyway
            continue
        created = record.created
        if created.tzinfo is None:            # jupyter-cache stores UTC without the zone
            created = created.replace(tzinfo=timezone.utc)
        if any(f.stat().st_mtime > created.timestamp() for f in data_files(path, course_root)):
            cache.remove_cache(record.pk)
            stale.append(name)
    return stale


def _reexecute_for_changed_data(app: Any, env: Any, added: set[str], changed: set[str],
                                removed: set[str]) -> list[str]:
    """Sphinx ``env-get-outdated``: re-read (so re-execute) notebooks whose data changed."""
    config = getattr(env, "mystnb_config", None)
    if config is None or config.execution_mode != "cache" or not config.execution_cache_path:
        return []
    notebooks = {doc: Path(env.doc2path(doc)) for doc in env.found_docs - removed}
    notebooks = {doc: path for doc, path in notebooks.items() if path.suffix == ".ipynb"}
    return drop_stale_executions(Path(config.execution_cache_path), notebooks, Path(app.srcdir))


# ----------------------------------------------------------------------------- figures

def png_description(path: str | Path) -> str | None:
    """The description stored in a PNG's ``Description`` text chunk, or ``None``."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            text = getattr(image, "text", {}) or {}
            value = text.get(PNG_DESCRIPTION_KEY)
            return str(value).strip() or None if value else None
    except (OSError, ValueError):
        return None


def _png_width(path: str | Path) -> int:
    try:
        from PIL import Image

        with Image.open(path) as image:
            return int(image.size[0])
    except (OSError, ValueError):
        return 0


def _section_title(node: Any) -> str:
    from docutils import nodes

    for ancestor in _ancestors(node):
        if isinstance(ancestor, nodes.section) and ancestor.children:
            first = ancestor.children[0]
            if isinstance(first, nodes.title):
                return _text_of(first)
    return ""


def _describe_images(app: Any, doctree: Any, docname: str) -> None:
    from docutils import nodes

    for image in doctree.findall(nodes.image):
        uri = str(image.get("uri", ""))
        if not uri.lower().endswith(".png") or "://" in uri:
            continue
        # By now Sphinx has resolved the URI relative to the source directory.
        path = Path(app.srcdir) / str(image.get("candidates", {}).get("*", uri))
        if not path.is_file():
            path = Path(app.env.relfn2path(uri, docname)[1])
        if not image.get("alt") or image["alt"] == uri:
            described = png_description(path)
            section = _section_title(image)
            image["alt"] = described or (f"Figure in the section “{section}”" if section
                                         else "Figure")
        if _png_width(path) > WIDE_FIGURE_PX:
            for ancestor in _ancestors(image):
                if isinstance(ancestor, nodes.container) and \
                        "cell_output" in ancestor.get("classes", []):
                    if "full-width" not in ancestor["classes"]:
                        ancestor["classes"].append("full-width")
                    break


# ----------------------------------------------------------------------------- page <head>

_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>\s*</script>", re.IGNORECASE)
_FONTAWESOME_JS = re.compile(
    r"\s*<script\b[^>]*src=\"[^\"]*vendor/fontawesome/[^\"]*/js/[^\"]*\"[^>]*>\s*</script>",
    re.IGNORECASE)
# Font Awesome's font preloads: "regular" no icon of the book uses; "solid" and "brands" (270 kB)
# would compete with the style sheets for a phone's first seconds of bandwidth, and the icons'
# style sheet loads them anyway when an icon is drawn.
_FONTAWESOME_PRELOAD = re.compile(
    r"\s*<link\b[^>]*rel=\"preload\"[^>]*href=\"[^\"]*vendor/fontawesome/[^\"]*"
    r"fa-(?:regular|solid|brands)-\d+[^\"]*\"[^>]*/?>", re.IGNORECASE)
_NOTEBOOK_IMAGE = re.compile(r"<img\b(?![^>]*\bwidth=)([^>]*\bsrc=\"([^\"]*_images/[^\"]+\.png)\")",
                             re.IGNORECASE)


def slim_html(page: str, documentation_options: str | None = None) -> str:
    """Make a built page's ``<head>`` stop blocking the first paint.

    Removes the Font Awesome script (the theme's Font Awesome CSS draws the same icons) and the
    preloads of its fonts (the icons' style sheet loads them when an icon is drawn), inlines
    ``documentation_options.js`` when its text is given (a later inline script in the head reads
    it, so it cannot be deferred), adds ``defer`` to every other external script in the head
    that has neither ``async`` nor ``defer``, and makes the inline MathJax configuration run in
    order with them (``type="module"``). Deferred scripts still run in their order, after the
    page is parsed. The body is left as it is.
    """
    end = page.find("</head>")
    if end < 0:
        return page
    head, body = page[:end], page[end:]
    head = _FONTAWESOME_JS.sub("", head)
    head = _FONTAWESOME_PRELOAD.sub("", head)

    def rewrite(match: re.Match[str]) -> str:
        attributes = match.group(1)
        src = re.search(r"\bsrc=\"([^\"]*)\"", attributes)
        if not src:
            return match.group(0)
        if documentation_options is not None and "documentation_options.js" in src.group(1):
            return f"<script>{documentation_options.strip()}</script>"
        if re.search(r"\b(async|defer)\b", attributes) or "type=\"module\"" in attributes:
            return match.group(0)
        return f"<script defer{attributes}></script>"

    head = _SCRIPT_TAG.sub(rewrite, head)
    # MathJax's configuration object: set it when MathJax itself runs (an inline module script
    # runs in order with the deferred ones), not while the page is parsed. A quiz script in the
    # body sees `window.MathJax`, takes it for a loaded MathJax, and half a second later fails
    # on `MathJax.version[0]` when the deferred MathJax has not run yet. MathJax typesets the
    # whole page, quizzes included, when it starts.
    head = re.sub(r"<script>(\s*window\.MathJax\s*=)", r'<script type="module">\1', head)
    return head + body


def size_images(page: str, page_path: Path) -> str:
    """Give each notebook figure (``_images/*.png``) its ``width`` and ``height`` and let the
    browser load it lazily: the page keeps its layout while figures arrive (no layout shift),
    and figures below the fold do not compete with the first paint."""
    def add(match: re.Match[str]) -> str:
        path = (page_path.parent / match.group(2)).resolve()
        try:
            from PIL import Image

            with Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError):
            return match.group(0)
        return (f'<img width="{width}" height="{height}" loading="lazy" decoding="async"'
                f"{match.group(1)}")

    return _NOTEBOOK_IMAGE.sub(add, page)


# ----------------------------------------------------------------------------- style sheets

BUNDLE_PREFIX = "gradpath-site."           # _static/gradpath-site.<hash>.css: a page's sheets
ICON_CSS = "gradpath-icons.css"            # Font Awesome's sheet for the site's icons only
_STYLESHEET_LINK = re.compile(r"[ \t]*<link\b(?=[^>]*\brel=\"stylesheet\")[^>]*>[ \t]*\n?",
                              re.IGNORECASE)
_HREF = re.compile(r"\bhref=\"([^\"]*)\"", re.IGNORECASE)
_MEDIA = re.compile(r"\bmedia=\"([^\"]*)\"", re.IGNORECASE)
_BUNDLED = re.compile(r"\bdata-gradpath-sheets=\"([^\"]*)\"", re.IGNORECASE)
# One CSS token at a time, so that a url( inside a comment or a quoted string (a data: URI's
# SVG) is never taken for a reference: comments, url(...), @import "...";, quoted strings.
_CSS_TOKEN = re.compile(
    r"(?P<comment>/\*.*?\*/)"
    r"|url\(\s*(?P<url>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^)'\"\s]+)\s*\)"
    r"|@import\s+(?:url\(\s*)?(?P<import>\"[^\"]*\"|'[^']*')\s*\)?\s*(?P<import_media>[^;]*);"
    r"|@charset\s+\"[^\"]*\"\s*;"
    r"|(?P<string>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')",
    re.DOTALL)


def _is_external(reference: str) -> bool:
    return reference.startswith(("data:", "#", "%23", "/", "about:", "blob:")) or \
        re.match(r"^[a-z][a-z0-9+.-]*:", reference, re.IGNORECASE) is not None


def bundle_css(path: Path, static: Path, _seen: frozenset[Path] = frozenset()) -> str:
    """The text of the style sheet ``path`` as it must read from ``static`` (``_static/``).

    Every relative ``url(...)`` is rewritten to point, from ``static``, at the file it pointed
    at from ``path``'s folder; each ``@import`` of a local sheet is replaced by that sheet's text
    (rewritten the same way, wrapped in ``@media`` when the import had a media list);
    ``@charset`` rules are dropped (the bundle starts with one) and comments removed.

    Raises:
        ValueError: when an ``@import`` names a sheet that is not a file under ``static`` (or
            imports itself), which a bundle could not keep in its place.
    """
    path = path.resolve()
    static = static.resolve()
    text = path.read_text(encoding="utf-8")

    def rewrite(match: re.Match[str]) -> str:
        if match.group("comment") is not None:
            return ""
        if match.group("string") is not None:
            return match.group(0)
        if match.group("import") is not None:
            reference = match.group("import")[1:-1].split("?")[0].split("#")[0]
            target = (path.parent / reference).resolve()
            if _is_external(reference) or not target.is_file() or static not in target.parents \
                    or target in _seen or target == path:
                raise ValueError(f"{path.name}: cannot bundle @import {reference!r}")
            inner = bundle_css(target, static, _seen | {path})
            media = match.group("import_media").strip()
            return f"@media {media} {{\n{inner}\n}}\n" if media else inner + "\n"
        if match.group("url") is not None:
            raw = match.group("url")
            quote = raw[0] if raw[0] in "\"'" else ""
            reference = raw[1:-1] if quote else raw
            if _is_external(reference.strip()):
                return match.group(0)
            split = re.match(r"([^?#]*)(.*)", reference.strip())
            assert split is not None
            moved_to = os.path.normpath(path.parent / split.group(1))
            moved = Path(os.path.relpath(moved_to, static)).as_posix() + split.group(2)
            return f"url({quote}{moved}{quote})"
        return ""  # @charset

    return _CSS_TOKEN.sub(rewrite, text).strip()


def _bundled_source(sheet: Path) -> Path:
    icons = sheet.with_name(ICON_CSS)
    if sheet.name == "all.min.css" and "fontawesome" in sheet.as_posix() and icons.is_file():
        return icons
    return sheet


def bundle_page_css(page: str, page_path: Path, static: Path,
                    bundles: dict[tuple[str, ...], str]) -> str:
    """Make a built page load its style sheets with one render-blocking request.

    The page's local style sheets in ``<head>`` (files under ``static``), in their order, are
    concatenated into ``static/gradpath-site.<hash>.css`` (see :func:`bundle_css`; pages with
    the same sheets share one bundle, remembered in ``bundles``), whose link takes the first
    sheet's place and lists the bundled sheets in ``data-gradpath-sheets`` (so that a page
    Sphinx does not rewrite on the next build is bundled again from the current sheets).
    Font Awesome's ``all.min.css`` is bundled as its :data:`ICON_CSS` where
    :func:`subset_icon_fonts` wrote one (3 kB compressed: loaded late instead, it made the
    header's buttons grow when their icons arrived). A sheet with a ``media`` attribute, a
    remote sheet, or a sheet that cannot be bundled leaves the page as it is. The body is not
    changed.
    """
    end = page.find("</head>")
    if end < 0:
        return page
    head, body = page[:end], page[end:]
    links = list(_STYLESHEET_LINK.finditer(head))
    prefix = Path(os.path.relpath(static, page_path.parent)).as_posix()
    sheets: list[Path] = []
    for link in links:
        tag = link.group(0)
        bundled = _BUNDLED.search(tag)
        if bundled:
            sheets.extend(static / name for name in html.unescape(bundled.group(1)).split())
            continue
        href = _HREF.search(tag)
        if href is None:
            return page
        reference = html.unescape(href.group(1)).split("?")[0].split("#")[0]
        target = (page_path.parent / reference).resolve()
        if _MEDIA.search(tag) or _is_external(reference) or not target.is_file() \
                or static.resolve() not in target.parents:
            return page
        sheets.append(target)
    if len(sheets) < 2:
        return page
    key = tuple(Path(os.path.relpath(t.resolve(), static.resolve())).as_posix() for t in sheets)
    if key not in bundles:
        try:
            parts = [f"/* {name} */\n" + bundle_css(_bundled_source(static / name), static)
                     for name in key]
        except (ValueError, OSError, UnicodeDecodeError):
            return page
        text = '@charset "UTF-8";\n' + "\n".join(parts) + "\n"
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        bundle_name = f"{BUNDLE_PREFIX}{digest}.css"
        (static / bundle_name).write_text(text, encoding="utf-8")
        bundles[key] = bundle_name
    tags = (f'  <link rel="stylesheet" type="text/css" href="{prefix}/{bundles[key]}" '
            f'data-gradpath-sheets="{html.escape(" ".join(key))}" />\n')
    pieces, last = [], 0
    for index, link in enumerate(links):
        pieces.append(head[last:link.start()])
        if index == 0:
            pieces.append(tags)
        last = link.end()
    pieces.append(head[last:])
    return "".join(pieces) + body


_ICON_NAME = re.compile(r"\bfa-[a-z0-9]+(?:-[a-z0-9]+)*")
_ICON_RULE = re.compile(
    r"((?:\.fa-[a-z0-9-]+:(?:before|after),?)+)\{content:\"\\([0-9a-f]{4,5})\"\}")
_ICON_ESCAPE = re.compile(r"\\(f[0-9a-f]{3}|e[0-9a-f]{3})\b", re.IGNORECASE)
_ICON_SOURCES = re.compile(
    r"url\((\.\./webfonts/(fa-(?:solid-900|regular-400|brands-400)))\.woff2\) format\(\"woff2\"\),"
    r"url\(\.\./webfonts/fa-(?:solid-900|regular-400|brands-400)\.ttf\) format\(\"truetype\"\)")


def icons_in_use(outdir: Path, css: str) -> set[int]:
    """The code points of every Font Awesome icon the built site can draw: each ``fa-*`` class
    named in a page or a script (the theme's scripts switch icons), mapped through Font
    Awesome's ``css``, and every private-use character (U+E000-U+F8FF) another style sheet draws
    in an icon font (the theme's admonition and link icons)."""
    names: set[str] = set()
    points: set[int] = set()
    for path in outdir.rglob("*"):
        if not path.is_file() or "fontawesome" in path.as_posix() \
                or path.name.startswith(BUNDLE_PREFIX) \
                or path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        names.update(_ICON_NAME.findall(text))
        if path.suffix == ".css":
            points.update(ord(c) for c in text if 0xE000 <= ord(c) <= 0xF8FF)
            points.update(int(m, 16) for m in _ICON_ESCAPE.findall(text))
    for rule in _ICON_RULE.finditer(css):
        if any(sel.split(":")[0][1:] in names for sel in rule.group(1).split(",") if sel):
            points.add(int(rule.group(2), 16))
    return points


def _keep_icon(points: frozenset[int], rule: re.Match[str]) -> str:
    return rule.group(0) if int(rule.group(2), 16) in points else ""


def subset_icon_fonts(outdir: Path) -> int:
    """Cut Font Awesome down to the icons the site uses (:func:`icons_in_use`).

    The solid and brands fonts are 270 kB (WOFF2) and the style sheet 22 kB (compressed) for
    the dozen icons of the page header; a phone downloads them while the page first paints.
    Each font is subset (fontTools) from its TrueType file into ``webfonts/gradpath-<font>.woff``
    and the style sheet is written as ``css/`` :data:`ICON_CSS`, pointing at the subsets and
    without the rules of other icons (:func:`bundle_page_css` bundles it in place of
    ``all.min.css``). The originals are left as they are. Returns the number of fonts subset
    (0 when Font Awesome or fontTools is missing).
    """
    try:
        from fontTools import subset
    except ImportError:  # pragma: no cover - fontTools comes with matplotlib
        return 0
    done = 0
    vendor = outdir / "_static" / "vendor" / "fontawesome"
    for css_path in sorted(vendor.glob("*/css/all.min.css")):
        css = css_path.read_text(encoding="utf-8")
        points = icons_in_use(outdir, css)
        webfonts = css_path.parent.parent / "webfonts"
        for stem in ("fa-solid-900", "fa-regular-400", "fa-brands-400"):
            source = webfonts / f"{stem}.ttf"
            if not source.is_file():
                continue
            options = subset.Options()
            options.flavor = "woff"
            options.layout_features = ["*"]
            options.notdef_outline = True
            font = subset.load_font(str(source), options)
            subsetter = subset.Subsetter(options)
            subsetter.populate(unicodes=sorted(points))
            subsetter.subset(font)
            subset.save_font(font, str(webfonts / f"gradpath-{stem}.woff"), options)
            font.close()
            done += 1
        icons = _ICON_SOURCES.sub(lambda m: f'url(../webfonts/gradpath-{m.group(2)}.woff) '
                                            'format("woff")', css)
        icons = _ICON_RULE.sub(functools.partial(_keep_icon, frozenset(points)), icons)
        css_path.with_name(ICON_CSS).write_text(icons, encoding="utf-8")
    return done


def _compress_images(folder: Path) -> None:
    """Re-encode the book's PNG figures with a 256-colour palette (alpha kept), where smaller.

    Matplotlib writes 32-bit RGBA PNGs; a plot has few distinct colours, so a palette image looks
    the same and is about a quarter of the size (3.3 MB -> 0.9 MB for the course's figures),
    which keeps a chapter page within the course's page-weight goal. Text chunks (the figure
    description :func:`gradpath.plots.describe` stores) are kept.
    """
    try:
        from PIL import Image, PngImagePlugin
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        try:
            with Image.open(path) as image:
                if image.mode not in ("RGBA", "RGB"):
                    continue
                info = PngImagePlugin.PngInfo()
                for key, value in (getattr(image, "text", None) or {}).items():
                    info.add_text(key, value)
                palette = image.quantize(256, method=Image.Quantize.FASTOCTREE)
                target = path.with_suffix(".tmp.png")
                palette.save(target, "PNG", optimize=True, pnginfo=info)
            if target.stat().st_size < path.stat().st_size:
                target.replace(path)
            else:
                target.unlink()
        except (OSError, ValueError):
            continue


_SEARCH_BUTTON_LABEL = re.compile(
    r'(<button class="btn search-button-field[^"]*"[^>]*?) aria-label="Search"')


def name_search_button(page: str) -> str:
    """Let the theme's search button be named by the text it shows ("Search Ctrl+K").

    pydata-sphinx-theme gives it ``aria-label="Search"``, a name that leaves out part of its
    visible text; WCAG 2.5.3 (label in name, axe-core's ``label-content-name-mismatch``, a
    serious violation since axe-core 4.14) asks for the visible text in the name.
    """
    return _SEARCH_BUTTON_LABEL.sub(r"\1", page)


def _finish(app: Any, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    static = outdir / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plotly_js_path(), static / PLOTLY_JS)
    # Sphinx keeps a static file that is already in the output directory, so an edited
    # gradpath.css or gradpath.js would not reach a rebuilt site: copy them every time.
    for asset in STATIC_DIR.iterdir():
        if asset.is_file():
            shutil.copyfile(asset, static / asset.name)
    _compress_images(outdir / "_images")
    options_path = static / "documentation_options.js"
    options = options_path.read_text(encoding="utf-8") if options_path.is_file() else None
    for page in outdir.rglob("*.html"):
        if page.name == "search.html" or "_static" in page.parts:
            continue
        text = page.read_text(encoding="utf-8")
        slimmed = name_search_button(size_images(slim_html(text, options), page))
        if slimmed != text:
            page.write_text(slimmed, encoding="utf-8")


def _bundle_styles(app: Any, exception: Exception | None) -> None:
    # After every other step that edits the pages' <head> (gradpath.book.mathrender links its
    # math.css at priority 800), so that the bundle has all of a page's sheets.
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    static = outdir / "_static"
    subset_icon_fonts(outdir)
    old = {path.name for path in static.glob(f"{BUNDLE_PREFIX}*.css")}
    bundles: dict[tuple[str, ...], str] = {}
    for page in outdir.rglob("*.html"):
        if "_static" in page.parts:
            continue
        text = page.read_text(encoding="utf-8")
        bundled = bundle_page_css(text, page, static, bundles)
        if bundled != text:
            page.write_text(bundled, encoding="utf-8")
        # a page left as it was keeps its bundle of an earlier build
        old -= set(re.findall(re.escape(BUNDLE_PREFIX) + r"[0-9a-f]+\.css", bundled))
    for name in old - set(bundles.values()):
        (static / name).unlink()


def _register_assets(app: Any) -> None:
    if str(STATIC_DIR) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC_DIR))
    app.add_css_file("gradpath.css")
    app.add_js_file("gradpath.js", defer="defer")


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point."""
    os.environ[STATIC_BUILD_ENV] = "1"
    app.connect("builder-inited", _register_assets)
    app.connect("doctree-resolved", _describe_images)
    app.connect("html-page-context", _page_context)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("build-finished", _finish)
    app.connect("build-finished", _bundle_styles, priority=900)
    app.connect("env-get-outdated", _reexecute_for_changed_data)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
