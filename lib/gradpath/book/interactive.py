"""Interactive figures that work on the static site with no kernel.

:func:`slider_figure` builds a plotly figure whose slider switches between precomputed results
(one "frame" per slider position), and :func:`show` displays it.

On the book's pages the figure is drawn by the site's script (``gradpath.js``, added by
:mod:`gradpath.book.site`): it loads the site's own partial plotly bundle only when the figure
comes near the screen, so the page paints without waiting for plotly; it adds a native range
input that moves the slider from the keyboard and names each position for screen readers; and it
restyles the figure when the reader switches between light and dark mode. In a live notebook
(Colab, Binder, Jupyter) there is no such script, and the figure draws itself with the notebook's
plotly.js or fetches it.

Every figure carries a text description (``description=``, or one written from the title, the axes,
the series and the slider positions) that screen readers announce.
"""

from __future__ import annotations

import html
import json
import math
import uuid
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from IPython.display import HTML
from plotly.offline import get_plotlyjs_version

from gradpath.book.site import PLOTLY_MARKER, SITE_META
from gradpath.plots import PALETTE

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]
HEIGHT = 430

__all__ = ["slider_figure", "describe_slider_figure", "log_ticks", "to_html", "show"]


def _clean(values: Sequence[float]) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in values]


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _tick_text(mantissa: int, exponent: int) -> str:
    if -3 <= exponent <= 3:
        value = mantissa * 10.0 ** exponent
        return f"{value:.{max(0, -exponent)}f}"
    power = "10" + str(exponent).translate(_SUPERSCRIPT)
    return power if mantissa == 1 else f"{mantissa}×{power}"


def log_ticks(lo: float, hi: float, max_ticks: int = 8) -> tuple[list[float], list[str]]:
    """Tick positions and unambiguous labels for a log axis showing ``[lo, hi]`` (both > 0).

    Every label is a whole number (``0.001``, ``20``, ``10⁻⁸``, ``5×10⁷``), never the bare
    mantissa digits (``2 3 … 9``) that plotly writes between powers of ten. A range within one
    decade gets 1-2-3-5-7 ticks, within two decades 1-2-5 ticks; a wider one gets powers of ten,
    every second or fifth one when there are more than ``max_ticks``.

    Raises:
        ValueError: if ``lo`` or ``hi`` is not a positive finite number, or ``lo > hi``.
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"log_ticks needs 0 < lo <= hi (finite), got lo={lo}, hi={hi}")
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    k1 = max(k1, k0 + 1)
    decades = k1 - k0
    if decades <= 2:
        mantissas = (1, 2, 3, 5, 7) if decades == 1 else (1, 2, 5)
        ticks = [(m, k) for k in range(k0, k1 + 1) for m in mantissas]
    else:
        step = next(s for s in (1, 2, 5, 10, 20, 50, 100) if decades / s <= max_ticks)
        first = k0 - (k0 % step)
        ticks = [(1, k) for k in range(first, k1 + step, step)]
    values = [m * 10.0 ** k for m, k in ticks]
    return values, [_tick_text(m, k) for m, k in ticks]


def _axis_ticks(frame: Series, axis: int) -> dict[str, list[float] | list[str]]:
    values = [float(v) for xs_ys in frame.values() for v in xs_ys[axis]]
    positive = [v for v in values if math.isfinite(v) and v > 0]
    if not positive:
        return {}
    vals, text = log_ticks(min(positive), max(positive))
    return {"tickvals": vals, "ticktext": text}


def describe_slider_figure(frames: Mapping[str, Series], *, title: str, x_title: str,
                           y_title: str, slider_label: str) -> str:
    """A plain-text description of a slider figure, for readers who cannot see it."""
    labels = [str(label) for label in frames]
    series: list[str] = []
    for frame in frames.values():
        series.extend(name for name in frame if name not in series)
    shown = ", ".join(labels) if len(labels) <= 8 else (
        f"{', '.join(labels[:3])}, …, {', '.join(labels[-2:])} ({len(labels)} positions)")
    return (f"Interactive figure: {title}. It plots {y_title} against {x_title}, one line for "
            f"each of: {', '.join(series)}. A slider ({slider_label.strip(' :=')}) switches "
            f"between {shown}.")


def slider_figure(frames: Mapping[str, Series], *, title: str, x_title: str, y_title: str,
                  slider_label: str, log_y: bool = True, log_x: bool = False,
                  active: int = 0, description: str | None = None) -> go.Figure:
    """A figure with one slider position per entry of ``frames``.

    Args:
        frames: ``{slider position label: {series name: (xs, ys)}}``. Every frame should hold the
            same series names so the legend stays put. Non-finite values become gaps.
        slider_label: shown before the current position, e.g. ``"depth: "``.
        log_y, log_x: log axes get explicit, unambiguous tick labels for each position
            (:func:`log_ticks`).
        active: the position shown first.
        description: what the figure shows, in words, for screen readers (default: written by
            :func:`describe_slider_figure`). Kept in ``fig.layout.meta["description"]``.

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

    def axes_update(f: int) -> dict[str, object]:
        update: dict[str, object] = {}
        for axis, is_log, key in ((0, log_x, "xaxis"), (1, log_y, "yaxis")):
            if is_log:
                for k, v in _axis_ticks(frames[labels[f]], axis).items():
                    update[f"{key}.{k}"] = v
        return update

    steps = [{"method": "update", "label": str(label),
              "args": [{"visible": [o == f for o in owner]}, axes_update(f)]}
             for f, label in enumerate(labels)]
    if description is None:
        description = describe_slider_figure(frames, title=title, x_title=x_title,
                                             y_title=y_title, slider_label=slider_label)
    fig.update_layout(
        title=title, template="plotly_white", height=HEIGHT, margin={"t": 60, "b": 40},
        xaxis={"title": x_title, "type": "log" if log_x else "linear"},
        yaxis={"title": y_title, "type": "log" if log_y else "linear"},
        sliders=[{"active": active, "currentvalue": {"prefix": slider_label}, "steps": steps,
                  "pad": {"t": 50}}],
        meta={"description": description, "slider_label": slider_label},
    )
    for key, value in axes_update(active).items():
        axis, attribute = key.split(".")
        fig.layout[axis][attribute] = value
    return fig


