"""Plots, kernel-free figures, live explorers, quizzes and the book-build hooks."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from gradpath.book import glue as glue_module
from gradpath.book import site
from gradpath.book.interactive import show, slider_figure, to_html
from gradpath.book.quiz import (
    QuizError,
    grade_numeric,
    load_quiz,
    locate,
    render_quiz,
    show_quiz,
    to_precision,
    validate_quiz,
)
from gradpath.book.widgets import STATIC_NOTE, explorer_widget, live_explorer
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

    widget = explorer_widget(experiment, depth=(2, 10, 1), activation=["relu", "tanh"])
    widget.update()  # what pressing the button does
    assert calls == [(6, "relu")]
    with pytest.raises(ValueError, match="at least one control"):
        live_explorer(experiment)
    with pytest.raises(ValueError, match="at least one control"):
        explorer_widget(experiment)


def test_live_explorer_is_shown_once(monkeypatch):
    """Displayed, and not returned: a returned widget would show again as the cell's value."""
    from gradpath.book import widgets

    monkeypatch.delenv(site.STATIC_BUILD_ENV, raising=False)
    shown = []
    monkeypatch.setattr(widgets, "display", shown.append)
    assert live_explorer(lambda depth: None, depth=(2, 10)) is None
    assert len(shown) == 1 and type(shown[0]).__name__ == "interactive"


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
] + [{"question": "n", "type": "numeric", "precision": 3, "expected": 1,
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


def _numeric(answers, precision=3, expected=1.0, **extra):
    question = {"question": "n", "type": "numeric", "expected": expected, "answers": answers,
                **extra}
    if precision is not None:
        question["precision"] = precision
    return question


def _value(value, correct=False, **extra):
    return {"type": "value", "value": value, "correct": correct, "feedback": f"f{value}", **extra}


def _range(low, high, correct=False):
    return {"type": "range", "range": [low, high], "correct": correct, "feedback": f"r{low}"}


def _with(question):
    return GOOD[:7] + [question]


def _mc(answer_a=None, **question_extra):
    first = {"answer": "a", "correct": True, "feedback": "yes"} if answer_a is None else answer_a
    return {"question": "m", "type": "multiple_choice", **question_extra,
            "answers": [first, {"answer": "b", "correct": False, "feedback": "no"}]}


# Each case: a question jupyterquiz would mis-grade or mis-render, and the words the error uses.
BAD_QUESTIONS = {
    "answer without text": (_mc({"answer": " ", "correct": True, "feedback": "y"}),
                            "needs 'answer' text"),
    "correct as a string": (_mc({"answer": "a", "correct": "true", "feedback": "y"}),
                            "JSON boolean"),
    "correct missing": (_mc({"answer": "a", "feedback": "y"}), "'correct' must be"),
    "range without a range": (_numeric([{"type": "range", "correct": True, "feedback": "x"}]),
                              "needs a 'range' key"),
    "range the wrong way round": (_numeric([_range(2.0, 1.0, True)]), "low < high"),
    "range of strings": (_numeric([{"type": "range", "range": ["1", "2"], "correct": True,
                                    "feedback": "x"}]), "finite numbers"),
    "value and range at once": (_numeric([{**_value(1.0, True), "range": [0, 2]}]),
                                "and nothing else|needs a 'value' key"),
    "negative precision": (_numeric([_value(1.0, True)], precision=-3), "precision"),
    "zero precision": (_numeric([_value(1.0, True)], precision=0), "precision"),
    "fractional precision": (_numeric([_value(1.0, True)], precision=2.5), "precision"),
    "non-numeric value": (_numeric([_value("abc", True)]), "finite number"),
    "boolean value": (_numeric([_value(True, True)]), "finite number"),
    "infinite value": (_numeric([_value(float("inf"), True)]), "finite number"),
    "unknown answer type": (_numeric([{**_value(1.0, True), "type": "exact"}]), "'type' must"),
    "no expected number": (_numeric([_value(1.0, True)], expected=None), "'expected'"),
    "correct default": (_numeric([_value(1.0, True), {"type": "default", "correct": True,
                                                       "feedback": "d"}]), "cannot be correct"),
    # chapter 2's old item: ln 10 = 2.302585 "to three decimals" at 3 significant figures
    "rounding skips the range": (_numeric([_range(2.301, 2.304, True)], expected=2.303),
                                 "typing the expected 2.303"),
    # chapter 6's old item: 5/3 in [1.666, 1.667), whose upper end is excluded
    "upper end excluded": (_numeric([_range(1.666, 1.667, True)], precision=4, expected=1.667),
                           "typing the expected 1.667"),
    "distractor rounded away": (_numeric([_range(1.6665, 1.6675, True), _range(1.414, 1.415)],
                                         precision=3, expected=1.667),
                                "typing the expected|no input reaches"),
    "distractor shadowed": (_numeric([_range(0.0, 10.0, True), _value(5.0)], expected=1.0),
                            r"answer 2: no input reaches 5"),
    "expected gets a distractor": (_numeric([_value(2.0, True), _value(1.0)], expected=1.0),
                                   "feedback of 1.0"),
    "bold Markdown": (_mc(question="the **vanishing** problem"), "Markdown"),
    "backticks": (_mc({"answer": "`nan`", "correct": True, "feedback": "y"}), "Markdown"),
    "emphasis": (_mc({"answer": "a", "correct": True, "feedback": "*before* it"}), "Markdown"),
    "underscores": (_mc(question="__init__ runs"), "Markdown"),
    "a tag jupyterquiz would swallow": (_mc(question="is x <y or not"), "HTML tags"),
    "'<' in a formula": (_mc(question="when $a<b$"), "formula"),
    "unknown question key": (_mc(precission=3), "unknown key"),
    "unknown answer key": (_mc({"answer": "a", "correct": True, "feedback": "y", "hint": "h"}),
                           "unknown key"),
    "expected on a choice question": (_mc(expected=1), "belong to numeric"),
    "string answer without text": ({"question": "s", "type": "string", "answers": [
        {"correct": True, "feedback": "y"}]}, "expected 'answer' text"),
}


@pytest.mark.parametrize("case", BAD_QUESTIONS, ids=str)
def test_quiz_validation_rejects_what_jupyterquiz_would_mis_grade(case):
    question, message = BAD_QUESTIONS[case]
    with pytest.raises(QuizError, match=message) as caught:
        validate_quiz(_with(question), name="q.json")
    assert "q.json, question 8" in str(caught.value)


def test_quiz_validation_accepts_html_math_and_plain_text():
    fine = _mc(question="Is <code>clip_grad_norm_</code> <strong>in place</strong>? "
                        "$x_1 * y_2 < 3$ and 2 * 3 < 7, n_in, snake_case &lt;")
    validate_quiz(GOOD + [fine])
    string = {"question": "s", "type": "string", "answers": [
        {"answer": "ReLU", "correct": True, "feedback": "y"},
        {"type": "default", "feedback": "no"}]}
    validate_quiz(_with(string))


def test_to_precision_is_javascripts():
    assert to_precision(2.303, 3) == 2.3 and to_precision(2.302585, 4) == 2.303
    assert to_precision(0.125, 2) == 0.13 and to_precision(-2.5, 1) == -3  # ties: away from 0
    assert to_precision(0.0009765625, 3) == 0.000977 and to_precision(1024, 2) == 1000
    assert to_precision(0.0, 3) == 0.0


def test_grade_numeric_is_jupyterquizs_check_numeric():
    question = _numeric([_range(2.301, 2.304, True), _value(0.1), _value(1.0),
                         {"type": "default", "feedback": "d"}], precision=4, expected=2.303)
    answers = question["answers"]
    assert grade_numeric(question, "2.303") is answers[0]
    assert grade_numeric(question, "2.302585") is answers[0]   # rounded to 2.303 first
    assert grade_numeric(question, "2.304") is None            # the upper end is excluded
    assert grade_numeric(question, "1/10") is answers[1]       # a/b is divided
    assert grade_numeric(question, "1") is answers[2]
    assert grade_numeric(question, "abc") is None
    first_wins = _numeric([_value(1.0, True), _range(0.0, 2.0)], precision=None)
    assert grade_numeric(first_wins, "1") is first_wins["answers"][0]
    assert grade_numeric(first_wins, "1.5") is first_wins["answers"][1]
    exact = _numeric([_value(0.1, True)], precision=None)      # no precision: exact
    assert grade_numeric(exact, "0.1") is exact["answers"][0]
    assert grade_numeric(exact, "0.10000001") is None
    with pytest.raises(QuizError, match="toPrecision"):
        grade_numeric(_numeric([_value(1.0, True)], precision=0), "1")


def test_show_quiz_hands_jupyterquiz_html_without_course_keys(monkeypatch, tmp_path):
    import jupyterquiz

    received = {}
    monkeypatch.setattr(jupyterquiz, "display_quiz",
                        lambda questions, **kwargs: received.update(q=questions, **kwargs))
    quiz = _with(_numeric([_value(1.0, True)], expected=1.0))
    (tmp_path / "q.json").write_text(json.dumps(quiz))
    show_quiz(tmp_path / "q.json")
    assert received["q"] == render_quiz(quiz) and "expected" not in received["q"][-1]
    assert "expected" in quiz[-1]                              # the source is left alone
    assert received["shuffle_answers"] is False


def test_locate_finds_course_files_from_any_working_directory(monkeypatch, tmp_path):
    course = tmp_path / "clone"
    (course / "chapters" / "quizzes").mkdir(parents=True)
    (course / "chapters" / "quizzes" / "99-test.json").write_text("[]")
    elsewhere = tmp_path / "content"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)                               # Colab's /content
    monkeypatch.setenv("GRADPATH_COURSE_ROOT", str(course))
    assert locate("quizzes/99-test.json") == course / "chapters" / "quizzes" / "99-test.json"
    monkeypatch.delenv("GRADPATH_COURSE_ROOT")
    # an editable install finds the clone it was installed from
    assert locate("quizzes/01-chain-rule.json").parent.name == "quizzes"
    with pytest.raises(FileNotFoundError, match="GRADPATH_COURSE_ROOT") as caught:
        locate("quizzes/99-test.json")
    assert str(elsewhere) in str(caught.value)                 # it names where it looked


def test_glue_prints_with_the_prose_format_outside_the_book(monkeypatch, capsys):
    monkeypatch.delenv(site.STATIC_BUILD_ENV, raising=False)
    assert glue_module.glue("ratio", 2.5) == 2.5
    assert glue_module.glue("edge", 1.8183999999999996, fmt=".3f") == 1.8183999999999996
    assert glue_module.glue("share", 0.364, fmt=".0%") == 0.364
    assert capsys.readouterr().out == "ratio = 2.5\nedge = 1.818\nshare = 36%\n"
    with pytest.raises(ValueError, match="glue\\('steps'\\): fmt='d'"):
        glue_module.glue("steps", 2.5, fmt="d")
    assert site.plotly_js_path().stat().st_size > 1_000_000


def test_glue_leaves_the_page_to_myst_in_the_book(monkeypatch, capsys):
    import myst_nb

    monkeypatch.setenv(site.STATIC_BUILD_ENV, "1")
    glued = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.append((name, value)))
    assert glue_module.glue("ratio", 2.5, fmt=".1f") == 2.5
    assert glued == [("ratio", 2.5)] and capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="cannot format"):   # checked in the build as well
        glue_module.glue("steps", "x", fmt=".2f")


