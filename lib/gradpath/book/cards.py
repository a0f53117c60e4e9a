"""Flashcard decks: JSON files in ``chapters/cards/``, checked and shown with jupytercards.

A deck is a list of cards, each ``{"id": ..., "front": ..., "back": ...}``. The ``id`` is a short
slug, unique in its deck, that the seed map (``seedmap.yaml``) cites as ``NN-slug/id``; ``front``
and ``back`` are HTML with ``$...$`` math, because jupytercards inserts them as HTML (Markdown
such as ``**bold**`` would show as typed). :func:`validate_deck` enforces that.

jupytercards 3.2.1 is used for its card JavaScript and CSS, read from the installed package, so
the decks work offline. Its own ``display_flashcards`` is not called, because its script would load
MathJax from a CDN when the page's MathJax is still loading, and would then read the version of a
MathJax that is not there (a console error). :func:`cards_script` removes that fallback, and each
deck's loader waits for the page's own MathJax (or for none) before it builds the cards.

Use :func:`show_cards` in a notebook (Jupyter, Colab and the built site); the book's Review page
uses :func:`decks_html` through the ``flashcards`` directive of :mod:`gradpath.book.learning`.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Sequence
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from gradpath.book.quiz import locate

MIN_CARDS = 6
MAX_FRONT_CHARS = 200
MAX_BACK_CHARS = 360
ID_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MARKDOWN = re.compile(r"\*\*|__|`")
# Dark enough that white text reads at >= 7:1 in light and dark mode.
FRONT_COLORS = ["#1f4e79", "#5b2a5e", "#2d5f2e"]
BACK_COLORS = ["#3b3f5c"]
TEXT_COLORS = ["#ffffff"]
CDN_MARKERS = ("cdn.jsdelivr.net", "force load MathJax")


class DeckError(ValueError):
    """A flashcard deck breaks the course's rules; the message names the card."""


def _visible_text(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment)


def validate_deck(cards: Any, name: str = "deck") -> None:
    """Raise :class:`DeckError` unless ``cards`` is a well-formed course deck.

    Rules: a list of at least :data:`MIN_CARDS` cards; each a dict with a slug ``id`` (lower-case
    words joined by hyphens, unique in the deck) and non-empty ``front`` and ``back`` strings of
    at most :data:`MAX_FRONT_CHARS` / :data:`MAX_BACK_CHARS` visible characters (longer text
    overflows the card); no Markdown emphasis or backticks (write HTML); balanced ``$`` math.
    """
    if not isinstance(cards, list) or len(cards) < MIN_CARDS:
        raise DeckError(f"{name}: needs a list of at least {MIN_CARDS} cards")
    seen: set[str] = set()
    for i, card in enumerate(cards, start=1):
        where = f"{name}, card {i}"
        if not isinstance(card, dict):
            raise DeckError(f"{where}: must be an object with id, front and back")
        card_id = card.get("id")
        if not isinstance(card_id, str) or not ID_PATTERN.match(card_id):
            raise DeckError(f"{where}: id {card_id!r} must be a slug such as 'sigmoid-peak'")
        if card_id in seen:
            raise DeckError(f"{where}: id {card_id!r} is used twice")
        seen.add(card_id)
        for side, limit in (("front", MAX_FRONT_CHARS), ("back", MAX_BACK_CHARS)):
            text = card.get(side)
            if not isinstance(text, str) or not text.strip():
                raise DeckError(f"{where} ({card_id}): needs a non-empty {side!r}")
            if MARKDOWN.search(text):
                raise DeckError(f"{where} ({card_id}): {side} contains Markdown (** __ or "
                                "backticks); jupytercards shows it as typed, write HTML")
            if len(_visible_text(text)) > limit:
                raise DeckError(f"{where} ({card_id}): {side} has {len(_visible_text(text))} "
                                f"characters, more than the {limit} that fit on a card")
            if text.replace(r"\$", "").count("$") % 2:
                raise DeckError(f"{where} ({card_id}): {side} has an unmatched '$'")
        extra = set(card) - {"id", "front", "back"}
        if extra:
            raise DeckError(f"{where} ({card_id}): unknown keys {sorted(extra)}")


def load_deck(path: str | Path) -> list[dict[str, str]]:
    """Read and validate a deck (a relative path such as ``cards/01-chain-rule.json`` is found
    like a quiz: see :func:`gradpath.book.quiz.locate`)."""
    found = locate(path)
    cards = json.loads(found.read_text(encoding="utf-8"))
    validate_deck(cards, name=found.name)
    return cards


def _package_text(name: str) -> str:
    return files("jupytercards").joinpath(name).read_text(encoding="utf-8")


# The fallback in jupytercards' flashcards.js that loads MathJax from a CDN (twice in 3.2.1).
_CDN_FALLBACK = re.compile(
    r"\}\s*else\s*\{\s*console\.log\('WARNING: Trying to force load MathJax 3'\);"
    r".*?document\.head\.appendChild\(script\);\s*\}\)\(\);\s*\}", re.S)
_MATHJAX_PRESENT = "typeof MathJax != 'undefined'"


