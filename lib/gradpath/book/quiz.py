"""The chapter quizzes: JSON files in ``chapters/quizzes/``, checked and shown with jupyterquiz.

A quiz is a list of questions in jupyterquiz's format. :func:`validate_quiz` enforces what the
course promises, and checks each question the way jupyterquiz (2.9) will grade it in the reader's
browser, so that a quiz no input can pass never reaches a page:

- at least :data:`MIN_QUESTIONS` questions of at least two kinds; every answer has feedback, and
  ``correct`` is a JSON boolean (jupyterquiz counts any truthy value, even ``"false"``, as correct);
- a ``multiple_choice`` question has exactly one correct answer, a ``many_choice`` at least one;
- a ``numeric`` question states the number the reader is meant to type (``expected``, a key
  jupyterquiz ignores), and :func:`grade_numeric` (a copy of jupyterquiz's ``check_numeric``)
  must grade that number correct and let every other ``value``/``range`` answer fire its own
  feedback for some input;
- text is HTML, not Markdown: jupyterquiz puts question, answer and feedback text into the page as
  HTML (``$...$`` becomes MathJax), so Markdown such as ``**bold**`` or backticks would show as
  typed. Write ``<strong>``, ``<em>`` and ``<code>`` instead.

:func:`show_quiz` hands jupyterquiz exactly what :func:`render_quiz` returns (the course-only keys
removed).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

QUESTION_TYPES = ("multiple_choice", "many_choice", "numeric", "string")
MIN_QUESTIONS = 8
COLORS = {"--jq-multiple-choice-bg": "#1f4e79", "--jq-many-choice-bg": "#7a3e00",
          "--jq-numeric-bg": "#2d5f2e", "--jq-string-bg": "#5b2a5e"}

#: Keys jupyterquiz reads from a question, plus the course's own ``expected`` (see module doc).
QUESTION_KEYS = ("question", "type", "answers", "precision", "code", "answer_cols", "expected")
#: Keys jupyterquiz reads from an answer.
ANSWER_KEYS = ("answer", "correct", "feedback", "type", "value", "range", "code", "match_case",
               "fuzzy_threshold")
#: Keys that are the course's and are removed before jupyterquiz sees a question.
COURSE_KEYS = ("expected",)
NUMERIC_ANSWER_TYPES = ("value", "range", "default")
#: toPrecision accepts 1..100 significant figures; anything else throws in the browser.
PRECISION_RANGE = (1, 100)

_MATH = re.compile(r"\$\$.+?\$\$|\$.+?\$", re.S)
_CODE = re.compile(r"<code>.*?</code>", re.S)
_MARKDOWN = re.compile(r"\*\*|__|`")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=\S)[^*\n]*?(?<=\S)\*(?![\w*])"
                       r"|(?<![\w\\])_(?=\S)[^_\n]*?(?<=\S)_(?!\w)")
_ALLOWED_TAGS = ("code", "strong", "em", "b", "i", "sub", "sup", "br", "a", "span", "small")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)\b[^<>]*>")
_JS_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class QuizError(ValueError):
    """A quiz file breaks the course's rules; the message names the question."""


# ---------------------------------------------------------------------------------------------
# jupyterquiz's numeric grading, in Python (jupyterquiz/js/numeric.js, check_numeric)


def to_precision(x: float, precision: int) -> float:
    """JavaScript's ``Number(x.toPrecision(precision))``: ``precision`` significant figures.

    The exact binary value of ``x`` is rounded, ties away from zero (ECMAScript picks the larger
    ``n`` of the two candidates for ``|x|``), so ``to_precision(2.303, 3) == 2.3``.
    """
    if x == 0 or not math.isfinite(x):
        return x
    d = Decimal(x)
    quantum = Decimal(1).scaleb(d.adjusted() - precision + 1)
    return float(d.quantize(quantum, rounding=ROUND_HALF_UP))


def _js_number(text: str) -> float:
    """JavaScript's ``Number(text)`` for what the quiz's input box lets a reader type."""
    text = text.strip()
    if text == "":
        return 0.0
    if text in ("Infinity", "+Infinity", "-Infinity"):
        return float(text.replace("Infinity", "inf"))
    return float(text) if _JS_DECIMAL.fullmatch(text) else math.nan


