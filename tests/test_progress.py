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


def _executed(*code: str, static: bool = False) -> list[list[dict]]:
    """Each cell's outputs, after running ``code`` (bars switched on) in one fresh kernel."""
    setup = ("import os\n"
             "os.environ['GRADPATH_PROGRESS'] = '1'\n"
             f"os.environ['GRADPATH_STATIC_BUILD'] = {'1' if static else ''!r}\n"
             "from gradpath.progress import progress")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (setup, *code)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return [cell.outputs for cell in nb.cells[1:]]


def _shown(output: dict) -> str:
    """What a viewer without a widget manager shows for one output."""
    if output["output_type"] == "stream":
        return output["text"]
    return output.get("data", {}).get("text/plain", "")


def _views(outputs: list[dict]) -> list[dict]:
    return [o for o in outputs if WIDGET in o.get("data", {})]


# One notebook, one kernel: a cell per way a loop can end.
LOOPS = {
    "live": "import ipywidgets, warnings\n"
            "warnings.simplefilter('ignore', DeprecationWarning)   # Widget.widgets, in 8.x\n"
            "seen = []\n"
            "for step in progress(range(3), 'train'):\n"
            "    seen += [type(w).__name__ for w in ipywidgets.Widget.widgets.values()]\n"
            "print(sorted(set(seen)))",
    "finished": "for step in progress(range(7), 'train'):\n"
                "    pass\n"
                "print('after', step)",
    "no total": "print('after', sum(progress(iter(range(5)), 'no total')))",
    # as train() does when the loss stops being finite
    "left early": "for step in progress(range(10), 'train'):\n"
                  "    if step == 4:\n"
                  "        break\n"
                  "print('stopped at', step)",
    "failing": "def items():\n"
               "    yield from range(4)\n"
               "    raise RuntimeError('the data ran out')\n"
               "try:\n"
               "    for step in progress(items(), 'train', total=10):\n"
               "        pass\n"
               "except RuntimeError as error:\n"
               "    print(error)",
}


@pytest.fixture(scope="module")
def saved() -> dict[str, list[dict]]:
    """{loop: the outputs its cell keeps in the saved notebook}."""
    return dict(zip(LOOPS, _executed(*LOOPS.values()), strict=True))


def test_the_live_front_end_gets_a_widget_bar(saved):
    """While the loop runs, the bar is an ipywidgets view that the front end updates."""
    printed = "".join(map(_shown, saved["live"]))
    assert "FloatProgress" in printed and "TqdmHBox" in printed, printed


@pytest.mark.parametrize(("loop", "printed"), [("live", "TqdmHBox"), ("finished", "after 6"),
                                               ("no total", "after 10"),
                                               ("left early", "stopped at 4")])
def test_a_loop_that_is_over_leaves_no_bar(saved, loop, printed):
    """Only the cell's own print stays: no frozen ``0%|`` text, and no view of a closed bar (a
    'widget model not found' box in a viewer)."""
    [text] = [_shown(o) for o in saved[loop] if _shown(o)]
    assert printed in text and not re.search(r"\d+%\||\b0it\b", text), text
    assert not _views(saved[loop])


def test_a_failing_iterable_leaves_the_bar_where_it_stopped(saved):
    shown = "".join(map(_shown, saved["failing"]))
    assert re.search(r"train: +40%\|.*\| 4/10", shown), shown
    assert "the data ran out" in shown
    assert len(_views(saved["failing"])) == 1     # red in a live front end


def test_the_static_book_build_shows_no_bar():
    assert _executed("for step in progress(range(3), 'train'):\n    pass", static=True) == [[]]


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
