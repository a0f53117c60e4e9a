"""Progress bars for long loops: ``tqdm.auto`` in a live notebook or terminal, silent in the book.

In the static book a tqdm bar would be a widget that needs JavaScript from a CDN, so bars are
turned off there (and whenever ``GRADPATH_PROGRESS=0``). tqdm is optional: without it (a bare
``pip install gradpath``) loops simply run without a bar.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
PROGRESS_ENV = "GRADPATH_PROGRESS"
STATIC_BUILD_ENV = "GRADPATH_STATIC_BUILD"


def is_static_build() -> bool:
    """True while the notebook runs inside the book build (its output becomes a static page).

    The book's Sphinx extension (:mod:`gradpath.book.site`) sets ``GRADPATH_STATIC_BUILD=1``,
    and the notebook kernels inherit it.
    """
    return os.environ.get(STATIC_BUILD_ENV, "") == "1"


def progress_enabled() -> bool:
    """Whether progress bars are shown."""
    return not is_static_build() and os.environ.get(PROGRESS_ENV, "1") != "0"


def progress(items: Iterable[T], description: str = "", total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar when bars are enabled."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional dependency of the core
        yield from items
        return
    yield from tqdm(items, desc=description, total=total, disable=not progress_enabled(),
                    leave=False)
