"""Interactive figures that work on the static site with no kernel.

:func:`slider_figure` builds a plotly figure whose slider switches between precomputed results
(one "frame" per slider position), and :func:`show` displays it. On the book's pages plotly.js is
served from the site's own ``_static/`` (:mod:`gradpath.book.site`); in a live notebook that has no
copy on the page yet (Colab, Binder), the figure loads plotly.js itself.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from IPython.display import HTML
from plotly.offline import get_plotlyjs_version

from gradpath.book.site import PLOTLY_MARKER
from gradpath.plots import PALETTE

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def _clean(values: Sequence[float]) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def slider_figure(frames: Mapping[str, Series], *, title: str, x_title: str, y_title: str,
                  slider_label: str, log_y: bool = True, log_x: bool = False,
                  active: int = 0) -> go.Figure:
    """A figure with one slider position per entry of ``frames``.

    Args:
        frames: ``{slider position label: {series name: (xs, ys)}}``. Every frame should hold the
            same series names so the legend stays put. Non-finite values become gaps.
        slider_label: shown before the current position, e.g. ``"depth: "``.
        active: the position shown first.

    Raises:
        ValueError: if there are no frames or ``active`` is out of range.
    """
    if not frames:
        raise ValueError("frames is empty: pass {position label: {series: (xs, ys)}}")
    labels = list(frames)
    if not 0 <= active < len(labels):
        raise ValueError(f"active must be in [0, {len(labels) - 1}], got {active}")
    fig = go.Figure()
    owner: list[int] = []
    for f, label in enumerate(labels):
        for s, (name, (xs, ys)) in enumerate(frames[label].items()):
            fig.add_trace(go.Scatter(
                x=list(xs), y=_clean(ys), name=name, mode="lines+markers",
                line={"color": PALETTE[s % len(PALETTE)]}, visible=(f == active),
                legendgroup=name, showlegend=True))
            owner.append(f)
    steps = [{"method": "update", "label": str(label),
              "args": [{"visible": [o == f for o in owner]}]} for f, label in enumerate(labels)]
    fig.update_layout(
        title=title, template="plotly_white", height=430, margin={"t": 60, "b": 40},
        xaxis={"title": x_title, "type": "log" if log_x else "linear"},
        yaxis={"title": y_title, "type": "log" if log_y else "linear", "exponentformat": "power"},
        sliders=[{"active": active, "currentvalue": {"prefix": slider_label}, "steps": steps,
                  "pad": {"t": 50}}],
    )
    return fig


def to_html(fig: go.Figure) -> str:
    """HTML for ``fig`` that draws with the page's plotly.js, loading it only when absent."""
    div_id = f"gradpath-{uuid.uuid4().hex[:12]}"
    spec = fig.to_json()
    version = get_plotlyjs_version()
    # The figure waits for the page's local plotly.js; a live notebook with none fetches it.
    return f"""<div id="{div_id}" class="{PLOTLY_MARKER}" style="width:100%;min-height:430px"></div>
<script>
(function () {{
  var spec = {spec};
  function draw() {{
    var el = document.getElementById("{div_id}");
    window.Plotly.newPlot(el, spec.data, spec.layout, {{responsive: true, displaylogo: false}});
  }}
  if (window.Plotly) {{ draw(); return; }}
  var s = document.createElement("script");
  s.src = "https://cdn.plot.ly/plotly-" + {json.dumps(version)} + ".min.js";
  s.onload = draw;
  document.head.appendChild(s);
}})();
</script>"""


def show(fig: go.Figure) -> HTML:
    """Return ``fig`` as an HTML object; the last line of a cell displays it."""
    return HTML(to_html(fig))
