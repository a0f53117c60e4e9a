"""An edited quiz or flashcard deck reaches its page: the book's execution cache forgets the
notebook that shows it (jupyter-cache alone matches a notebook by its code cells)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from gradpath.book.site import _reexecute_for_changed_data, data_files, drop_stale_executions


def _notebook(path: Path, *code: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in code])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _executed(cache, path: Path) -> int:
    """Store ``path`` in the cache as if the build had executed it; return the record's key."""
    from jupyter_cache.base import CacheBundleIn

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.outputs = [nbformat.v4.new_output("stream", text="the old questions\n")]
    record = cache.cache_notebook_bundle(CacheBundleIn(nb, str(path)), check_validity=False,
                                         overwrite=True)
    return record.pk


def _age(path: Path, seconds: float) -> None:
    """Set ``path``'s modification time ``seconds`` from now (negative: in the past)."""
    when = time.time() + seconds
    os.utime(path, (when, when))


@pytest.fixture
def course(tmp_path):
    """A course folder: a chapter and a root-level exam, each showing a quiz, all cached."""
    from jupyter_cache import get_cache

    root = tmp_path / "course"
    for name in ("quizzes/01-a.json", "cards/01-a.json", "quizzes/exam.json"):
        (root / "chapters" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "chapters" / name).write_text("[]")
        _age(root / "chapters" / name, -3600)
    notebooks = {
        "chapters/01-a": _notebook(root / "chapters" / "01-a.ipynb", "x = 1",
                                   'show_quiz("quizzes/01-a.json")',
                                   "show_cards('cards/01-a.json');"),
        "exam": _notebook(root / "exam.ipynb", 'show_quiz("quizzes/exam.json")'),
        "plain": _notebook(root / "plain.ipynb", "print('no data')"),
    }
    cache = get_cache(str(tmp_path / "cache"))
    for path in notebooks.values():
        _executed(cache, path)
    return SimpleNamespace(root=root, notebooks=notebooks, cache=cache,
                           cache_path=tmp_path / "cache")


def _cached(course) -> set[str]:
    found = set()
    for name, path in course.notebooks.items():
        try:
            course.cache.match_cache_notebook(nbformat.read(path, as_version=4))
            found.add(name)
        except KeyError:
            pass
    return found


def test_data_files_are_found_as_the_notebook_finds_them(course):
    chapters = course.root / "chapters"
    assert data_files(course.notebooks["chapters/01-a"], course.root) == [
        chapters / "quizzes" / "01-a.json", chapters / "cards" / "01-a.json"]
    # exam.ipynb lies at the course root; its quiz is found in chapters/, as quiz.locate does
    assert data_files(course.notebooks["exam"], course.root) == [
        chapters / "quizzes" / "exam.json"]
    assert data_files(course.notebooks["plain"], course.root) == []


def test_unchanged_data_keeps_every_cached_execution(course):
    assert drop_stale_executions(course.cache_path, course.notebooks, course.root) == []
    assert _cached(course) == {"chapters/01-a", "exam", "plain"}


@pytest.mark.parametrize(("edited", "stale"), [("quizzes/exam.json", "exam"),
                                               ("cards/01-a.json", "chapters/01-a")])
def test_an_edited_data_file_drops_the_execution_of_the_notebook_that_shows_it(course, edited,
                                                                               stale):
    path = course.root / "chapters" / edited
    path.write_text('[{"question": "new"}]')
    _age(path, +60)          # modified after the build executed (and cached) the notebook
    assert drop_stale_executions(course.cache_path, course.notebooks, course.root) == [stale]
    assert _cached(course) == {"chapters/01-a", "exam", "plain"} - {stale}
    # executed again with the new data, the notebook is cached and kept
    _executed(course.cache, course.notebooks[stale])
    _age(path, -60)
    assert drop_stale_executions(course.cache_path, course.notebooks, course.root) == []


def test_no_cache_yet_is_left_alone(course, tmp_path):
    assert drop_stale_executions(tmp_path / "none", course.notebooks, course.root) == []
    assert not (tmp_path / "none").exists()


def test_the_sphinx_hook_asks_to_read_the_stale_notebooks_again(course):
    _age(course.root / "chapters" / "quizzes" / "exam.json", +60)
    paths = {**{name: path for name, path in course.notebooks.items()},
             "intro": course.root / "intro.md"}
    config = SimpleNamespace(execution_mode="cache", execution_cache_path=str(course.cache_path))
    env = SimpleNamespace(mystnb_config=config, found_docs=set(paths),
                          doc2path=lambda doc: str(paths[doc]))
    app = SimpleNamespace(srcdir=str(course.root))
    assert _reexecute_for_changed_data(app, env, set(), set(), {"plain"}) == ["exam"]
    config.execution_mode = "off"
    _age(course.root / "chapters" / "cards" / "01-a.json", +60)
    assert _reexecute_for_changed_data(app, env, set(), set(), set()) == []


def test_a_rebuilt_page_shows_the_edited_quiz(tmp_path):
    """End to end: Sphinx with MyST-NB's cache and this extension, built, edited, rebuilt."""
    import subprocess
    import sys

    (tmp_path / "conf.py").write_text('extensions = ["myst_nb", "gradpath.book.site"]\n'
                                      'nb_execution_mode = "cache"\n'
                                      'exclude_patterns = ["_build"]\n')
    quiz = tmp_path / "chapters" / "quizzes" / "exam.json"
    quiz.parent.mkdir(parents=True)
    quiz.write_text('["the old question"]')
    _notebook(tmp_path / "index.ipynb", "import json, pathlib\n"
              "print(json.loads(pathlib.Path('chapters/quizzes/exam.json').read_text()))")
    page = tmp_path / "_build" / "html" / "index.html"

    def build() -> str:
        subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "html", str(tmp_path),
                        str(page.parent)], check=True, capture_output=True, text=True)
        return page.read_text(encoding="utf-8")

    assert "the old question" in build()
    quiz.write_text('["the new question"]')
    _age(quiz, +5)
    assert "the new question" in build()
