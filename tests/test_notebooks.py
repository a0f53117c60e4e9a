"""Every chapter follows the course's conventions (the executed run is nbmake's job)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import CHAPTERS, ROOT
from gradpath.book.quiz import load_quiz

SECTIONS = ["Learning objectives", "Interactive figure", "Explore it live", "Exercises", "Quiz",
            "Key takeaways", "References"]


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def _cells(path):
    return json.loads(path.read_text())["cells"]


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
    questions = load_quiz(ROOT / "chapters" / "quizzes" / f"{path.stem}.json")
    assert len(questions) >= 8


def test_repository_url_is_the_same_everywhere():
    url = _config()["repository"]["url"]
    assert _config()["repository"]["branch"] == "main"
    readme = (ROOT / "README.md").read_text()
    assert url in readme
    for text in (readme, (ROOT / "intro.md").read_text()):
        for other in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text):
            assert other.rstrip(".") == url, f"stray repository URL {other}"
