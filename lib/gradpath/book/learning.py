"""Learning aids for the course site: saved quiz progress, flashcards and compute badges.

The book's Sphinx build loads this module as an extension (``_config.yml`` →
``sphinx.extra_extensions``). It adds:

1. **Saved quiz progress.** ``static/learning.js`` (shipped with this package) watches the
   quizzes that jupyterquiz draws, saves every answered question in the browser's
   ``localStorage`` under a key made of the page name, the quiz's place on the page and the
   question's number (``gradflow:quiz:v1:<page>`` → ``"<quiz>.<question>"``), restores the answers
   on the next visit, shows "7 of 12 answered correctly" above each quiz with a "Reset my answers"
   button, and draws a course-wide progress table on the intro page (and wherever a
   ``course-progress`` directive stands). Every page carries a small JSON block
   (``#gp-learning-config``) naming the page and listing the course's quiz pages, in table-of-
   contents order, with their number of questions.
2. **Compute badges.** At the top of every executed chapter notebook (page names matching the
   ``gradpath_badge_pages`` pattern, :data:`BADGE_PAGES` by default), a line such as "Runs on a
   CPU in 12 s · GPU optional". The seconds are the notebook's execution time as MyST-NB recorded it
   during the build (jupyter-cache's ``execution_seconds`` when the notebook came from the cache):
   nothing is typed by hand. The device is the one the build's kernels used (the CPU unless
   ``GRADPATH_DEVICE`` or an available CUDA GPU says otherwise). A GPU is called optional when the
   CPU run took at most :data:`GPU_HELPS_ABOVE_S` seconds.
3. **Offline quizzes.** jupyterquiz's inline script is patched in every page
   (:func:`offline_quiz_script`): no MathJax from a CDN, no error when MathJax loads late.
4. **A ``flashcards`` directive** that writes one or more decks (:mod:`gradpath.book.cards`) into a
   page without a kernel, for the Review page.

:func:`check_answer` is for notebooks: the one-line "check your answer" cells of numeric exercises.
"""

from __future__ import annotations

import ast
import html
import json
import math
import operator
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"
JS_FILE = "learning.js"
CSS_FILE = "learning.css"
CONFIG_ID = "gp-learning-config"
GPU_HELPS_ABOVE_S = 60.0
BADGE_PAGES = r"^chapters/\d\d-"  # which executed pages get a badge (config: gradpath_badge_pages)
QUIZ_DIR = Path("chapters") / "quizzes"
ANSWERS_FILE = Path("chapters") / "exercise-answers.json"


# --------------------------------------------------------------------------------------------
# Compute badges


