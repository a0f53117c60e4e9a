"""Learning aids: flashcard decks, the course review, the glossary, the seed map, saved quiz
progress and compute badges.

The first part needs no build: decks, the exam's questions, the exercise answers and the seed
map (every reference must point at a section, card, question or term that exists; when the
course's source material is present, every seed item must be mapped, and no sentence of it may
be copied into the course's own cards, questions or glossary). The second part (marked
``browser``) drives the built site in headless Chromium with every other host blocked.
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from conftest import CHAPTERS, ROOT
from gradpath.book import cards as cardlib
from gradpath.book import learning
from gradpath.book.quiz import load_quiz

DECKS = ROOT / "chapters" / "cards"
QUIZZES = ROOT / "chapters" / "quizzes"
EXAM = QUIZZES / "exam.json"
SEEDMAP = ROOT / "seedmap.yaml"
GLOSSARY = ROOT / "glossary.md"
ANSWERS = ROOT / learning.ANSWERS_FILE
SITE = ROOT / "_build" / "html"
CHAPTER_STEMS = [p.stem for p in CHAPTERS]


def _seeds_dir() -> Path | None:
    """The course's source material: ../shared/seeds (or GRADFLOW_SEEDS), if present."""
    candidates = [os.environ.get("GRADFLOW_SEEDS", ""), ROOT.parent / "shared" / "seeds",
                  ROOT.parent.parent / "shared" / "seeds"]
    for c in candidates:
        if c and Path(c).is_dir() and list(Path(c).glob("000_*.txt")):
            return Path(c)
    return None


SEEDS = _seeds_dir()
needs_seeds = pytest.mark.skipif(SEEDS is None, reason="../shared/seeds is not present")


def _seed(prefix: str) -> str:
    assert SEEDS is not None
    return next(SEEDS.glob(f"{prefix}_*.txt")).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Flashcard decks


@pytest.mark.parametrize("stem", CHAPTER_STEMS)
def test_every_chapter_has_a_valid_deck(stem):
    deck = cardlib.load_deck(DECKS / f"{stem}.json")
    assert len(deck) >= 10, f"{stem}: a chapter's deck should cover its key facts (>= 10 cards)"


def test_no_deck_without_its_chapter():
    assert sorted(p.stem for p in DECKS.glob("*.json")) == sorted(CHAPTER_STEMS)


@pytest.mark.parametrize("bad, message", [
    ([{"id": "a", "front": "x", "back": "y"}], "at least"),
    ([{"id": f"c{i}", "front": "**x**", "back": "y"} for i in range(6)], "Markdown"),
    ([{"id": "Bad Id", "front": "x", "back": "y"}] * 6, "slug"),
    ([{"id": "same", "front": "x", "back": "y"}] * 6, "used twice"),
    ([{"id": f"c{i}", "front": "x", "back": "y" * 400} for i in range(6)], "characters"),
    ([{"id": f"c{i}", "front": "$x", "back": "y"} for i in range(6)], "unmatched"),
    ([{"id": f"c{i}", "front": "x", "back": "y", "extra": 1} for i in range(6)], "unknown keys"),
])
def test_validate_deck_names_the_problem(bad, message):
    with pytest.raises(cardlib.DeckError, match=message):
        cardlib.validate_deck(bad, "deck.json")


def test_card_script_works_offline():
    script = cardlib.cards_script()
    for marker in ("cdn.jsdelivr", "force load MathJax", "fetch(", "XMLHttpRequest"):
        assert marker not in script, marker
    # No URL in a string literal but SVG's XML namespaces and the JSON-LD vocabulary name
    # (comments may cite sources); neither is fetched.
    assert not re.findall(r"[\"']https?://(?!www\.w3\.org/|schema\.org/)", script)
    assert "typeof MathJax != 'undefined' && MathJax.version" in script
    assert "function createCards" in script


