"""Progress bars for long loops: ``tqdm.auto`` in a live notebook or terminal, silent in the book.

In the static book a tqdm bar would be a widget that needs JavaScript from a CDN, so bars are
turned off there (and whenever ``GRADPATH_PROGRESS=0``). tqdm is optional: without it (a bare
``pip install gradpath``) loops simply run without a bar.

In a notebook kernel with ipywidgets, ``tqdm.auto`` picks tqdm's widget bar, which a live front
end (Jupyter, Colab) updates. A notebook saved without a widget manager (run by nbclient, opened
on GitHub, Colab's saved output) keeps only the plain-text copy of the bar taken when it was
first displayed: ``0%|...``, frozen. So the bar here is displayed under an IPython display id
(see ``IPython.display.display(..., display_id=True)``), and when the loop ends that output is
replaced with what is true then: nothing, once the loop is over (it ran to its end, or the caller
left it early, as :func:`gradpath.training.train` does when the loss stops being finite; tqdm's
``leave=False`` removes the bar in the live front end too), or the bar at its last count (red in
a live front end) if the iterable itself raised.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
PROGRESS_ENV = "GRADPATH_PROGRESS"
STATIC_BUILD_ENV = "GRADPATH_STATIC_BUILD"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def is_static_build() -> bool:
    """True while the notebook runs inside the book build (its output becomes a static page).

    The book's Sphinx extension (:mod:`gradpath.book.site`) sets ``GRADPATH_STATIC_BUILD=1``,
    and the notebook kernels inherit it.
    """
    return os.environ.get(STATIC_BUILD_ENV, "") == "1"


def progress_enabled() -> bool:
    """Whether progress bars are shown."""
    return not is_static_build() and os.environ.get(PROGRESS_ENV, "1") != "0"


@functools.cache
def _notebook_bar(base: type) -> type:
    """tqdm's widget bar (``base``), displayed so that the saved output ends true."""

    class NotebookBar(base):  # type: ignore[misc, valid-type]
        keep = False          # set when the iterable raised: the bar then stays at its count

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._handle = None
            super().__init__(*args, display=False, **kwargs)   # we display it ourselves
            if not self.disable:
                from IPython.display import display

                self._handle = display(self._bundle(), raw=True, display_id=True)
                self.displayed = True

        def _bundle(self) -> dict[str, Any]:
            """The widget's view and the bar's text now (what ipywidgets' own display sends)."""
            return {"text/plain": self.container.__repr__(True),
                    WIDGET_VIEW: {"version_major": 2, "version_minor": 0,
                                  "model_id": self.container.model_id}}

        def close(self) -> None:
            handle, self._handle = self._handle, None   # close() runs again from __del__
            super().close()
            if handle is None:
                return
            if self.keep:
                handle.update(self._bundle(), raw=True)
            else:        # the view goes from the live front end and the saved notebook alike
                handle.update({"text/plain": ""}, raw=True)
                self.container.close()

    return NotebookBar


def progress(items: Iterable[T], description: str = "", total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar when bars are enabled.

    The bar is ``tqdm.auto``'s: a widget in a notebook kernel with ipywidgets, text elsewhere. It
    disappears when the loop is over (``leave=False``) — it ran to its end, or the caller left
    it early — in a live front end and in the saved notebook alike. If ``items`` itself raises,
    the bar stays at its last count.
    """
    if not progress_enabled():
        yield from items
        return
    try:
        from tqdm.auto import tqdm
        from tqdm.notebook import tqdm_notebook
    except ImportError:  # tqdm is an optional dependency of the core
        yield from items
        return
    kind = _notebook_bar(tqdm) if issubclass(tqdm, tqdm_notebook) else tqdm
    bar = kind(items, desc=description, total=total, leave=False)   # the total from len(items)
    try:
        for item in items:
            yield item
            bar.update()
    except GeneratorExit:          # the caller left the loop (break, return, an error of its own)
        raise
    except BaseException:          # the iterable failed: show where
        bar.keep = True
        raise
    finally:
        bar.close()