def to_html(fig: go.Figure) -> str:
    """HTML for ``fig``: drawn by the book's script on the site, by itself in a notebook."""
    div_id = f"gradpath-{uuid.uuid4().hex[:12]}"
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    description = str(meta.get("description") or fig.layout.title.text or "Interactive figure")
    spec = fig.to_json().replace("</", "<\\/")
    version = get_plotlyjs_version()
    # On the site, gradpath.js (deferred) finds the spec and draws the figure when it comes near
    # the screen. Elsewhere (a live notebook) the page has no site marker, so the figure draws
    # itself with the notebook's plotly.js, fetching it when absent.
    return f"""<figure class="gradpath-figure" role="group" aria-labelledby="{div_id}-desc">
<div id="{div_id}" class="{PLOTLY_MARKER}" style="width:100%;min-height:{HEIGHT}px"></div>
<figcaption id="{div_id}-desc" class="gradpath-sr-only">{html.escape(description)}</figcaption>
<script type="application/json" class="gradpath-spec" data-for="{div_id}">{spec}</script>
<script>
(function () {{
  if (document.querySelector('meta[name="{SITE_META}"]')) return;
  var el = document.getElementById("{div_id}");
  var spec = JSON.parse(el.parentNode.querySelector("script.gradpath-spec").textContent);
  function draw() {{
    window.Plotly.newPlot(el, spec.data, spec.layout, {{responsive: true, displaylogo: false}});
  }}
  if (window.Plotly) {{ draw(); return; }}
  var s = document.createElement("script");
  s.src = "https://cdn.plot.ly/plotly-" + {json.dumps(version)} + ".min.js";
  s.onload = draw;
  document.head.appendChild(s);
}})();
</script>
</figure>"""


def show(fig: go.Figure) -> HTML:
    """Return ``fig`` as an HTML object; the last line of a cell displays it."""
    return HTML(to_html(fig))