def badge_text(seconds: float, device: str) -> str:
    """The visible badge text for a notebook that ran in ``seconds`` on ``device``.

    >>> badge_text(12.3, "cpu")
    'Runs on a CPU in 12 s · GPU optional'
    >>> badge_text(95, "cpu")
    'Runs on a CPU in 95 s · a GPU helps'
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite, non-negative number, got {seconds!r}")
    shown = "under 1 s" if seconds < 0.5 else f"{round(seconds)} s"
    if device == "cpu":
        gpu = "GPU optional" if seconds <= GPU_HELPS_ABOVE_S else "a GPU helps"
        return f"Runs on a CPU in {shown} · {gpu}"
    return f"Runs on a {device.upper()} in {shown} · CPU time not measured"


def build_device() -> str:
    """The device the build's notebook kernels use: ``GRADPATH_DEVICE`` if set, else CUDA when
    torch sees a GPU, else the CPU (the same order as :func:`gradpath.device.pick_device`)."""
    forced = os.environ.get("GRADPATH_DEVICE", "").strip().lower()
    if forced:
        return forced
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "cpu"


STOPWATCH = ('<svg class="gp-badge-icon" aria-hidden="true" focusable="false" viewBox="0 0 24 24" '
             'width="1em" height="1em"><circle cx="12" cy="14" r="7.5" fill="none" '
             'stroke="currentColor" stroke-width="2"/><path d="M12 14V10M9.5 3h5M12 3v3.5" '
             'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>')


def badge_html(seconds: float, device: str, measured: str) -> str:
    """The badge element; ``data-seconds`` keeps the measured value for tests and tools."""
    tip = (f"Measured by this site's build: running the whole notebook took {seconds:.1f} s on "
           f"the build machine ({device.upper()}, {measured}), kernel start included. A shared "
           "or slower machine takes longer. The large preset (GRADPATH_SCALE=large) is meant "
           "for a GPU.")
    return (f'<p class="gp-compute-badge" data-seconds="{seconds:.3f}" data-device="{device}" '
            f'title="{html.escape(tip)}">{STOPWATCH}'
            f'<span class="gp-badge-text">{html.escape(badge_text(seconds, device))}</span></p>')


def _exec_runtime(env: Any, docname: str) -> tuple[float, str] | None:
    try:
        from myst_nb.sphinx_ import NbMetadataCollector
    except ImportError:  # pragma: no cover - MyST-NB builds the book
        return None
    data = NbMetadataCollector.get_doc_data(env).get(docname, {}).get("exec_data")
    if not data or data.get("runtime") is None or not data.get("succeeded", True):
        return None
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(data.get("mtime") or 0, tz=timezone.utc)
    return float(data["runtime"]), f"executed {when:%Y-%m-%d}"


# --------------------------------------------------------------------------------------------
# jupyterquiz's script, made safe offline

_QUIZ_CDN_FALLBACK = re.compile(
    r"\}\s*else\s*\{\s*console\.log\('WARNING: Trying to force load MathJax 3'\);"
    r".*?document\.head\.appendChild\(script\);\s*\}\)\(\);\s*\}", re.S)
_QUIZ_MATHJAX_CHECKS = ("typeof MathJax != 'undefined'", "typeof MathJax !== 'undefined'")
CDN_MARKER = "cdn.jsdelivr.net"


def offline_quiz_script(script: str) -> str:
    """jupyterquiz's inline script with its two offline faults removed (jupyterquiz 2.9.6.4).

    1. When the page's MathJax has not finished loading 500 ms after a quiz is drawn (a slow
       link, a busy machine), jupyterquiz reads ``MathJax.version[0]`` of the configuration
       object and throws a TypeError; every "is MathJax there?" test now also asks for
       ``MathJax.version``, and ``static/learning.js`` typesets the quiz once MathJax is ready.
    2. Its fallback that loads MathJax 3 from cdn.jsdelivr.net is removed.

    A script without these patterns (another jupyterquiz) is returned with only what matched
    changed; :func:`_on_doctree_resolved` refuses to write a page whose quiz still names the CDN.
    """
    script = _QUIZ_CDN_FALLBACK.sub("}", script)
    for check in _QUIZ_MATHJAX_CHECKS:
        guarded = f"{check} && MathJax.version"
        script = script.replace(guarded, check).replace(check, guarded)
    return script


def _patch_quiz_scripts(doctree: Any, docname: str) -> None:
    from docutils import nodes

    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "function show_questions" not in text:
            continue
        patched = offline_quiz_script(text)
        if CDN_MARKER in patched:
            raise RuntimeError(f"{docname}: the quiz script still loads MathJax from a CDN after "
                               "offline_quiz_script(); update it for this jupyterquiz version")
        if patched != text:
            node.replace(node.children[0], nodes.Text(patched))


# --------------------------------------------------------------------------------------------
# The course manifest: quiz pages in table-of-contents order


def toc_order(env: Any, root: str) -> list[str]:
    """Documents in reading order: the root, then its toctree entries depth first."""
    seen: list[str] = []

    def walk(doc: str) -> None:
        if doc in seen:
            return
        seen.append(doc)
        for child in env.toctree_includes.get(doc, []):
            walk(child)

    walk(root)
    return seen


def quiz_file_for(srcdir: Path, docname: str) -> Path | None:
    """The quiz of a page by the course's convention: ``chapters/quizzes/<page name>.json``."""
    path = Path(srcdir) / QUIZ_DIR / f"{Path(docname).name}.json"
    return path if path.is_file() else None