def test_show_cards_displays_html_and_script(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    cardlib.show_cards(DECKS / "01-chain-rule.json", title="Chapter 1")
    html_part, script_part = shown
    assert 'class="flip-container"' in html_part.data and "<style>" in html_part.data
    assert "createCards(id)" in script_part.data and "gradient-is-a-product" in script_part.data


def test_decks_html_has_assets_once_and_escapes_script_ends():
    deck = [{"id": f"c{i}", "front": "a </script> b", "back": "c"} for i in range(6)]
    out = cardlib.decks_html([("one", deck), ("two", deck)])
    assert out.count("<style>") == 1 and out.count("function createCards") == 1
    assert out.count('class="gp-deck"') == 2
    assert "a </script> b" not in out


# ---------------------------------------------------------------------------------------------
# The course review (exam) and exercise answers


def _to_precision(x: float, p: int) -> float:
    """JavaScript's Number(x.toPrecision(p)) for the numbers used here."""
    from decimal import ROUND_HALF_UP, Decimal

    if x == 0:
        return 0.0
    d = Decimal(x)
    return float(d.quantize(Decimal(1).scaleb(d.adjusted() - p + 1), rounding=ROUND_HALF_UP))


def _accepted(question: dict, submission: float) -> dict | None:
    p = question.get("precision")
    s = _to_precision(submission, p) if p else submission
    for a in question["answers"]:
        if "value" in a and s == (_to_precision(a["value"], p) if p else a["value"]):
            return a
        if "range" in a and a["range"][0] <= s < a["range"][1]:
            return a
    return None


# What each numeric exam question expects, computed here independently of the quiz file.
EXAM_FORMULAS = {
    "Every one of 12 layers contributes a factor of 0.7": 0.7**12,
    "outputs $\\sigma(x) = 0.8$": 0.8 * (1 - 0.8),
    "spectral norm 2": (0.25 * 2) ** 10,
    "150 units wide": 0.5 * math.sqrt(150 / 6),
    "read at step 31": 0.9**30,
    "$g = (9, 12)$": 9 * 3 / math.hypot(9, 12),
    "scales the loss by $2^{10}$": 2 / 2**10,
    "$\\tanh'(1)": 1 - math.tanh(1) ** 2,
    "three consecutive Leaky ReLU layers": 0.01**3,
    "300 inputs to 100 outputs": math.sqrt(6 / (300 + 100)),
    "$n_{in} = 200$": math.sqrt(2 / 200),
    "batch $(2, 4, 9)$": (9 - 5) / math.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 3),
    "exactly 6 of the branches": math.comb(12, 6),
    "forget-gate bias is $b_f = 2$": 1 / (1 - 1 / (1 + math.exp(-2))),
    "LSTM(16, 32)": 4 * (32 * (16 + 32) + 2 * 32),
    "logits differ by $\\Delta = 4$": math.exp(-4) / (1 + math.exp(-4)) ** 2,
    "$d_k = 256$": 256 ** 0.5,
    "weight equal to 64 is stored in bfloat16": 2.0 ** (6 - 7),
    "ZeRO stage 1 on 4 workers": 2 + 2 + 12 / 4,
}


def test_exam_is_a_valid_quiz_with_every_chapter_and_computations():
    questions = load_quiz(EXAM)
    assert len(questions) >= 20
    for n in range(1, len(CHAPTER_STEMS) + 1):
        assert sum(q["question"].startswith(f"Chapter {n}.") for q in questions) >= 2, n
    assert sum(q["type"] == "numeric" for q in questions) >= 5
    assert {"multiple_choice", "many_choice", "numeric"} <= {q["type"] for q in questions}


def test_exam_numeric_answers_are_right_and_accepted():
    numeric = [q for q in load_quiz(EXAM) if q["type"] == "numeric"]
    assert len(numeric) == len(EXAM_FORMULAS)
    for q in numeric:
        keys = [k for k in EXAM_FORMULAS if k in q["question"]]
        assert len(keys) == 1, f"no single formula for: {q['question'][:60]}"
        truth = EXAM_FORMULAS[keys[0]]
        assert math.isclose(q["expected"], truth, rel_tol=1e-9), q["question"][:60]
        hit = _accepted(q, truth)
        assert hit is not None and hit.get("correct") is True, f"right answer rejected: {keys[0]}"
        for a in q["answers"]:
            if "value" in a and not a.get("correct"):
                wrong = _accepted(q, a["value"])
                assert wrong is a, f"distractor {a['value']} does not reach its own feedback"