@lru_cache(maxsize=1)
def cards_script() -> str:
    """jupytercards' JavaScript (swipe events and cards), made safe to run offline.

    Two edits, both checked: the branch that loads MathJax 3 from cdn.jsdelivr.net is removed
    (the page's own MathJax typesets the cards), and every "is MathJax there?" test also asks
    for ``MathJax.version``, so a MathJax configuration object that has not loaded yet is treated
    as "no MathJax" instead of failing on ``version[0]``.

    Raises:
        RuntimeError: if the installed jupytercards still refers to a CDN after the edits
            (another version than 3.2.1, which this was written for).
    """
    script = _package_text("swiped-events.min.js") + "\n" + _package_text("flashcards.js")
    script, removed = _CDN_FALLBACK.subn("}", script)
    present = script.count(_MATHJAX_PRESENT)
    script = script.replace(_MATHJAX_PRESENT, _MATHJAX_PRESENT + " && MathJax.version")
    if any(marker in script for marker in CDN_MARKERS):
        raise RuntimeError(
            "jupytercards' flashcards.js is not the version gradpath.book.cards was written "
            f"for: it still loads MathJax from a CDN after removing {removed} fallbacks "
            f"({present} MathJax checks guarded); pin jupytercards==3.2.1 or update "
            "cards_script()")
    return script


@lru_cache(maxsize=1)
def cards_assets() -> str:
    """The HTML every page with decks needs once: jupytercards' CSS and its SVG icons."""
    return f"<style>\n{_package_text('styles.css')}\n</style>\n{_package_text('svg-symbols.svg')}"


def _loader(div_id: str, cards: Sequence[dict[str, str]], title: str) -> str:
    """Start one deck once its div exists and the page's MathJax (if any) is ready."""
    data = {"cards": [dict(card, seqNum=i) for i, card in enumerate(cards)],
            "frontColors": FRONT_COLORS, "backColors": BACK_COLORS, "textColors": TEXT_COLORS,
            "title": title}
    # json.dumps does not escape "</", which would end the <script> element early.
    payload = json.dumps(data).replace("</", "<\\/")
    return f"""(function () {{
  var id = {json.dumps(div_id)}, data = {payload}, tries = 0;
  function start() {{
    var el = document.getElementById(id);
    if (!el || el.dataset.gpStarted) return;
    el.dataset.gpStarted = "1";
    el.dataset.url = "";
    el.dataset.cards = JSON.stringify(data.cards);
    el.dataset.frontColors = JSON.stringify(data.frontColors);
    el.dataset.backColors = JSON.stringify(data.backColors);
    el.dataset.textColors = JSON.stringify(data.textColors);
    el.dataset.keyControl = "true";
    el.dataset.grabFocus = "false";
    el.dataset.shuffleCards = "false";
    el.dataset.title = data.title;
    el.dataset.subject = "";
    createCards(id);
    var next = document.getElementById(id + "-next");
    if (next) {{
      next.setAttribute("role", "button");
      next.setAttribute("tabindex", "0");
      next.setAttribute("aria-label", "Next card");
      next.addEventListener("keydown", function (e) {{
        if (e.key === "Enter" || e.key === " ") {{ e.preventDefault(); next.click(); }}
      }});
    }}
  }}
  function wait() {{
    var mj = window.MathJax, el = document.getElementById(id);
    var mathReady = !mj || (mj.version &&
                            (mj.version[0] === "2" || typeof mj.typeset === "function"));
    if (el && typeof createCards === "function" && (mathReady || tries > 150)) {{
      if (mj && mj.startup && mj.startup.promise) {{ mj.startup.promise.then(start, start); }}
      else {{ start(); }}
    }} else {{
      tries += 1;
      setTimeout(wait, 100);
    }}
  }}
  wait();
}})();"""


def deck_div(div_id: str, title: str) -> str:
    """The container and "Next" control of one deck (jupytercards' markup)."""
    label = html.escape(f"Flashcards: {title}. Click or press space to flip a card, "
                        "Enter for the next one.")
    return (f'<div class="gp-deck" data-deck="{html.escape(title)}">'
            f'<div style="height:40px"></div>'
            f'<div class="flip-container" id="{div_id}" data-topics=\'[]\' '
            f'data-known-widgets=\'true\' data-local-storage=\'false\' tabindex="0" '
            f'role="region" aria-label="{label}"></div>'
            f'<div style="height:40px"></div>'
            f'<div class="next" id="{div_id}-next" onclick="window.checkFlip(\'{div_id}\')"> </div>'
            f'<div style="height:40px"></div></div>')


def _new_id() -> str:
    return "gpdeck" + secrets.token_hex(6)


def decks_html(decks: Sequence[tuple[str, Sequence[dict[str, str]]]]) -> str:
    """Static HTML for one or more decks: assets once, then each deck's markup and loader.

    ``decks`` holds ``(title, cards)`` pairs. The result works in any HTML page that has
    MathJax 3 (or none); it requests nothing from the network.
    """
    parts = [cards_assets(), f"<script>\n{cards_script()}\n</script>"]
    for title, cards in decks:
        div_id = _new_id()
        parts.append(deck_div(div_id, title))
        parts.append(f"<script>\n{_loader(div_id, cards, title)}\n</script>")
    return "\n".join(parts)


def show_cards(path: str | Path, title: str | None = None) -> None:
    """Validate the deck at ``path`` and display it with jupytercards in a notebook.

    In Jupyter and Colab the cards' script runs as a JavaScript output; on the built site MyST-NB
    writes the same outputs into the page. ``title`` defaults to the file's stem.
    """
    from IPython.display import HTML, Javascript, display

    cards = load_deck(path)
    title = title or Path(path).stem
    div_id = _new_id()
    display(HTML(cards_assets() + deck_div(div_id, title)))
    display(Javascript(cards_script() + "\n" + _loader(div_id, cards, title)))