def course_manifest(app: Any) -> list[dict[str, Any]]:
    """Every page with a quiz, in reading order: page name, title and number of questions."""
    env = app.env
    pages = []
    for doc in toc_order(env, app.config.root_doc):
        quiz = quiz_file_for(Path(app.srcdir), doc)
        if quiz is None:
            continue
        questions = json.loads(quiz.read_text(encoding="utf-8"))
        title = env.titles[doc].astext() if doc in env.titles else doc
        pages.append({"page": doc, "title": title, "questions": len(questions)})
    return pages


# --------------------------------------------------------------------------------------------
# Sphinx hooks


def _raw(html_text: str) -> Any:
    from docutils import nodes

    return nodes.raw("", html_text, format="html")


def _on_doctree_resolved(app: Any, doctree: Any, docname: str) -> None:
    from docutils import nodes

    if app.builder.format != "html":
        return
    _patch_quiz_scripts(doctree, docname)
    manifest = getattr(app, "_gp_manifest", None)
    if manifest is None:
        manifest = app._gp_manifest = course_manifest(app)
    course = [dict(entry, url=app.builder.get_relative_uri(docname, entry["page"]))
              for entry in manifest]
    config = {"page": docname, "root": docname == app.config.root_doc, "course": course}
    payload = json.dumps(config).replace("</", "<\\/")
    doctree.append(_raw(f'<script type="application/json" id="{CONFIG_ID}">{payload}</script>'))

    runtime = None
    if re.search(app.config.gradpath_badge_pages, docname):
        runtime = _exec_runtime(app.env, docname)
    section = next(iter(doctree.findall(nodes.section)), None)
    if runtime is not None and section is not None and section.children:
        seconds, measured = runtime
        index = 1 if isinstance(section.children[0], nodes.title) else 0
        section.insert(index, _raw(badge_html(seconds, app._gp_device, measured)))


MATH_WIDGET_MARKERS = ("data-shufflequestions", "flip-container")


def _on_doctree_read(app: Any, doctree: Any) -> None:
    """Load MathJax on pages whose quizzes or flashcards hold math, even if the prose has none.

    Sphinx adds MathJax only to pages with math nodes; questions and cards are HTML that
    jupyterquiz and jupytercards typeset with the page's MathJax when it is there.
    """
    from docutils import nodes

    if any(marker in node.astext() for node in doctree.findall(nodes.raw)
           for marker in MATH_WIDGET_MARKERS):
        math = app.env.get_domain("math")
        math.data.setdefault("has_equations", {})[app.env.docname] = True


def _on_builder_inited(app: Any) -> None:
    app._gp_device = build_device()
    app._gp_manifest = None


def _on_config_inited(app: Any, config: Any) -> None:
    config.html_static_path.append(str(STATIC))


def _flashcards_directive() -> type:
    from docutils.parsers.rst import Directive, directives

    class FlashcardsDirective(Directive):
        """``flashcards`` directive: one or more decks, one JSON path (from the source root) per
        argument line, with an optional ``:titles:`` option (titles separated by ``|``)."""

        required_arguments = 1
        optional_arguments = 100
        final_argument_whitespace = False
        option_spec = {"titles": directives.unchanged}

        def run(self) -> list[Any]:
            from gradpath.book.cards import decks_html, load_deck

            env = self.state.document.settings.env
            titles = [t.strip() for t in self.options.get("titles", "").split("|") if t.strip()]
            decks = []
            for i, rel in enumerate(self.arguments):
                path = Path(env.srcdir) / rel
                env.note_dependency(str(path))
                title = titles[i] if i < len(titles) else path.stem
                decks.append((title, load_deck(path)))
            return [_raw(decks_html(decks))]

    return FlashcardsDirective


