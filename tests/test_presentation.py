"""Plots, kernel-free figures, live explorers, quizzes and the book-build hooks."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from gradpath.book import glue as glue_module
from gradpath.book import site
from gradpath.book.interactive import show, slider_figure, to_html
from gradpath.book.quiz import QuizError, load_quiz, validate_quiz
from gradpath.book.widgets import STATIC_NOTE, live_explorer
from gradpath.plots import (
    NONFINITE_COLOR,
    plot_activation_histograms,
    plot_gradient_norms_by_layer,
    plot_norm_heatmap,
    plot_training_curves,
)


def test_gradient_norm_plot_is_log_scale_and_marks_nonfinite():
    ax = plot_gradient_norms_by_layer({"a": [1e-6, 1e-3, 1.0], "b": [1.0, float("inf"), 2.0]})
    assert ax.get_yscale() == "log"
    assert "inf/nan" in ax.get_title()
    marks = [c for c in ax.collections if c.get_facecolor().size or c.get_edgecolor().size]
    assert marks, "non-finite values must be drawn, not dropped"
    plt.close("all")
    with pytest.raises(ValueError):
        plot_gradient_norms_by_layer({})


def test_heatmap_paints_nonfinite_cells_and_rejects_bad_shapes():
    ax = plot_norm_heatmap(np.array([[1e-3, 1.0], [np.nan, 10.0]]))
    image = ax.images[0]
    assert image.cmap.get_bad()[:3] == pytest.approx(
        tuple(int(NONFINITE_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5)))
    plt.close("all")
    with pytest.raises(ValueError):
        plot_norm_heatmap(np.zeros(3))


def test_curves_and_histograms():
    ax = plot_training_curves({"run": [2.0, 1.0, float("nan")]})
    assert len(ax.lines) == 1
    fig = plot_activation_histograms({"layer 1": np.random.randn(100), "layer 2": [0.0, 1.0]})
    assert len(fig.axes) == 2
    plt.close("all")


def test_slider_figure_switches_visible_traces():
    frames = {"2": {"s": ([1, 2], [1.0, 0.1])}, "3": {"s": ([1, 2, 3], [1.0, float("nan"), 0.01])}}
    fig = slider_figure(frames, title="t", x_title="x", y_title="y", slider_label="depth: ")
    assert [t.visible for t in fig.data] == [True, False]
    steps = fig.layout.sliders[0].steps
    assert steps[1].args[0]["visible"] == [False, True]
    assert fig.data[1].y[1] is None  # nan becomes a gap, not invalid JSON
    html = to_html(fig)
    assert site.PLOTLY_MARKER in html and "window.Plotly" in html
    json.loads(fig.to_json())
    assert site.PLOTLY_MARKER in show(fig).data
    with pytest.raises(ValueError):
        slider_figure({}, title="t", x_title="x", y_title="y", slider_label="")
    with pytest.raises(ValueError):
        slider_figure(frames, title="t", x_title="x", y_title="y", slider_label="", active=5)


def test_live_explorer_runs_the_experiment(monkeypatch):
    monkeypatch.delenv(site.STATIC_BUILD_ENV, raising=False)
    calls = []

    def experiment(depth: int, activation: str) -> None:
        calls.append((depth, activation))

    widget = live_explorer(experiment, depth=(2, 10, 1), activation=["relu", "tanh"])
    widget.update()  # what pressing the button does
    assert calls == [(6, "relu")]
    with pytest.raises(ValueError):
        live_explorer(experiment)


def test_live_explorer_is_a_note_in_the_static_book(monkeypatch, capsys):
    monkeypatch.setenv(site.STATIC_BUILD_ENV, "1")
    assert live_explorer(lambda depth: None, depth=(2, 10)) is None
    assert site.is_static_build()
    assert "Live explorer" in STATIC_NOTE


GOOD = [
    {"question": f"q{i}", "type": "multiple_choice",
     "answers": [{"answer": "a", "correct": True, "feedback": "yes"},
                 {"answer": "b", "correct": False, "feedback": "no"}]}
    for i in range(7)
] + [{"question": "n", "type": "numeric", "precision": 3,
      "answers": [{"type": "value", "value": 1, "correct": True, "feedback": "yes"}]}]


def test_quiz_validation_accepts_good_and_names_bad_questions(tmp_path):
    validate_quiz(GOOD)
    bad = [dict(q) for q in GOOD]
    bad[2] = {**bad[2], "answers": [{"answer": "a", "correct": True, "feedback": "x"},
                                    {"answer": "b", "correct": True, "feedback": "y"}]}
    with pytest.raises(QuizError, match="question 3"):
        validate_quiz(bad)
    with pytest.raises(QuizError, match="at least 8"):
        validate_quiz(GOOD[:5])
    with pytest.raises(QuizError, match="two question types"):
        validate_quiz(GOOD[:7] + [GOOD[0]])
    no_feedback = [dict(q) for q in GOOD]
    no_feedback[0] = {**GOOD[0], "answers": [{"answer": "a", "correct": True},
                                              {"answer": "b", "correct": False}]}
    with pytest.raises(QuizError, match="feedback"):
        validate_quiz(no_feedback)
    path = tmp_path / "q.json"
    path.write_text(json.dumps(GOOD))
    assert len(load_quiz(path)) == 8
    with pytest.raises(FileNotFoundError):
        load_quiz(tmp_path / "missing.json")


def test_site_glue_prints_without_myst(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_myst(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    assert glue_module.glue("ratio", 2.5) == 2.5
    assert "ratio = 2.5" in capsys.readouterr().out
    assert site.plotly_js_path().stat().st_size > 1_000_000