def test_exam_text_has_no_raw_markdown():
    for q in load_quiz(EXAM):
        texts = [q["question"]] + [str(a.get(k, "")) for a in q["answers"]
                                   for k in ("answer", "feedback")]
        assert not any(re.search(r"\*\*|__|`", t) for t in texts), q["question"][:60]


def test_exercise_answers_evaluate_and_check_answer_reports(capsys, monkeypatch):
    monkeypatch.delenv("GRADPATH_STATIC_BUILD", raising=False)
    table = json.loads(ANSWERS.read_text())
    assert table
    for key, entry in table.items():
        stem = key.split("/")[0]
        assert stem in CHAPTER_STEMS, key
        assert math.isfinite(learning.evaluate(entry["expr"])), key
        expected = learning.evaluate(entry["expr"])
        assert learning.answer_matches(key, expected, ANSWERS)
    assert not learning.answer_matches("01-chain-rule/2a", 0.8**29 * 1.5, ANSWERS)
    assert learning.check_answer("01-chain-rule/2a", 0.8**29, ANSWERS) is None
    learning.check_answer("01-chain-rule/2a", 0.8**29 * 1.5, ANSWERS)
    learning.check_answer("01-chain-rule/2a", None, ANSWERS)
    out = capsys.readouterr().out
    assert "is correct" in out and "not it yet" in out and "replace None" in out
    with pytest.raises(KeyError, match="known"):
        learning.check_answer("no-such/1", 1.0, ANSWERS)


@pytest.mark.parametrize("expression", ["__import__('os')", "open('x')", "x + 1", "2 ** (1,)"])
def test_evaluate_refuses_anything_but_arithmetic(expression):
    with pytest.raises((ValueError, TypeError)):
        learning.evaluate(expression)


def test_quiz_script_is_patched_for_offline_use():
    from jupyterquiz.dynamic.loader import load_questions_script
    from jupyterquiz.dynamic.renderer import build_script

    prefix, static, url = load_questions_script(str(EXAM), "abc")
    original = build_script(prefix, static, url, "abc", True)
    assert learning.CDN_MARKER in original  # what the patch is for
    patched = learning.offline_quiz_script(original)
    assert learning.CDN_MARKER not in patched and "force load MathJax" not in patched
    assert patched.count("typeof MathJax") == original.count("typeof MathJax")
    assert patched.count("typeof MathJax") == patched.count("&& MathJax.version")
    assert learning.offline_quiz_script(patched) == patched


def test_badge_text():
    assert learning.badge_text(12.3, "cpu") == "Runs on a CPU in 12 s · GPU optional"
    assert learning.badge_text(0.2, "cpu") == "Runs on a CPU in under 1 s · GPU optional"
    assert learning.badge_text(61, "cpu").endswith("a GPU helps")
    assert learning.badge_text(3, "cuda").startswith("Runs on a CUDA in 3 s")
    with pytest.raises(ValueError, match="seconds"):
        learning.badge_text(float("nan"), "cpu")


# ---------------------------------------------------------------------------------------------
# The seed map


def _headings(page: str) -> set[str]:
    """The ##/### heading texts of a chapter notebook or a root page."""
    candidates = [ROOT / "chapters" / f"{page}.ipynb", ROOT / f"{page}.ipynb", ROOT / f"{page}.md"]
    path = next((c for c in candidates if c.exists()), None)
    if path is None:
        return set()
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text()
    return {m.strip() for m in re.findall(r"^#{1,4}\s+(.+?)\s*$", text, re.M)}


