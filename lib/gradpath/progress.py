"""Progress bars for long loops: ``tqdm.auto`` in a live notebook or terminal, silent in the book.

In the static book a tqdm bar would be a widget that needs JavaScript from a CDN, so bars are
turned off there (and whenever ``GRADPATH_PROGRESS=0``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

from gradpath.site import is_static_build

T = TypeVar("T")
PROGRESS_ENV = "GRADPATH_PROGRESS"


def progress_enabled() -> bool:
    """Whether progress bars are shown."""
    return not is_static_build() and os.environ.get(PROGRESS_ENV, "1") != "0"


def progress(items: Iterable[T], description: str = "", total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar when bars are enabled."""
    yield from tqdm(items, desc=description, total=total, disable=not progress_enabled(),
                    leave=False)
