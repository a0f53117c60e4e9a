"""make test executes each chapter once: nbmake's outputs feed the book's execution cache."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from gradpath.book.executed import cache_executed, merge_outputs
from nbclient import NotebookClient


def _source(path, code=("x = 6 * 7", "print(x)")):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A chapter")]
                                  + [nbformat.v4.new_code_cell(c) for c in code])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def _execute(source, target):
    nb = nbformat.read(source, as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()   # as nbmake does
    nbformat.write(nb, target)
    return target


def test_nbmake_runs_each_notebook_once_and_the_book_build_finds_it_in_its_cache(tmp_path):
    from jupyter_cache import get_cache

    sources = tmp_path / "chapters"
    (sources / "quizzes").mkdir(parents=True)
    (sources / "quizzes" / "q.json").write_text("[]")
    src = _source(sources / "01-a.ipynb", code=(
        "import os, pathlib\nx = 6 * 7",
        "assert pathlib.Path('quizzes/q.json').exists()   # siblings are copied along",
        "print(x, os.environ['GRADPATH_STATIC_BUILD'])"))
    other = _source(sources / "02-b.ipynb", code=("print('b')",))
    before = src.read_text()
    done = subprocess.run([sys.executable, "-m", "gradpath.book.executed", str(src), str(other),
                           "--workers", "2", "--cache", str(tmp_path / "cache")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("1 passed") == 2                          # two pytest workers
    assert "stored the outputs of 2 notebooks" in done.stdout
    assert src.read_text() == before                                  # the source stays bare
    # what MyST-NB does in `execute_notebooks: cache` mode, with the source notebook it reads
    cache = get_cache(str(tmp_path / "cache"))
    stored = nbformat.read(src, as_version=4)
    cache.match_cache_notebook(stored)                                 # no KeyError: a hit
    _, merged = cache.merge_match_into_notebook(stored)
    assert merged.cells[3].outputs[0]["text"] == "42 1\n"            # static-build outputs
    cache.match_cache_notebook(nbformat.read(other, as_version=4))


def test_a_failing_notebook_is_reported_and_nothing_is_cached(tmp_path):
    sources = tmp_path / "chapters"
    sources.mkdir()
    src = _source(sources / "01-a.ipynb", code=("raise RuntimeError('boom')",))
    done = subprocess.run([sys.executable, "-m", "gradpath.book.executed", str(src),
                           "--cache", str(tmp_path / "cache")], capture_output=True, text=True)
    assert done.returncode != 0 and "1 failed" in done.stdout
    assert not (tmp_path / "cache").exists()


def test_an_edited_chapter_misses_the_cache_and_a_foreign_copy_is_refused(tmp_path):
    from jupyter_cache import get_cache

    sources, executed = tmp_path / "chapters", tmp_path / "executed"
    sources.mkdir()
    executed.mkdir()
    src = _source(sources / "01-a.ipynb")
    _execute(src, executed / "01-a.ipynb")
    cache_executed(executed, sources, tmp_path / "cache")
    edited = _source(sources / "01-a.ipynb", code=("x = 6 * 9", "print(x)"))
    with pytest.raises(KeyError):
        get_cache(str(tmp_path / "cache")).match_cache_notebook(nbformat.read(edited, 4))
    with pytest.raises(ValueError, match="code cells differ"):
        merge_outputs(edited, executed / "01-a.ipynb")
    with pytest.raises(FileNotFoundError, match="no executed notebooks"):
        cache_executed(tmp_path / "empty", sources, tmp_path / "cache")


def test_execution_seconds_come_from_nbclient_timings(tmp_path):
    import nbformat
    from gradpath.book.executed import execution_seconds

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")]
    nb.cells[0].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00.000000Z",
                                         "shell.execute_reply": "2026-01-01T00:00:01.500000Z"}
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:02.000000Z",
                                         "shell.execute_reply": "2026-01-01T00:00:04.250000Z"}
    path = tmp_path / "timed.ipynb"
    nbformat.write(nb, path)
    assert execution_seconds(path) == 4.25
    nb.cells = [nbformat.v4.new_code_cell("1")]
    nbformat.write(nb, path)
    assert execution_seconds(path) is None
