"""The doctor's report as a figure and as a self-contained HTML page, on hand-made measurements.

What ``Report.figure``'s docstring promises: on the left ``log10 ‖∂L/∂W‖`` of every weight layer
(rows, input side on top) at every step (columns), the first non-finite steps marked by a red
line; on the right ``‖ΔW‖/‖W‖`` per layer at the sampled steps on a log scale, over the
``1e-5``–``1e-1`` band with ``1e-3`` dashed. ``to_html``: the findings, the per-layer table and
the figure as an inline PNG.
"""

from __future__ import annotations

import base64
import math
import struct

import matplotlib
import numpy as np
import pytest
from gradpath.doctor import Finding, Report, apply_rules
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from test_doctor_rules import _report

NAN = math.nan
LAID_OUT: list[int] = []


@pytest.fixture(autouse=True)
def _layout_spy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tight_layout`` is four fifths of a figure's time and moves no artist these tests read
    (titles, labels, images, lines, limits): it is replaced by a spy that records each call, and
    ``_axes`` asserts it ran once per figure. The real one runs in
    ``test_a_figure_draws_without_warnings`` and in tests/test_doctor.py."""
    LAID_OUT.clear()
    if request.node.name != "test_a_figure_draws_without_warnings":
        monkeypatch.setattr(Figure, "tight_layout", lambda self, *a, **k: LAID_OUT.append(
            (id(self), a, k)))


def _axes(report):  # type: ignore[no-untyped-def]
    figure = report.figure()
    assert [call for call in LAID_OUT if call[0] == id(figure)] == [(id(figure), (), {})]
    assert len(figure.axes) in (2, 3)
    return figure, figure.axes[0], figure.axes[1], figure.axes[2:]


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's header (its IHDR chunk)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


@pytest.fixture
def small_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTML tests read the page, not the figure (tested above): ``Report.figure`` draws a
    1 × 1 inch figure instead, cheap to save, whose PNG size (110 × 110 pixels) shows the dpi."""
    monkeypatch.setattr(Report, "figure", lambda self: Figure(figsize=(1.0, 1.0)))


def test_the_heat_map_is_log10_of_the_gradient_norms_layers_by_steps() -> None:
    g = np.array([[1.0, 10.0, 100.0], [1e-3, 0.0, math.inf], [NAN, 1e4, 1.0], [10.0, 10.0, 10.0]])
    figure, left, right, (colour_bar,) = _axes(_report(steps=4, gradient_norms=g))
    assert tuple(figure.get_size_inches()) == (10.0, 3.4)
    image = left.images[0]
    values = np.ma.filled(image.get_array().astype(float), NAN)
    expected = np.array([[0.0, -3.0, NAN, 1.0], [1.0, NAN, 4.0, 1.0], [2.0, NAN, 0.0, 1.0]])
    np.testing.assert_array_equal(values, expected)        # 0, inf and nan are not drawn
    assert image.get_clim() == (-3.0, 4.0)
    assert (image.origin, image.get_cmap().name, image.get_interpolation()) == (
        "upper", "viridis", "nearest")
    assert [t.get_text() for t in left.get_yticklabels()] == ["a", "b", "c"]
    assert list(left.get_yticks()) == [0, 1, 2]
    assert left.get_xlabel() == "step" and left.get_title() == "gradient norm per layer"
    assert colour_bar.get_ylabel() == "log10 ‖∂L/∂W‖"
    assert colour_bar.get_ylim() == (-3.0, 4.0)              # the heat map's scale
    assert not left.lines                                    # no non-finite step to mark


def test_a_flat_heat_map_gets_a_unit_colour_range_and_the_model_is_named() -> None:
    report = _report(("", "fc"), steps=3, gradient_norms=np.full((3, 2), 100.0))
    _, left, _, _ = _axes(report)
    assert left.images[0].get_clim() == (1.5, 2.5)
    assert [t.get_text() for t in left.get_yticklabels()] == ["(model)", "fc"]