def grade_numeric(question: dict[str, Any], typed: str) -> dict[str, Any] | None:
    """The answer whose feedback jupyterquiz shows when a reader types ``typed``, or ``None``.

    A copy of jupyterquiz's ``check_numeric``: ``a/b`` is divided; with a ``precision`` the input
    is rounded to that many significant figures and compared with each ``value`` rounded the
    same way; a ``range`` [lo, hi) includes lo and excludes hi; an answer with a ``value`` key is a
    value answer whatever its ``type``; the first answer that matches wins. ``None`` means the
    ``default`` feedback (or jupyterquiz's "Incorrect. Try again.").
    """
    if "/" in typed:
        numerator, denominator = typed.split("/", 1)
        denom = _js_number(denominator)
        num = _js_number(numerator)
        submission = num / denom if denom else (math.nan if num == 0 or math.isnan(num)
                                                else math.copysign(math.inf, num))
    else:
        submission = _js_number(typed)
    precision = question.get("precision")
    if precision is not None and not (isinstance(precision, int) and PRECISION_RANGE[0]
                                      <= precision <= PRECISION_RANGE[1]):
        raise QuizError(f"precision={precision!r}: JavaScript's toPrecision throws outside "
                        f"{PRECISION_RANGE[0]}..{PRECISION_RANGE[1]}, so nothing is graded")
    if precision is not None:
        submission = to_precision(submission, precision)
    for answer in question["answers"]:
        if "value" in answer:
            value = answer["value"]
            if precision is not None:
                value = to_precision(value, precision)
            if submission == value:
                return answer
        elif "range" in answer:
            low, high = answer["range"]
            if low <= submission < high:
                return answer
    return None