def _glossary_terms() -> set[str]:
    text = GLOSSARY.read_text()
    block = text.split(":::{glossary}", 1)[1].split("\n:::", 1)[0]
    return {line.strip().lower() for line in block.splitlines()
            if line.strip() and not line.startswith((" ", "\t"))}


def _plain(text: str) -> str:
    return re.sub(r"\*\*|`", "", text).lower()


def _questions(name: str) -> list[str]:
    path = EXAM if name == "exam" else QUIZZES / f"{name}.json"
    return [_plain(q["question"]) for q in json.loads(path.read_text())]


def _check_reference(ref: str) -> str | None:
    """None when ``ref`` resolves, else what is wrong."""
    kind, _, rest = ref.partition(" ")
    if kind == "card":
        stem, _, card_id = rest.partition("/")
        path = DECKS / f"{stem}.json"
        if not path.exists():
            return f"no deck {path.name}"
        if card_id not in {c["id"] for c in json.loads(path.read_text())}:
            return f"no card {card_id!r} in {path.name}"
        return None
    if kind in ("quiz", "exam"):
        name, sep, needle = ("exam " + rest if kind == "exam" else rest).partition(" ~ ")
        if not sep:
            return f"{ref!r} is not '{kind} <name> ~ <text>'"
        if name != "exam" and not (QUIZZES / f"{name}.json").exists():
            return f"no quiz {name}"
        found = [q for q in _questions(name) if _plain(needle) in q]
        if len(found) != 1:
            return f"{len(found)} questions of {name} contain {needle!r} (need exactly 1)"
        return None
    if kind == "term":
        return None if rest.lower() in _glossary_terms() else f"no glossary term {rest!r}"
    return f"unknown reference kind {kind!r}"


def _check_section(ref: str) -> str | None:
    page, sep, heading = ref.partition(" § ")
    if not sep:
        return f"{ref!r} is not '<page> § <heading>'"
    headings = _headings(page)
    if not headings:
        return f"no page {page!r}"
    return None if heading in headings else f"{page} has no heading {heading!r}"


def _seedmap() -> dict:
    return yaml.safe_load(SEEDMAP.read_text())


def _items():
    for group, items in _seedmap().items():
        for key, item in items.items():
            yield group, key, item


def test_seedmap_references_resolve():
    problems = []
    for group, key, item in _items():
        where = f"{group}/{key}"
        status = item.get("status")
        if not item.get("fact"):
            problems.append(f"{where}: no 'fact'")
        if status not in ("mapped", "planned"):
            problems.append(f"{where}: status must be mapped or planned, not {status!r}")
            continue
        if status == "mapped" and (not item.get("teach") or not item.get("check")):
            problems.append(f"{where}: a mapped item needs 'teach' and 'check'")
        if status == "planned" and not isinstance(item.get("planned"), dict):
            problems.append(f"{where}: a planned item needs 'planned' "
                            "(issue, chapter or page, section)")
        for ref in item.get("teach", []):
            if (msg := _check_section(ref)) is not None:
                problems.append(f"{where}: teach {msg}")
        for ref in item.get("check", []):
            if (msg := _check_reference(ref)) is not None:
                problems.append(f"{where}: check {msg}")
    assert not problems, "\n".join(problems)


def test_planned_items_are_remapped_once_their_chapter_exists():
    problems = []
    for group, key, item in _items():
        if item.get("status") != "planned":
            continue
        target = item["planned"]
        assert {"issue", "section"} <= set(target) and ("chapter" in target or "page" in target)
        if "chapter" in target:
            written = sorted((ROOT / "chapters").glob(f"{target['chapter']}-*.ipynb"))
            assert int(target["chapter"]) > max(int(s[:2]) for s in CHAPTER_STEMS) or written
            pages = [p.stem for p in written]
        else:
            pages = [p.stem for p in ROOT.glob(f"{target['page']}*")
                     if p.suffix in (".md", ".ipynb")]
        for page in pages:
            if target["section"] not in _headings(page):
                problems.append(f"{group}/{key}: {page} exists now; map this item to its section "
                                f"(planned heading {target['section']!r} is not there)")
    assert not problems, "\n".join(problems)