def test_many_layers_get_twelve_ticks_from_first_to_last() -> None:
    names = tuple(f"l{i}" for i in range(13))
    _, left, _, _ = _axes(_report(names, steps=2))
    assert [t.get_text() for t in left.get_yticklabels()] == [
        "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "l12"]
    twelve = tuple(f"l{i}" for i in range(12))
    _, left, _, _ = _axes(_report(twelve, steps=2))
    assert [t.get_text() for t in left.get_yticklabels()] == list(twelve)


def test_the_first_nonfinite_steps_are_marked_in_red() -> None:
    report = _report(steps=8, first_nonfinite_loss_step=5, first_nonfinite_gradient_step=2)
    _, left, _, _ = _axes(report)
    marks = sorted((line.get_xdata()[0], line.get_color(), line.get_linewidth())
                   for line in left.lines)
    assert marks == [(2, "#D00000", 1.2), (5, "#D00000", 1.2)]
    same = _report(steps=8, first_nonfinite_loss_step=0, first_nonfinite_gradient_step=0)
    assert [line.get_xdata()[0] for line in _axes(same)[1].lines] == [0]


def test_no_finite_gradient_norm_says_so() -> None:
    _, left, _, rest = _axes(_report(steps=2, gradient_norms=np.full((2, 3), NAN)))
    assert not left.images and not rest                      # no heat map, no colour bar
    [text] = left.texts
    assert text.get_text() == "no finite gradient norm of a weight matrix"
    assert text.get_position() == (0.5, 0.5) and text.get_transform() == left.transAxes
    assert (text.get_ha(), text.get_va()) == ("center", "center")
    _, left, _, rest = _axes(_report((), steps=2, gradient_norms=np.ones((2, 0))))
    assert left.texts and not rest


def test_the_update_ratio_panel_its_band_and_its_lines() -> None:
    upd = np.array([[1e-3, 2e-2, NAN], [2e-3, 0.0, NAN], [3e-3, 3e-2, NAN], [4e-3, 4e-2, NAN]])
    report = _report(steps=8, sample_steps=[0, 2, 4, 6], update_ratio=upd)
    _, _, right, _ = _axes(report)
    assert right.get_yscale() == "log" and right.get_xlabel() == "step"
    assert right.get_title() == "update ratio ‖ΔW‖/‖W‖ (input side dark)"
    [band] = right.patches
    assert band.get_y() == 1e-5 and math.isclose(band.get_y() + band.get_height(), 0.1)
    assert band.get_facecolor() == to_rgba("#009E73", 0.10)
    typical, *layers = right.lines
    assert typical.get_linestyle() == "--" and list(typical.get_ydata()) == [1e-3, 1e-3]
    assert typical.get_color() == "#009E73"
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "1e-05 to 0.1: not flagged", "0.001: typical"]
    # one line per layer with a positive finite ratio, at its sample steps; 'c' has none
    assert len(layers) == 2
    np.testing.assert_array_equal(layers[0].get_xydata(), [[0, 1e-3], [2, 2e-3], [4, 3e-3],
                                                           [6, 4e-3]])
    np.testing.assert_array_equal(layers[1].get_xydata(), [[0, 2e-2], [4, 3e-2], [6, 4e-2]])
    assert layers[0].get_marker() == "None" and layers[1].get_marker() == "."  # 3 points: dots
    # colours by depth on viridis, the input side dark
    from matplotlib import colormaps
    viridis = colormaps["viridis"]
    assert layers[0].get_color() == viridis(0.0) and layers[1].get_color() == viridis(0.425)
    assert not right.texts


def test_an_unmeasured_update_ratio_says_pass_the_optimizer() -> None:
    report = _report(steps=4, update_ratio=np.full((4, 3), NAN))
    _, _, right, _ = _axes(report)
    [text] = right.texts
    assert text.get_text() == "not measured\n(pass the optimizer)"
    assert text.get_transform() == right.transAxes and text.get_position() == (0.5, 0.5)
    assert right.get_yscale() == "log" and right.get_ylim() == (1e-7, 1.0)
    assert len(right.lines) == 1                              # the dashed 1e-3 only
    zeros = _report(steps=4, update_ratio=np.zeros((4, 3)))  # zero updates cannot be drawn
    assert _axes(zeros)[2].texts[0].get_text() == "not measured\n(pass the optimizer)"


def test_a_figure_draws_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    import io

    figure = _report(update_ratio=np.full((8, 3), NAN)).figure()
    figure.savefig(io.BytesIO(), format="png")
    assert not list(recwarn)


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("small_figure")
def test_the_html_page_of_a_healthy_report() -> None:
    report = _report(("", "fc<1>"), steps=4, layer_sizes=[1000, 2500], model="Net<&>",
                     gradient_norms=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]),
                     update_ratio=np.full((4, 2), 2e-4), notes=["a <note>"])
    page = report.to_html()
    lines = page.split("\n")
    assert lines[:3] == ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
                         "<title>Gradient doctor: Net&lt;&amp;&gt;</title>"]
    assert lines[3] == (
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;}"
        "table{border-collapse:collapse;font-size:0.9rem;}td,th{border:1px solid #ccc;"
        "padding:0.25rem 0.5rem;text-align:left;vertical-align:top;}"
        ".kind{font-weight:bold;color:#D55E00;}img{max-width:100%;}</style></head><body>")
    assert "<h2>Gradient doctor: Net&lt;&amp;&gt;</h2>" in lines
    assert "<p>4 steps, 2 weight layers. <b>Healthy: no rule fired.</b></p>" in lines
    assert "<th>kind</th>" not in page                         # no findings table
    assert ("<table><tr><th>layer</th><th>type</th><th>params</th><th>grad norm</th>"
            "<th>update ratio</th><th>output RMS</th></tr>") in lines
    assert "</table><p><small>Medians over the run.</small></p>" in lines
    assert ("<tr><td><code>(model)</code></td><td>Linear</td><td>1,000</td><td>4</td>"
            "<td>2.00e-04</td><td>1</td></tr>") in lines
    assert ("<tr><td><code>fc&lt;1&gt;</code></td><td>Linear</td><td>2,500</td><td>5</td>"
            "<td>2.00e-04</td><td>1</td></tr>") in lines
    assert "<p><small>Note: a &lt;note&gt;</small></p>" in lines
    assert lines[-1] == "</body></html>"
    assert page.count("<img alt='gradient norms and update ratios' src='data:image/png;base64,"
                      ) == 1
    png = page.split("base64,")[1].split("'></p>")[0]
    assert _png_size(base64.b64decode(png, validate=True)) == (110, 110)
    assert "http" not in page and report._repr_html_() == page


