"""Live explorers: ipywidgets controls wired to a gradpath experiment.

In Jupyter, Colab or Binder, :func:`live_explorer` shows controls and a "Run" button (once: it
returns nothing to show again); each run calls the experiment function with the chosen values and
shows the figure it draws. In the static book there is no kernel to run anything, so it shows a
short note pointing to the launch buttons instead (and creates no widget, so the page needs no
widget JavaScript).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from gradpath.book.site import is_static_build

STATIC_NOTE = ("*Live explorer:* this cell shows controls when the notebook runs in Jupyter, "
               "Colab or Binder (use the launch buttons at the top of the page). "
               "The interactive figure above works right here.")


def explorer_widget(experiment: Callable[..., Any], *, run_label: str = "Run experiment",
                    **controls: Any) -> Any:
    """The ipywidgets ``interactive`` behind :func:`live_explorer`, built but not displayed.

    Works with ipywidgets 7.7 (Colab's) and 8. Pressing its button (or calling ``.update()``)
    calls ``experiment`` with the chosen values and shows the figure it draws or returns.

    Raises:
        ValueError: if no controls are given.
    """
    if not controls:
        raise ValueError("live_explorer needs at least one control, e.g. depth=(2, 50, 1)")
    import ipywidgets

    def run(**values: Any) -> None:
        result = experiment(**values)
        if result is not None and hasattr(result, "savefig"):
            display(result)
            plt.close(result)
        else:
            plt.show()

    return ipywidgets.interactive(run, {"manual": True, "manual_name": run_label}, **controls)


def live_explorer(experiment: Callable[..., Any], *, run_label: str = "Run experiment",
                  **controls: Any) -> None:
    """Show ipywidgets controls for ``experiment`` (a note instead in the static book).

    Returns ``None``, so a cell that ends with this call shows the explorer once (a returned
    widget would be shown a second time as the cell's value).

    Args:
        experiment: called with one keyword argument per control; it should draw a matplotlib
            figure (or return one).
        run_label: text of the button that runs the experiment.
        **controls: ipywidgets abbreviations, e.g. ``depth=(2, 50, 1)``,
            ``activation=["sigmoid", "tanh", "relu"]``.

    Raises:
        ValueError: if no controls are given.
    """
    if not controls:
        raise ValueError("live_explorer needs at least one control, e.g. depth=(2, 50, 1)")
    if is_static_build():
        display(Markdown(STATIC_NOTE))
        return
    display(explorer_widget(experiment, run_label=run_label, **controls))