def _course_progress_directive() -> type:
    from docutils.parsers.rst import Directive

    class CourseProgressDirective(Directive):
        """``course-progress`` directive: where learning.js draws the course-wide progress."""

        def run(self) -> list[Any]:
            return [_raw('<div class="gp-course-progress" id="gp-course-progress"></div>')]

    return CourseProgressDirective


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point."""
    app.add_config_value("gradpath_badge_pages", BADGE_PAGES, "html", types=[str])
    app.connect("config-inited", _on_config_inited)
    app.connect("builder-inited", _on_builder_inited)
    app.connect("doctree-read", _on_doctree_read)
    app.connect("doctree-resolved", _on_doctree_resolved)
    app.add_directive("flashcards", _flashcards_directive())
    app.add_directive("course-progress", _course_progress_directive())
    app.add_js_file(JS_FILE, defer="defer")
    app.add_css_file(CSS_FILE)
    return {"env_version": 3, "parallel_read_safe": True, "parallel_write_safe": True}


# --------------------------------------------------------------------------------------------
# "Check your answer" cells for numeric exercises

_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "exp": math.exp,
    "tanh": math.tanh, "comb": lambda n, k: math.comb(int(n), int(k)), "ceil": math.ceil,
}


def evaluate(expression: str) -> float:
    """Evaluate an answer's arithmetic (numbers, + - * / **, and sqrt, log, log10, exp, tanh,
    comb, ceil) without ``eval``.

    Raises:
        ValueError: for anything else, naming the expression.
    """
    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](ev(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS and not node.keywords):
            return float(_FUNCTIONS[node.func.id](*(ev(a) for a in node.args)))
        raise ValueError(f"cannot evaluate {expression!r}: only numbers, + - * / ** and "
                         f"{', '.join(sorted(_FUNCTIONS))} are allowed")

    return ev(ast.parse(expression, mode="eval"))


def _answers(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    from gradpath.book.quiz import locate

    found = locate(path or ANSWERS_FILE.name)
    return json.loads(found.read_text(encoding="utf-8"))


def answer_matches(key: str, answer: float, answers_file: str | Path | None = None) -> bool:
    """Whether ``answer`` is within the tolerance of exercise ``key``'s expected value.

    The expected values live in ``chapters/exercise-answers.json`` as arithmetic (``"0.8**29"``,
    see :func:`evaluate`) with a relative tolerance ``rel`` (default 2%) and an optional absolute
    one ``abs``, so a reader who rounds sensibly is right.

    Raises:
        KeyError: if ``key`` is not an exercise in the answers file, listing the keys.
    """
    table = _answers(answers_file)
    if key not in table:
        raise KeyError(f"no exercise {key!r}; known: {', '.join(sorted(table))}")
    entry = table[key]
    expected = evaluate(entry["expr"])
    return math.isclose(float(answer), expected, rel_tol=float(entry.get("rel", 0.02)),
                        abs_tol=float(entry.get("abs", 0.0)))


def check_answer(key: str, answer: float | None, answers_file: str | Path | None = None) -> None:
    """Print whether ``answer`` is right for exercise ``key`` (e.g. ``"01-chain-rule/2a"``).

    For the one-line "check your answer" cells: ``None`` (the cell as shipped) prints how to use
    the cell, or nothing in the book build, where no reader can run it. Returns None, so the
    cell shows no stray value. See :func:`answer_matches` for the rule.

    Raises:
        KeyError: if ``key`` is not an exercise in the answers file, listing the keys.
    """
    table = _answers(answers_file)
    if key not in table:
        raise KeyError(f"no exercise {key!r}; known: {', '.join(sorted(table))}")
    if answer is None:
        from gradpath.progress import is_static_build

        if not is_static_build():
            print(f"Exercise {key}: replace None with your number and run the cell.")
        return
    if answer_matches(key, answer, answers_file):
        print(f"Exercise {key}: {answer:g} is correct.")
    else:
        hint = table[key].get("hint", "")
        print(f"Exercise {key}: {answer:g} is not it yet. {hint}".rstrip())
