"""Book markup that a plain notebook front end cannot read: glued numbers and citations.

The prose quotes numbers with MyST's ``{glue:text}`name:.2f``` and cites papers with
``{footcite:p}`key```; the book build (MyST-NB and sphinxcontrib-bibtex) turns both into text.
Jupyter, JupyterLab, Colab and Binder show such roles as typed, so outside the book build:

- :func:`glue` prints ``name = value`` formatted with the same spec as the prose (``fmt``), in the
  cell that computes the number, just above the sentence that quotes it;
- :func:`show_references` lists the works the chapter cites, key by key, from ``references.bib``,
  under the chapter's References heading (its cell is removed from the book's pages, where
  ``{footbibliography}`` does the same).

Inside the book build (``GRADPATH_STATIC_BUILD=1``, set by :mod:`gradpath.book.site`) both leave
the page to MyST: :func:`glue` hands the value to MyST-NB's ``glue`` and prints nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from IPython.display import Markdown, display

from gradpath.book.quiz import locate
from gradpath.progress import is_static_build

BIBLIOGRAPHY = "../references.bib"
"""Where ``references.bib`` lies relative to ``chapters/`` (found with :func:`quiz.locate`)."""

_CITE = re.compile(r"\{footcite(?::[a-z]+)?\}`([^`]+)`")


def glue(name: str, value: Any, fmt: str = "") -> Any:
    """Make ``value`` available to the page's prose as ``{glue:text}`name:fmt```, and return it.

    Args:
        name: the name the prose uses.
        value: the number (or other value) to quote.
        fmt: the format spec the prose uses with this name, e.g. ``".2f"`` for
            ``{glue:text}`name:.2f```. Outside the book build :func:`glue` prints
            ``name = format(value, fmt)``, so a reader in Jupyter or Colab sees the number as the
            page shows it. Checked everywhere, so a spec that cannot format the value fails in
            the book build and the tests too, not only in Colab.

    Returns:
        ``value`` (a numpy or torch scalar as the plain Python number MyST formats; end a cell
        with ``;`` or an assignment so it is not shown again).

    Raises:
        ValueError: if ``fmt`` cannot format ``value``.
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()   # numpy/torch scalars: MyST formats only plain Python numbers
    try:
        text = format(value, fmt)
    except (TypeError, ValueError) as error:
        raise ValueError(f"glue({name!r}): fmt={fmt!r} cannot format {value!r} ({error}); use "
                         "the spec the prose gives after the colon, e.g. '.2f'") from error
    if is_static_build():
        try:
            from myst_nb import glue as myst_glue
        except ImportError:  # pragma: no cover - the book build always has MyST-NB
            pass
        else:
            myst_glue(name, value, display=False)
            return value
    print(f"{name} = {text}")
    return value


# ---------------------------------------------------------------------------------------------
# references


_ACCENTS = {'"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303",
            "c": "\u0327", "v": "\u030c", "=": "\u0304", ".": "\u0307"}
_LETTERS = {"L": "Ł", "l": "ł", "o": "ø", "O": "Ø", "ss": "ß", "aa": "å", "AA": "Å", "ae": "æ",
            "i": "ı"}


def _latex_to_text(text: str) -> str:
    """Plain Unicode for the LaTeX a .bib file uses: accents, special letters, braces, dashes."""
    import unicodedata

    def accent(match: re.Match[str]) -> str:
        return unicodedata.normalize("NFC", match.group(2) + _ACCENTS[match.group(1)])

    text = re.sub(r"\\([\"'`^~=.])\{?([A-Za-z])\}?", accent, text)
    text = re.sub(r"\\([cv])\{([A-Za-z])\}", accent, text)
    text = re.sub(r"\\(ss|aa|AA|ae|[LlOoi])\b\s*", lambda m: _LETTERS[m.group(1)], text)
    text = text.replace("---", "\u2014").replace("--", "\u2013").replace("~", "\u00a0")
    text = re.sub(r"\\&", "&", text)
    return re.sub(r"\s+", " ", text.replace("{", "").replace("}", "")).strip()