@pytest.mark.usefixtures("small_figure")
def test_the_html_page_lists_each_finding() -> None:
    report = _report(dead={"relu": [0.9]}, first_nonfinite_loss_step=3)
    report.findings = apply_rules(report)
    report.findings.append(Finding("clipping", "", "e <1>", "f & g", "ch"))
    page = report.to_html()
    assert "<b>3 finding(s).</b>" in page
    assert ("<table><tr><th>kind</th><th>where</th><th>evidence</th><th>fix</th>"
            "<th>learn why</th></tr>") in page
    assert ("<tr><td class='kind'>clipping</td><td><code>(whole model)</code></td>"
            "<td>e &lt;1&gt;</td><td>f &amp; g</td><td>ch</td></tr>") in page
    assert "<td class='kind'>nonfinite</td><td><code>(whole model)</code> (step 3)</td>" in page
    assert "<td class='kind'>dead_units</td><td><code>relu</code></td>" in page
    png = page.split("base64,")[1].split("'")[0]
    assert _png_size(base64.b64decode(png)) == (110, 110)           # saved at 110 dpi


def test_the_figure_s_sizes_colours_and_type() -> None:
    """The presentation the figure was designed with (so that a changed constant is a decision)."""
    upd = np.array([[1e-3, 2e-2, NAN], [2e-3, 3e-2, NAN], [3e-3, 4e-2, NAN], [4e-3, 5e-2, NAN]])
    report = _report(steps=8, sample_steps=[0, 2, 4, 6], update_ratio=upd)
    figure, left, right, (colour_bar,) = _axes(report)
    assert figure.get_facecolor() == (1.0, 1.0, 1.0, 1.0)
    outer = left.get_subplotspec().get_topmost_subplotspec().get_gridspec()
    assert outer.get_width_ratios() == [1.35, 1.0] and outer.get_geometry() == (1, 2)
    # the colour bar takes 5% of the heat map's width, 2% apart
    assert np.allclose(left.get_subplotspec().get_gridspec().get_width_ratios(), [0.93, 0.05])
    assert left.get_aspect() == "auto"
    assert [t.get_fontsize() for t in left.get_yticklabels()] == [7.0, 7.0, 7.0]
    assert left.title.get_fontsize() == 10.0 and right.title.get_fontsize() == 10.0
    [band] = right.patches
    assert band.get_linewidth() == 0.0
    typical, *layers = right.lines
    assert typical.get_linewidth() == 1.0 and [line.get_linewidth() for line in layers] == [
        1.2, 1.2]
    legend = right.get_legend()
    assert legend._loc == 1 and legend.handlelength == 1.5                  # 1: upper right
    assert [t.get_fontsize() for t in legend.get_texts()] == [7.0, 7.0]
    for axis in (right.xaxis, right.yaxis):
        assert all(line.get_visible() and line.get_alpha() == 0.3 for line in axis.get_gridlines())
    assert not any(line.get_visible() for line in left.xaxis.get_gridlines())


def test_the_grey_notes_are_grey() -> None:
    _, left, right, _ = _axes(_report(steps=2, gradient_norms=np.full((2, 3), NAN),
                                      update_ratio=np.full((2, 3), NAN)))
    assert [t.get_color() for t in left.texts + right.texts] == ["0.4", "0.4"]

def test_the_heat_map_has_no_grid_even_under_the_course_style() -> None:
    from gradpath.plots import COURSE_STYLE
    with matplotlib.rc_context(COURSE_STYLE):
        _, left, right, _ = _axes(_report(steps=2))
    assert not any(line.get_visible() for line in left.xaxis.get_gridlines())
    assert all(line.get_visible() for line in right.yaxis.get_gridlines())
