"""The chapter quizzes: JSON files in ``chapters/quizzes/``, checked and shown with jupyterquiz.

A quiz is a list of questions in jupyterquiz's format. :func:`validate_quiz` enforces what the
course promises: at least :data:`MIN_QUESTIONS` questions of at least two kinds, every answer with
feedback, exactly one correct answer for a ``multiple_choice`` question, and a correct value for a
``numeric`` one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

QUESTION_TYPES = ("multiple_choice", "many_choice", "numeric", "string")
MIN_QUESTIONS = 8
COLORS = {"--jq-multiple-choice-bg": "#1f4e79", "--jq-many-choice-bg": "#7a3e00",
          "--jq-numeric-bg": "#2d5f2e", "--jq-string-bg": "#5b2a5e"}


class QuizError(ValueError):
    """A quiz file breaks the course's rules; the message names the question."""


def validate_quiz(questions: Any, name: str = "quiz") -> None:
    """Raise :class:`QuizError` unless ``questions`` is a well-formed course quiz."""
    if not isinstance(questions, list) or len(questions) < MIN_QUESTIONS:
        raise QuizError(f"{name}: needs a list of at least {MIN_QUESTIONS} questions")
    kinds = set()
    for i, q in enumerate(questions, start=1):
        where = f"{name}, question {i}"
        if not isinstance(q, dict) or not str(q.get("question", "")).strip():
            raise QuizError(f"{where}: needs non-empty 'question' text")
        kind = q.get("type")
        if kind not in QUESTION_TYPES:
            raise QuizError(f"{where}: type {kind!r} is not one of {', '.join(QUESTION_TYPES)}")
        kinds.add(kind)
        answers = q.get("answers")
        if not isinstance(answers, list) or not answers:
            raise QuizError(f"{where}: needs a non-empty 'answers' list")
        for a in answers:
            if not str(a.get("feedback", "")).strip():
                raise QuizError(f"{where}: every answer needs 'feedback'")
        correct = [a for a in answers if a.get("correct") is True]
        if kind == "multiple_choice" and (len(correct) != 1 or len(answers) < 2):
            raise QuizError(f"{where}: multiple_choice needs >= 2 answers and exactly 1 correct")
        if kind == "many_choice" and (not correct or len(answers) < 3):
            raise QuizError(f"{where}: many_choice needs >= 3 answers and at least 1 correct")
        if kind == "numeric":
            if not any(a.get("type") in ("value", "range") for a in correct):
                raise QuizError(f"{where}: numeric needs a correct 'value' or 'range' answer")
            if not isinstance(q.get("precision", 3), int):
                raise QuizError(f"{where}: numeric 'precision' must be an integer")
        if kind == "string" and not correct:
            raise QuizError(f"{where}: string needs at least one correct answer")
    if len(kinds) < 2:
        raise QuizError(f"{name}: mix at least two question types, found only {kinds}")


COURSE_ROOT_ENV = "GRADPATH_COURSE_ROOT"


def locate(path: str | Path) -> Path:
    """Find a course file such as ``quizzes/01-chain-rule.json`` wherever the notebook runs.

    A relative path is tried, in order, against the working directory, the ``chapters/`` folder
    of the course root named by ``GRADPATH_COURSE_ROOT`` (the Colab set-up cell sets it to its
    clone), and the ``chapters/`` folder of the clone gradpath was installed from (an editable
    install), so a notebook restarted in another working directory still finds its quiz.

    Raises:
        FileNotFoundError: naming every place that was tried.
    """
    path = Path(path)
    if path.is_absolute():
        candidates = [path]
    else:
        roots = [Path.cwd()]
        if os.environ.get(COURSE_ROOT_ENV):
            roots.append(Path(os.environ[COURSE_ROOT_ENV]) / "chapters")
        roots.append(Path(__file__).resolve().parents[3] / "chapters")
        candidates = [root / path for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no quiz at {path} (tried {tried}); quizzes live in "
                            f"chapters/quizzes/ of the course, or set {COURSE_ROOT_ENV}")


def load_quiz(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a quiz file (a relative path is found with :func:`locate`)."""
    path = locate(path)
    questions = json.loads(path.read_text(encoding="utf-8"))
    validate_quiz(questions, name=path.name)
    return questions


def show_quiz(path: str | Path) -> None:
    """Validate the quiz at ``path`` and display it with jupyterquiz."""
    from jupyterquiz import display_quiz

    questions = load_quiz(path)
    display_quiz(questions, colors=COLORS, shuffle_answers=False)