def test_review_page_shows_every_deck():
    review = (ROOT / "review.md").read_text()
    for stem in CHAPTER_STEMS:
        assert f"chapters/cards/{stem}.json" in review, f"the Review page does not show {stem}"


@needs_seeds
def test_every_seed_flashcard_is_mapped():
    ids = re.findall(r"^card_id:\s*(\S+)\s*$", _seed("000"), re.M)
    assert len(ids) == len(set(ids)) and ids
    mapped = set(_seedmap()["flashcards"])
    assert not set(ids) - mapped, f"unmapped flashcards: {sorted(set(ids) - mapped)}"
    unknown = sorted(mapped - set(ids))
    assert not unknown, f"mapped ids that are not seed flashcards: {unknown}"


@needs_seeds
def test_every_other_seed_item_is_mapped():
    seedmap = _seedmap()
    interview = {int(n) for n in
                 re.findall(r"^(\d{1,2}) .+(?:Easy|Medium|Hard)\s*$", _seed("001"), re.M)}
    notes = _seed("003")
    quiz = notes.split("## Quiz:", 1)[1].split("## Answer Key", 1)[0]
    essays = notes.split("## Essay Questions", 1)[1].split("## Glossary", 1)[0]
    glossary = notes.split("## Glossary of Key Terms", 1)[1].split("\n#", 1)[0]
    practical = {int(n) for n in re.findall(r"^### Q(\d+)\.", _seed("004"), re.M)}
    expected = {
        "interview": interview,
        "notes_quiz": {int(n) for n in re.findall(r"^(\d+)\. \*\*", quiz, re.M)},
        "notes_essays": {int(n) for n in re.findall(r"^(\d+)\. \*\*", essays, re.M)},
        "notes_glossary": set(re.findall(r"^- \*\*(.+?):\*\*", glossary, re.M)),
        "practical": practical,
    }
    for group, items in expected.items():
        assert items, f"could not read the seed's {group}"
        assert set(seedmap[group]) == items, (
            f"{group}: unmapped {sorted(items - set(seedmap[group]), key=str)}, "
            f"unknown {sorted(set(seedmap[group]) - items, key=str)}")


def _words(text: str) -> list[str]:
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"\$[^$]*\$", " ", text)
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def _shingles(text: str, n: int = 8) -> set[str]:
    w = _words(text)
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


@needs_seeds
def test_no_seed_sentence_is_copied():
    seed = set().union(*(_shingles(p.read_text(encoding="utf-8")) for p in SEEDS.glob("*.txt")))
    ours = {p.name: p.read_text() for p in [*DECKS.glob("*.json"), EXAM, GLOSSARY,
                                            ROOT / "review.md", SEEDMAP]}
    copied = {name: sorted(_shingles(text) & seed)[:3] for name, text in ours.items()}
    copied = {k: v for k, v in copied.items() if v}
    assert not copied, f"eight or more words in a row copied from the seeds: {copied}"


# ---------------------------------------------------------------------------------------------
# The built site


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not (SITE / "review.html").exists():
        pytest.fail("the site is not built with the review pages: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium   # one per process (tests/conftest.py)


class _Watch:
    """Console errors and requests to other hosts, for every page of one browser context."""

    def __init__(self, context) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.failed: list[str] = []

        def route(r):
            url = r.request.url
            if url.startswith(("data:", "blob:")) or urlparse(url).hostname == "127.0.0.1":
                r.continue_()
            else:
                self.foreign.append(url)
                r.abort()

        context.route("**/*", route)
        context.on("page", self.watch)

    def watch(self, page) -> None:
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(r.url))

    def assert_clean(self) -> None:
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"
        errors = self.errors
        if self.failed and all(u.endswith("/favicon.ico") for u in self.failed):
            errors = [e for e in errors if not e.startswith("Failed to load resource")]
        assert errors == [], f"console errors: {errors} (failed requests: {self.failed})"


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.watch = _Watch(ctx)
    yield ctx
    ctx.close()