def parse_bibtex(text: str) -> dict[str, dict[str, str]]:
    """The entries of a .bib file: ``{key: {"type": ..., field: plain-text value}}``.

    Enough BibTeX for the course's ``references.bib``: ``@type{key, field = {value}}`` with
    nested braces, ``"quoted"`` or bare values, ``@comment``/``@string``/``@preamble`` skipped.

    Raises:
        ValueError: for an entry whose braces do not balance, naming its key.
    """
    entries: dict[str, dict[str, str]] = {}
    for start in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text):
        kind, key = start.group(1).lower(), start.group(2)
        if kind in ("comment", "string", "preamble"):
            continue
        fields: dict[str, str] = {"type": kind}
        i = start.end()
        while True:
            field = re.compile(r"\s*(\w+)\s*=\s*").match(text, i)
            if field is None:
                break
            i = field.end()
            if text[i] == "{":
                depth, j = 0, i
                while j < len(text):
                    depth += {"{": 1, "}": -1}.get(text[j], 0)
                    if depth == 0:
                        break
                    j += 1
                else:
                    raise ValueError(f"references: unbalanced braces in entry {key!r}")
                value, i = text[i + 1:j], j + 1
            elif text[i] == '"':
                j = text.index('"', i + 1)
                value, i = text[i + 1:j], j + 1
            else:
                bare = re.compile(r"[^,}\s]+").match(text, i)
                value, i = (bare.group(0), bare.end()) if bare else ("", i)
            fields[field.group(1).lower()] = _latex_to_text(value)
            comma = re.compile(r"\s*,").match(text, i)
            if comma is None:
                break
            i = comma.end()
        entries[key] = fields
    return entries


def _authors(names: str) -> str:
    people = []
    for person in re.split(r"\s+and\s+", names):
        if "," in person:
            last, first = (part.strip() for part in person.split(",", 1))
        else:
            *given, last = person.split()
            first = " ".join(given)
        initials = " ".join("-".join(f"{part[0]}." for part in name.split("-") if part)
                            for name in first.split())
        people.append(f"{initials} {last}".strip())
    etal = people[-1] == "others"
    people = people[:-1] if etal else people
    if etal or len(people) == 1:
        return ", ".join(people) + (" et al." if etal else "")
    return ", ".join(people[:-1]) + " and " + people[-1]


def format_reference(entry: dict[str, str]) -> str:
    """One entry as a line of Markdown: authors (year). *Title*. Venue volume(number), pages."""
    venue = next((entry[f] for f in ("journal", "booktitle", "school", "publisher",
                                     "howpublished") if f in entry), "")
    if "volume" in entry:
        venue += f", {entry['series']}" if "series" in entry else ""
        venue += f" {entry['volume']}" + (f"({entry['number']})" if "number" in entry else "")
    if "pages" in entry:
        venue += f", {entry['pages']}"
    if entry.get("eprint"):
        venue += f" arXiv:{entry['eprint']}"
    line = f"{_authors(entry.get('author', 'Anonymous'))} ({entry.get('year', 'n.d.')}). " \
           f"*{entry.get('title', '')}*."
    return f"{line} {venue.strip()}." if venue.strip() else line


def cited_keys(notebook: dict[str, Any]) -> list[str]:
    """The citation keys of a notebook's ``{footcite}`` roles, in order of first use."""
    keys: list[str] = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            for group in _CITE.findall("".join(cell["source"])):
                keys += [k.strip() for k in group.split(",") if k.strip() not in keys]
    return keys


def references_markdown(notebook: str | Path) -> str:
    """The works a chapter cites, as a Markdown list keyed like its ``{footcite}`` roles.

    Raises:
        FileNotFoundError: if the notebook or ``references.bib`` cannot be found.
        KeyError: for a cited key that ``references.bib`` lacks.
    """
    cells = json.loads(locate(notebook).read_text(encoding="utf-8"))
    bibliography = parse_bibtex(locate(BIBLIOGRAPHY).read_text(encoding="utf-8"))
    lines = ["The works cited above as {footcite}`key`:", ""]
    for key in cited_keys(cells):
        if key not in bibliography:
            raise KeyError(f"{Path(notebook).name} cites {key!r}, which references.bib lacks")
        lines.append(f"- `{key}`: {format_reference(bibliography[key])}")
    return "\n".join(lines)


def show_references(notebook: str | Path) -> None:
    """Outside the book build, show the chapter's references (see the module docstring).

    ``notebook`` is the chapter's file name, e.g. ``"01-chain-rule.ipynb"``; it is found with
    :func:`gradpath.book.quiz.locate` like the quizzes, wherever the notebook runs.
    """
    if is_static_build():
        return
    display(Markdown(references_markdown(notebook)))