def _typed(x: float) -> str:
    """How a reader types ``x`` (the shortest decimal that reads back as ``x``)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _inputs_for(answer: dict[str, Any], precision: int | None) -> list[str]:
    """Inputs worth trying to reach ``answer``: its value, or points in and around its range."""
    if "value" in answer:
        return [_typed(answer["value"])]
    low, high = (float(v) for v in answer["range"])
    xs = [low + (high - low) * k / 100 for k in range(100)]
    if precision:
        for x in list(xs):
            r = to_precision(x, precision)
            if r:
                step = 10.0 ** (math.floor(math.log10(abs(r))) - precision + 1)
                xs += [r - step, r, r + step]
    return [_typed(x) for x in xs]


# ---------------------------------------------------------------------------------------------
# validation


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_text(text: str, where: str) -> None:
    """Reject Markdown that jupyterquiz would show as typed, and HTML it would mis-read."""
    outside_math = _MATH.sub("", text)
    if _MARKDOWN.search(outside_math) or _EMPHASIS.search(_CODE.sub("<code></code>",
                                                                    outside_math)):
        raise QuizError(f"{where}: Markdown ({text!r}) is shown as typed by jupyterquiz; write "
                        "HTML (<strong>, <em>, <code>) or plain words instead")
    math_spans = [m.span() for m in _MATH.finditer(text)]
    for opening in re.finditer(r"<(?=[A-Za-z/!?])", text):
        start = opening.start()
        if any(a <= start < b for a, b in math_spans):
            raise QuizError(f"{where}: '<' followed by a letter in the formula of {text!r} "
                            "starts an HTML tag in the browser; write '< ' or \\lt")
        tag = _TAG.match(text, start)
        if tag is None or tag.group(2).lower() not in _ALLOWED_TAGS:
            raise QuizError(f"{where}: {text[start:start + 12]!r}... in {text!r} is not one of "
                            f"the HTML tags {', '.join(_ALLOWED_TAGS)}; write &lt; for a "
                            "literal '<'")


def _check_answer(kind: str, answer: Any, where: str) -> None:
    if not isinstance(answer, dict):
        raise QuizError(f"{where}: an answer must be an object, got {answer!r}")
    unknown = sorted(set(answer) - set(ANSWER_KEYS))
    if unknown:
        raise QuizError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys "
                        f"are {', '.join(ANSWER_KEYS)}")
    feedback = answer.get("feedback")
    if not isinstance(feedback, str) or not feedback.strip():
        raise QuizError(f"{where}: every answer needs 'feedback' text, got {feedback!r}")
    _check_text(feedback, f"{where}, feedback")
    is_default = answer.get("type") == "default"
    if "correct" in answer or not is_default:
        correct = answer.get("correct")
        if not isinstance(correct, bool):
            raise QuizError(f"{where}: 'correct' must be true or false (a JSON boolean), got "
                            f"{correct!r}; jupyterquiz treats any non-empty value as correct")
    if kind in ("multiple_choice", "many_choice"):
        text = answer.get("answer")
        if not (isinstance(text, str) and text.strip()) and not answer.get("code"):
            raise QuizError(f"{where}: a choice needs 'answer' text (or 'code'), got {text!r}")
        if isinstance(text, str):
            _check_text(text, f"{where}, answer")
    elif kind == "string" and not is_default:
        text = answer.get("answer")
        if not isinstance(text, str) or not text.strip():
            raise QuizError(f"{where}: a string answer needs the expected 'answer' text, got "
                            f"{text!r}")
    elif kind == "numeric":
        atype = answer.get("type")
        if atype not in NUMERIC_ANSWER_TYPES:
            raise QuizError(f"{where}: a numeric answer's 'type' must be one of "
                            f"{', '.join(NUMERIC_ANSWER_TYPES)}, got {atype!r}")
        has = sorted(key for key in ("value", "range") if key in answer)
        wanted = [] if atype == "default" else [atype]
        if has != wanted:
            need = f"a {atype!r} key" if wanted else "no 'value' or 'range' key"
            raise QuizError(f"{where}: a {atype!r} answer needs {need} (jupyterquiz grades by "
                            f"the key it finds), has {has or 'neither'}")
        if atype == "value" and not _is_number(answer["value"]):
            raise QuizError(f"{where}: 'value' must be a finite number, got "
                            f"{answer['value']!r}")
        if atype == "range":
            bounds = answer["range"]
            if (not isinstance(bounds, list) or len(bounds) != 2
                    or not all(_is_number(b) for b in bounds) or not bounds[0] < bounds[1]):
                raise QuizError(f"{where}: 'range' must be [low, high] with finite numbers and "
                                f"low < high (high is excluded), got {bounds!r}")
        if atype == "default" and answer.get("correct"):
            raise QuizError(f"{where}: the 'default' answer catches every wrong input; it "
                            "cannot be correct")


def _check_numeric(q: dict[str, Any], where: str) -> None:
    precision = q.get("precision")
    if precision is not None and (not isinstance(precision, int) or isinstance(precision, bool)
                                  or not PRECISION_RANGE[0] <= precision <= PRECISION_RANGE[1]):
        raise QuizError(f"{where}: 'precision' (significant figures) must be an integer from "
                        f"{PRECISION_RANGE[0]} to {PRECISION_RANGE[1]}, or left out for exact "
                        f"comparison, got {precision!r}")
    answers = q["answers"]
    if not any(a.get("correct") for a in answers):
        raise QuizError(f"{where}: numeric needs a correct 'value' or 'range' answer")
    expected = q.get("expected")
    if not _is_number(expected):
        raise QuizError(f"{where}: numeric needs 'expected', the finite number the reader is "
                        f"meant to type (jupyterquiz ignores it), got {expected!r}")
    typed = _typed(float(expected))  # type: ignore[arg-type]  # _is_number checked it
    hit = grade_numeric(q, typed)
    if hit is None or not hit.get("correct"):
        shown = ("the default feedback" if hit is None
                 else f"the feedback of {hit.get('value', hit.get('range'))}")
        raise QuizError(f"{where}: typing the expected {typed} gets {shown}, not a "
                        f"correct answer (precision={precision}: jupyterquiz rounds the input "
                        "to that many significant figures, and a range excludes its upper end)")
    for j, answer in enumerate(answers, start=1):
        if answer.get("type") == "default":
            continue
        if not any(grade_numeric(q, typed) is answer for typed in _inputs_for(answer, precision)):
            target = answer.get("value", answer.get("range"))
            raise QuizError(f"{where}, answer {j}: no input reaches {target} (precision="
                            f"{precision}; an earlier answer catches it, or rounding to "
                            "significant figures skips it), so its feedback never shows")


def validate_quiz(questions: Any, name: str = "quiz") -> None:
    """Raise :class:`QuizError` unless ``questions`` is a well-formed course quiz.

    See the module docstring for the rules; each message names the quiz, the question (counted
    from 1), the answer where it matters, the value found and what is valid.
    """
    if not isinstance(questions, list) or len(questions) < MIN_QUESTIONS:
        raise QuizError(f"{name}: needs a list of at least {MIN_QUESTIONS} questions")
    kinds = set()
    for i, q in enumerate(questions, start=1):
        where = f"{name}, question {i}"
        if not isinstance(q, dict) or not isinstance(q.get("question"), str) \
                or not q["question"].strip():
            raise QuizError(f"{where}: needs non-empty 'question' text")
        unknown = sorted(set(q) - set(QUESTION_KEYS))
        if unknown:
            raise QuizError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid "
                            f"keys are {', '.join(QUESTION_KEYS)}")
        _check_text(q["question"], where)
        kind = q.get("type")
        if kind not in QUESTION_TYPES:
            raise QuizError(f"{where}: type {kind!r} is not one of {', '.join(QUESTION_TYPES)}")
        kinds.add(kind)
        answers = q.get("answers")
        if not isinstance(answers, list) or not answers:
            raise QuizError(f"{where}: needs a non-empty 'answers' list")
        for j, answer in enumerate(answers, start=1):
            _check_answer(kind, answer, f"{where}, answer {j}")
        correct = [a for a in answers if a.get("correct") is True]
        if kind == "multiple_choice" and (len(correct) != 1 or len(answers) < 2):
            raise QuizError(f"{where}: multiple_choice needs >= 2 answers and exactly 1 correct")
        if kind == "many_choice" and (not correct or len(answers) < 3):
            raise QuizError(f"{where}: many_choice needs >= 3 answers and at least 1 correct")
        if kind == "numeric":
            _check_numeric(q, where)
        elif "expected" in q or "precision" in q:
            raise QuizError(f"{where}: 'expected' and 'precision' belong to numeric questions")
        if kind == "string" and not correct:
            raise QuizError(f"{where}: string needs at least one correct answer")
    if len(kinds) < 2:
        raise QuizError(f"{name}: mix at least two question types, found only {kinds}")


# ---------------------------------------------------------------------------------------------
# finding, loading and showing


COURSE_ROOT_ENV = "GRADPATH_COURSE_ROOT"


def locate(path: str | Path) -> Path:
    """Find a course file such as ``quizzes/01-chain-rule.json`` wherever the notebook runs.

    A relative path is tried, in order, against the working directory, the ``chapters/`` folder
    of the course root named by ``GRADPATH_COURSE_ROOT`` (the Colab set-up cell sets it to its
    clone), and the ``chapters/`` folder of the clone gradpath was installed from (an editable
    install), so a notebook restarted in another working directory still finds its files.

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
    raise FileNotFoundError(f"no course file at {path} (tried {tried}); quizzes live in "
                            f"chapters/quizzes/ of the course, or set {COURSE_ROOT_ENV} to "
                            "the course's folder")


def load_quiz(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a quiz file (a relative path is found with :func:`locate`)."""
    path = locate(path)
    questions = json.loads(path.read_text(encoding="utf-8"))
    validate_quiz(questions, name=path.name)
    return questions


def render_quiz(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The questions as jupyterquiz receives them: a copy without the course-only keys.

    The text is already HTML (:func:`validate_quiz` rejects Markdown), so nothing else changes.
    """
    rendered = copy.deepcopy(questions)
    for q in rendered:
        for key in COURSE_KEYS:
            q.pop(key, None)
    return rendered


def show_quiz(path: str | Path) -> None:
    """Validate the quiz at ``path`` and display it with jupyterquiz."""
    from jupyterquiz import display_quiz

    display_quiz(render_quiz(load_quiz(path)), colors=COLORS, shuffle_answers=False)