def _open(context, server: str, path: str):
    page = context.new_page()
    page.goto(f"{server}/{path}", wait_until="load")
    return page


def _ready(page):
    page.wait_for_selector(".gp-quiz-progress[data-ready='1']", timeout=30_000)


def _wait_score(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('.gp-quiz-score').textContent === t",
                           arg=text, timeout=10_000)


def _wait_flipped(page) -> None:
    """Until the first deck's card is turned over (or 5 s: the assert that follows reports)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => document.querySelector('.gp-deck .flip-container')"
                               ".classList.contains('flip')", timeout=5_000)
    except PlaywrightTimeout:
        pass


def _settled(page) -> None:
    """Until the page has nothing left to do that could still log an error or make a request:
    no request for 500 ms (Playwright's "networkidle") and every typesetting MathJax was asked
    for done (MathJax's startup promise, which its typesetPromise calls chain on). This replaces
    a fixed 1.5-2.5 s sleep before a page's console and requests are judged."""
    page.wait_for_load_state("networkidle")
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise"
                  " ? MathJax.startup.promise.then(() => true) : true")
    page.wait_for_load_state("networkidle")


def _score(page) -> str:
    return page.locator(".gp-quiz-score").first.inner_text().strip()


def _single_choice(page, nth: int):
    return page.locator(".Quiz:has(.MultipleChoiceQn)").nth(nth)


def _value_numeric(page):
    """The first numeric question with an exact correct value, and that value as typed."""
    index = page.evaluate("""() => Array.from(document.querySelectorAll('.Quiz')).findIndex(q => {
        const i = q.querySelector('input.Input-text');
        return i && JSON.parse(i.dataset.answers).some(a => a.correct && 'value' in a);
    })""")
    assert index >= 0
    block = page.locator(".Quiz").nth(index)
    answers = json.loads(block.locator("input.Input-text").get_attribute("data-answers"))
    value = next(a["value"] for a in answers if a.get("correct") and "value" in a)
    return block, f"{value:g}"


@pytest.mark.browser
def test_quiz_answers_and_score_survive_a_reload_and_reset(context, server):
    page = _open(context, server, "chapters/01-chain-rule.html")
    _ready(page)
    total = page.locator(".Quiz").count()
    assert _score(page) == f"0 of {total} answered correctly"

    right = _single_choice(page, 0)
    right.locator("label[data-correct='true']").click()
    wrong = _single_choice(page, 1)
    wrong.locator("label[data-correct='false']").first.click()
    numeric, value = _value_numeric(page)
    box = numeric.locator("input.Input-text")
    box.fill(value)
    box.press("Enter")
    expected = f"2 of {total} answered correctly (3 answered)"
    _wait_score(page, expected)
    stored = page.evaluate("() => JSON.parse(localStorage.getItem("
                           "'gradflow:quiz:v1:chapters/01-chain-rule'))")
    assert len(stored["questions"]) == 3 and stored["correct"] == 2 and stored["total"] == total

    page.close()
    page = _open(context, server, "chapters/01-chain-rule.html")   # a later visit
    _ready(page)
    assert _score(page) == expected
    assert page.evaluate("window.scrollY") < 50, "restoring answers must not scroll the page"
    restored_right = _single_choice(page, 0).locator("label[data-correct='true']")
    assert "correctButton" in restored_right.get_attribute("class")
    assert "incorrectButton" in (_single_choice(page, 1).locator("label.incorrectButton").first
                                 .get_attribute("class"))
    numeric, _ = _value_numeric(page)
    restored = numeric.locator("input.Input-text")
    assert restored.input_value() == value and "correctButton" in restored.get_attribute("class")
    assert numeric.locator(".Feedback").inner_text().strip(), "restored answers show feedback"

    page.locator(".gp-quiz-reset").first.click()
    assert _score(page) == f"0 of {total} answered correctly"
    assert page.locator(".Quiz .correctButton, .Quiz .incorrectButton").count() == 0
    page.reload(wait_until="load")
    _ready(page)
    assert _score(page) == f"0 of {total} answered correctly"
    assert page.locator(".Quiz .correctButton, .Quiz .incorrectButton").count() == 0
    context.watch.assert_clean()


@pytest.mark.browser
def test_exam_keeps_its_own_score_and_the_intro_shows_course_progress(context, server):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    chapter = _open(context, server, "chapters/02-vanishing-gradients.html")
    _ready(chapter)
    _single_choice(chapter, 0).locator("label[data-correct='true']").click()
    _wait_score(chapter, f"1 of {chapter.locator('.Quiz').count()} answered correctly")

    exam = _open(context, server, "exam.html")
    _ready(exam)
    questions = exam.locator(".Quiz").count()
    assert questions == len(json.loads(EXAM.read_text()))
    try:   # jupyterquiz typesets its questions 500 ms after drawing them (later when busy)
        exam.wait_for_function("() => document.querySelectorAll('.Quiz mjx-container').length",
                               timeout=20_000)
    except PlaywrightTimeout:
        pass   # the assert reports it
    assert exam.locator(".Quiz mjx-container").count() > 0, "the exam's math is typeset"
    _single_choice(exam, 0).locator("label[data-correct='true']").click()
    _single_choice(exam, 1).locator("label[data-correct='true']").click()
    _wait_score(exam, f"2 of {questions} answered correctly")
    keys = exam.evaluate("() => Object.keys(localStorage)"
                         ".filter(k => k.startsWith('gradflow:quiz:v1:')).sort()")
    assert keys == ["gradflow:quiz:v1:chapters/02-vanishing-gradients", "gradflow:quiz:v1:exam"]

    intro = _open(context, server, "intro.html")
    intro.wait_for_selector("#gp-course-progress table tbody tr")
    rows = intro.evaluate("""() => Array.from(
        document.querySelectorAll('#gp-course-progress tbody tr'),
        r => [r.dataset.page, Number(r.dataset.correct), Number(r.dataset.total)])""")
    assert [r[0] for r in rows] == [f"chapters/{s}" for s in CHAPTER_STEMS] + ["history", "exam"]
    by_page = {r[0]: r[1:] for r in rows}
    assert by_page["exam"] == [2, questions]
    assert by_page["chapters/02-vanishing-gradients"][0] == 1
    assert by_page["chapters/01-chain-rule"][0] == 0
    links = intro.locator("#gp-course-progress tbody a")
    assert links.first.get_attribute("href").endswith("chapters/01-chain-rule.html")
    summary = intro.locator(".gp-course-summary").inner_text()
    assert f"3 of {sum(r[2] for r in rows)}" in summary
    context.watch.assert_clean()


@pytest.mark.browser
def test_flashcards_render_flip_and_advance_on_the_review_page(context, server):
    page = _open(context, server, "review.html")
    page.wait_for_function("() => document.querySelectorAll('.gp-deck .flipper').length >= 16",
                           timeout=30_000)
    decks = page.locator(".gp-deck")
    assert decks.count() == len(CHAPTER_STEMS)
    first_cards = json.loads((DECKS / f"{CHAPTER_STEMS[0]}.json").read_text())
    container = decks.first.locator(".flip-container")
    front = container.locator(".flipper.frontcard .front .flashcardtext")
    assert front.inner_text().strip() == re.sub(r"<[^>]+>", "", first_cards[0]["front"]).strip()

    container.click()
    _wait_flipped(page)
    assert "flip" in container.get_attribute("class")
    assert container.locator(".flipper.frontcard .back mjx-container").count() > 0, \
        "the card's math is typeset by the page's own MathJax"

    decks.first.locator(".next").click()
    second = re.sub(r"<[^>]+>", "", first_cards[1]["front"]).split("$")[0].strip()
    page.wait_for_function(
        "t => document.querySelector('.gp-deck .flipper.frontcard .front .flashcardtext')"
        ".textContent.trim().startsWith(t)", arg=second, timeout=10_000)

    container.focus()
    page.keyboard.press(" ")
    _wait_flipped(page)
    assert "flip" in container.get_attribute("class"), "space flips the focused card"
    _settled(page)
    context.watch.assert_clean()


@pytest.mark.browser
def test_quiz_and_cards_survive_a_slow_mathjax(browser, server):
    """MathJax arriving two seconds late (a slow link) breaks nothing and math is still typeset."""
    import time

    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    watch = _Watch(ctx)

    def slow(route):
        time.sleep(2)
        route.continue_()

    ctx.route(lambda url: "/mathjax/tex-chtml.js" in url, slow)
    try:
        exam = _open(ctx, server, "exam.html")
        _ready(exam)
        exam.wait_for_function("() => document.querySelectorAll('.Quiz mjx-container').length > 0",
                               timeout=20_000)
        _single_choice(exam, 0).locator("label[data-correct='true']").click()
        _wait_score(exam, f"1 of {exam.locator('.Quiz').count()} answered correctly")
        review = _open(ctx, server, "review.html")
        review.wait_for_function(
            "() => document.querySelectorAll('.gp-deck .flipper').length >= 16", timeout=30_000)
        _settled(review)
        watch.assert_clean()
    finally:
        ctx.close()


@pytest.mark.browser
@pytest.mark.parametrize("path", ["review.html", "exam.html", "glossary.html", "intro.html"])
def test_learning_pages_are_offline_clean(context, server, path):
    page = _open(context, server, path)
    # what each page draws after loading, then nothing left to do (instead of a 2.5 s sleep)
    ready = {"review.html": "() => document.querySelectorAll('.gp-deck .flipper').length >= 16",
             "exam.html": "() => !!document.querySelector(\".gp-quiz-progress[data-ready='1']\")",
             "intro.html": "() => !!document.querySelector('#gp-course-progress tbody tr')"}
    if path in ready:
        page.wait_for_function(ready[path], timeout=30_000)
    _settled(page)
    if path == "glossary.html":
        assert page.locator("dl.glossary dt#term-internal-covariate-shift").count() == 1
    if path == "intro.html":
        assert page.locator("#gp-course-progress tbody tr").count() == len(CHAPTER_STEMS) + 2
    context.watch.assert_clean()


@pytest.mark.browser
def test_no_quiz_or_deck_script_in_the_site_names_a_cdn():
    pages = sorted(SITE.rglob("*.html"))
    assert pages, "the site is not built: run `make book` first"
    for page in pages:
        for script in re.findall(r"<script[^>]*>(.*?)</script>", page.read_text(), re.S):
            if "show_questions" in script or "createCards" in script:
                assert learning.CDN_MARKER not in script, page.relative_to(SITE)


@pytest.mark.browser
@pytest.mark.parametrize("stem", CHAPTER_STEMS)
def test_compute_badge_comes_from_the_builds_own_measurement(stem):
    """The badge's seconds are jupyter-cache's record of executing this very notebook."""
    import nbformat
    from jupyter_cache import get_cache

    page = SITE / "chapters" / f"{stem}.html"
    if not page.exists():
        pytest.fail("the site is not built: run `make book` first")
    badges = re.findall(r'<p class="gp-compute-badge" data-seconds="([0-9.]+)" '
                        r'data-device="(\w+)"[^>]*>.*?<span class="gp-badge-text">([^<]+)</span>',
                        page.read_text(), re.S)
    assert len(badges) == 1, f"{stem}: expected one compute badge"
    seconds, device, text = float(badges[0][0]), badges[0][1], badges[0][2].strip()
    cache = get_cache(str(ROOT / "_build" / ".jupyter_cache"))
    record = cache.match_cache_notebook(nbformat.read(ROOT / "chapters" / f"{stem}.ipynb", 4))
    assert seconds == pytest.approx(record.data["execution_seconds"], abs=1e-3)
    assert text == learning.badge_text(seconds, device)
