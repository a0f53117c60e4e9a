"""Every chapter follows the course's conventions (the executed run is nbmake's job)."""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml
from conftest import CHAPTERS, ROOT
from gradpath.book.glue import references_markdown
from gradpath.book.quiz import load_quiz, render_quiz

GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`:]+)(?::([^`]*))?`")
# Calls a cell may end with: they show something on purpose and return None (or, for show, the
# figure's HTML, which is the cell's one output).
DISPLAYING_CALLS = {"print", "display", "show", "plt.show", "live_explorer", "show_quiz",
                    "show_cards", "check_answer", "show_references"}

SECTIONS = ["Learning objectives", "Interactive figure", "Explore it live", "Exercises", "Quiz",
            "Key takeaways", "References"]


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _code_tree(cell) -> ast.Module:
    """A code cell's syntax tree (IPython's %magic and !shell lines left out)."""
    lines = [line for line in "".join(cell["source"]).split("\n")
             if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def _glue_calls(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glue":
            yield node


def test_there_are_chapters_and_the_toc_lists_exactly_them():
    assert CHAPTERS, "no chapters found"
    listed = [f for f in _toc_files() if f.startswith("chapters/")]  # other pages: review, exam
    assert sorted(listed) == sorted(f"chapters/{p.stem}" for p in CHAPTERS)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: strip outputs before committing"
            assert cell["execution_count"] is None, f"{path.name}: strip execution counts"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_first_cell_installs_gradpath_from_the_configured_repository(path):
    first = _cells(path)[0]
    source = "".join(first["source"])
    assert first["cell_type"] == "code" and "remove-cell" in first["metadata"].get("tags", [])
    assert 'find_spec("gradpath") is None' in source  # quiet when gradpath is present
    assert f'REPOSITORY = "{_config()["repository"]["url"]}"' in source


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_the_standard_shape(path):
    cells = _cells(path)
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    headings = re.findall(r"^##\s+(.+)$", markdown, re.M)
    positions = []
    for section in SECTIONS:
        found = [i for i, h in enumerate(headings) if h.strip().startswith(section)]
        assert found, f"{path.name}: missing section '## {section}'"
        positions.append(found[0])
    assert positions == sorted(positions), f"{path.name}: sections out of order"
    assert re.search(r"^# Chapter \d+", markdown, re.M)
    assert "slider_figure(" in code and "show(" in code, "needs a kernel-free interactive figure"
    assert "live_explorer(" in code, "needs a live ipywidgets explorer"
    assert "footbibliography" in markdown and "{footcite" in markdown
    assert "assert " in code, "claims must be asserted"
    quiz_cells = [c for c in cells if "show_quiz(" in "".join(c["source"])]
    assert len(quiz_cells) == 1
    assert "remove-input" in quiz_cells[0]["metadata"].get("tags", [])
    assert f'quizzes/{path.stem}.json' in "".join(quiz_cells[0]["source"])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_quiz_file_is_valid(path):
    # load_quiz grades every numeric question as jupyterquiz does (see gradpath.book.quiz)
    questions = load_quiz(ROOT / "chapters" / "quizzes" / f"{path.stem}.json")
    assert len(questions) >= 8
    shown = json.dumps(render_quiz(questions), ensure_ascii=False)
    assert "**" not in shown and "`" not in shown, "jupyterquiz would show raw Markdown"
    assert "expected" not in {key for q in render_quiz(questions) for key in q}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_glue_prints_what_the_prose_shows(path):
    """Each number the prose quotes is glued, with the format spec the prose uses (fmt)."""
    cells = _cells(path)
    specs: dict[str, set[str]] = {}
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for name, spec in GLUE_ROLE.findall("".join(cell["source"])):
                specs.setdefault(name, set()).add(spec)
    glued: dict[str, str] = {}
    patterns: list[tuple[str, str]] = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for call in _glue_calls(_code_tree(cell)):
            name = call.args[0]
            fmt = next((k.value for k in call.keywords if k.arg == "fmt"),
                       call.args[2] if len(call.args) > 2 else ast.Constant(""))
            assert isinstance(fmt, ast.Constant), f"{path.name}: glue fmt must be a literal"
            if isinstance(name, ast.JoinedStr):   # glue(f"loss_{k}", ...) in a loop
                pattern = "".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".+"
                                  for v in name.values)
                patterns.append((pattern, fmt.value))
                continue
            assert isinstance(name, ast.Constant), f"{path.name}: glue a literal name"
            glued[name.value] = fmt.value
    for pattern, fmt_value in patterns:      # a literal glue of the same name wins
        for quoted in specs:
            if re.fullmatch(pattern, quoted):
                glued.setdefault(quoted, fmt_value)
    for name, used in specs.items():
        assert name in glued, f"{path.name}: the prose quotes {name!r}, which no cell glues"
        assert glued[name] in used, (f"{path.name}: glue({name!r}, ..., fmt={glued[name]!r}) "
                                     f"but the prose formats it as {sorted(used)}")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_cell_shows_a_stray_value(path):
    """A cell ends with an assignment, a statement, ';' or a call that displays on purpose."""
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code" or "".join(cell["source"]).rstrip().endswith(";"):
            continue
        body = _code_tree(cell).body
        if not body or not isinstance(body[-1], ast.Expr):
            continue
        last = body[-1].value
        called = ast.unparse(last.func) if isinstance(last, ast.Call) else None
        assert called in DISPLAYING_CALLS, (
            f"{path.name}, cell {i}: ends with {ast.unparse(last)[:60]!r}, whose value Jupyter "
            "would print; end with an assignment or ';'")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_are_hidden_in_both_front_ends(path):
    """An HTML details block: MyST renders its Markdown, Jupyter and Colab show it collapsed."""
    markdown = [("".join(c["source"])) for c in _cells(path) if c["cell_type"] == "markdown"]
    exercises = [m for m in markdown if re.search(r"^## Exercises", m, re.M)]
    assert len(exercises) == 1
    assert "{dropdown}" not in "\n".join(markdown), "use <details>, which Jupyter renders too"
    assert re.search(r"<details>\n<summary>Solutions</summary>\n\n.+\S\n\n</details>",
                     exercises[0], re.S), ("solutions need '<details>\\n<summary>Solutions"
                                           "</summary>' and blank lines around the Markdown")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_references_read_as_text_outside_the_book(path):
    cells = _cells(path)
    where = [i for i, c in enumerate(cells) if "{footbibliography}" in "".join(c["source"])]
    assert len(where) == 1
    follower = cells[where[0] + 1]
    assert follower["cell_type"] == "code"
    assert "remove-cell" in follower["metadata"].get("tags", [])
    assert f'show_references("{path.name}")' in "".join(follower["source"])
    text = references_markdown(path)          # every key it cites is in references.bib
    assert text.count("\n- ") >= 1 and "{" not in text.split("\n", 1)[1]


def test_repository_url_is_the_same_everywhere():
    url = _config()["repository"]["url"]
    assert _config()["repository"]["branch"] == "main"
    readme = (ROOT / "README.md").read_text()
    assert url in readme
    for text in (readme, (ROOT / "intro.md").read_text()):
        for other in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text):
            assert other.rstrip(".") == url, f"stray repository URL {other}"


@pytest.mark.parametrize("path", [*CHAPTERS, ROOT / "history.ipynb", ROOT / "exam.ipynb"],
                         ids=lambda p: p.name)
def test_every_cell_has_a_unique_id(path):
    """nbformat 4.5 requires cell ids (a missing one is a warning today, an error later)."""
    nb = json.loads(path.read_text())
    ids = [cell.get("id") for cell in nb["cells"]]
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5)
    assert all(ids) and len(set(ids)) == len(ids), [i for i, x in enumerate(ids) if not x]
