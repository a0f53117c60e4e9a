"""Progress bars in a notebook: live where a widget front end runs, never frozen where none does.

nbclient executes a notebook as a viewer would later show it (GitHub, a saved Colab notebook, the
book's execution cache): no widget manager, only the outputs saved in the file. Whatever a bar
leaves there must be true once the loop has ended.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from gradpath.progress import progress
from nbclient import NotebookClient

WIDGET = "application/vnd.jupyter.widget-view+json"


def _executed(*code: str, static: bool = False) -> list[dict]:
    """The outputs of running ``code`` (after bars are switched on) in a fresh kernel."""
    setup = ("import os\n"
             "os.environ['GRADPATH_PROGRESS'] = '1'\n"
             f"os.environ['GRADPATH_STATIC_BUILD'] = {'1' if static else ''!r}\n"
             "from gradpath.progress import progress")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (setup, *code)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return [output for cell in nb.cells[1:] for output in cell.outputs]


def _shown(output: dict) -> str:
    """What a viewer without a widget manager shows for one output."""
    if output["output_type"] == "stream":
        return output["text"]
    return output.get("data", {}).get("text/plain", "")


@pytest.fixture(scope="module")
def finished() -> list[dict]:
    return _executed("for step in progress(range(7), 'train'):\n    pass",
                     "total = sum(progress(iter(range(5)), 'no total'))",
                     "print('after', total)")


def test_a_finished_bar_leaves_no_frozen_text(finished):
    for output in finished:
        assert not re.search(r"\d+%\|", _shown(output)), \
            f"a finished bar left {_shown(output)!r} in the saved notebook"
        assert not re.search(r"\b0it\b", _shown(output)), _shown(output)
    assert "after 10" in "".join(map(_shown, finished))


def test_a_finished_bar_leaves_no_widget_view(finished):
    """No 'widget model not found' box either: the saved output holds no view of a closed bar."""
    assert not [o for o in finished if WIDGET in o.get("data", {})]


def test_the_live_front_end_gets_a_widget_bar():
    """While the loop runs, the bar is an ipywidgets view that the front end updates."""
    outputs = _executed("import ipywidgets\n"
                        "seen = []\n"
                        "for step in progress(range(3), 'train'):\n"
                        "    seen += [type(w).__name__ for w in "
                        "ipywidgets.Widget.widgets.values()]\n"
                        "print(sorted(set(seen)))")
    printed = "".join(map(_shown, outputs))
    assert "FloatProgress" in printed and "TqdmHBox" in printed, printed


def test_a_loop_the_caller_leaves_early_leaves_no_bar():
    """As train() does when the loss stops being finite: the loop is over, so is its bar."""
    outputs = _executed("for step in progress(range(10), 'train'):\n"
                        "    if step == 4:\n"
                        "        break\n"
                        "print('stopped at', step)")
    assert [_shown(o) for o in outputs if _shown(o)] == ["stopped at 4\n"]
    assert not [o for o in outputs if WIDGET in o.get("data", {})]


def test_a_failing_iterable_leaves_the_bar_where_it_stopped():
    outputs = _executed("def items():\n"
                        "    yield from range(4)\n"
                        "    raise RuntimeError('the data ran out')\n"
                        "try:\n"
                        "    for step in progress(items(), 'train', total=10):\n"
                        "        pass\n"
                        "except RuntimeError as error:\n"
                        "    print(error)")
    shown = "".join(map(_shown, outputs))
    assert re.search(r"train: +40%\|.*\| 4/10", shown), shown
    assert "the data ran out" in shown


def test_the_static_book_build_shows_no_bar():
    outputs = _executed("for step in progress(range(3), 'train'):\n    pass", static=True)
    assert outputs == []


def test_progress_yields_every_item_when_disabled(monkeypatch):
    monkeypatch.setenv("GRADPATH_PROGRESS", "0")
    assert list(progress(iter("abc"), "letters")) == ["a", "b", "c"]


def test_progress_in_a_terminal_yields_every_item_and_clears_its_bar(monkeypatch, capsys):
    monkeypatch.setenv("GRADPATH_PROGRESS", "1")
    monkeypatch.delenv("GRADPATH_STATIC_BUILD", raising=False)
    assert list(progress(range(5), "steps")) == [0, 1, 2, 3, 4]
    for step in progress(iter(range(5)), "steps"):
        if step == 2:
            break
    err = capsys.readouterr().err
    assert "steps:" in err and err.endswith("\r")   # leave=False: the line is wiped at the end
