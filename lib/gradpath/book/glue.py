"""Numbers from a notebook's cells into its prose: MyST-NB's glue, with a fallback for Colab."""

from __future__ import annotations

from typing import Any


def glue(name: str, value: Any) -> Any:
    """Make ``value`` available to the page's prose as ``{glue:text}`name```, and return it.

    Uses MyST-NB's ``glue`` when it is installed (the book build, Binder); elsewhere (Colab) it
    prints ``name = value`` so the number is still visible next to the prose that cites it.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        print(f"{name} = {value}")
    else:
        myst_glue(name, value, display=False)
    return value