BIB = r"""
@comment{ignored}
@article{doe2020test,
  author  = {Doe, Jane Q. and M{\"u}ller, Klaus-Robert and others},
  title   = {On {N}ested {B}races},
  journal = {Journal of Tests},
  volume  = {5},
  number  = {2},
  pages   = {1--10},
  year    = 2020
}
@inproceedings{kaiser2017x,
  author    = "Kaiser, {\L}ukasz",
  title     = {One author},
  booktitle = {Proc. X},
  year      = {2017}
}
"""


def test_bibtex_entries_read_as_text():
    entries = glue_module.parse_bibtex(BIB)
    assert set(entries) == {"doe2020test", "kaiser2017x"}
    doe = glue_module.format_reference(entries["doe2020test"])
    assert doe == ("J. Q. Doe, K.-R. Müller et al. (2020). *On Nested Braces*. "
                   "Journal of Tests 5(2), 1–10.")
    assert "Łukasz" not in glue_module.format_reference(entries["kaiser2017x"])  # initials
    assert glue_module.format_reference(entries["kaiser2017x"]).startswith("Ł. Kaiser (2017)")
    with pytest.raises(ValueError, match="unbalanced braces in entry 'bad'"):
        glue_module.parse_bibtex("@article{bad,\n title = {oops {x}\n")


def test_references_are_listed_outside_the_book(monkeypatch, tmp_path):
    course = tmp_path / "course"
    (course / "chapters").mkdir(parents=True)
    (course / "references.bib").write_text(BIB)
    notebook = {"cells": [
        {"cell_type": "markdown", "source": ["As shown {footcite:p}`kaiser2017x,doe2020test`",
                                             " and {footcite:t}`doe2020test`."]},
        {"cell_type": "markdown", "source": ["```{footbibliography}\n```"]}]}
    (course / "chapters" / "99-x.ipynb").write_text(json.dumps(notebook))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADPATH_COURSE_ROOT", str(course))
    monkeypatch.delenv(site.STATIC_BUILD_ENV, raising=False)
    text = glue_module.references_markdown("99-x.ipynb")
    assert text.index("`kaiser2017x`") < text.index("`doe2020test`")
    assert text.count("- `") == 2
    shown = []
    monkeypatch.setattr(glue_module, "display", shown.append)
    glue_module.show_references("99-x.ipynb")
    assert shown and shown[0].data == text
    monkeypatch.setenv(site.STATIC_BUILD_ENV, "1")
    glue_module.show_references("99-x.ipynb")                  # the book has footbibliography
    assert len(shown) == 1
    notebook["cells"][0]["source"] = ["{footcite:p}`missing2000`"]
    (course / "chapters" / "99-x.ipynb").write_text(json.dumps(notebook))
    with pytest.raises(KeyError, match="missing2000"):
        glue_module.references_markdown("99-x.ipynb")


def test_glue_turns_numpy_and_torch_scalars_into_python_numbers(capsys):
    import numpy as np
    import torch

    assert type(glue_module.glue("a", np.float64(0.25), fmt=".2f")) is float
    assert type(glue_module.glue("b", torch.tensor(3), fmt="d")) is int
    assert capsys.readouterr().out.splitlines() == ["a = 0.25", "b = 3"]
