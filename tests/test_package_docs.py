"""The package says what it is: its docstring and the README list every module of each layer, and
a bare ``pip install gradpath`` asks only for what the core imports (issue 9, section 6)."""

from __future__ import annotations

import re

import gradpath
import tomllib
from conftest import ROOT

PACKAGE = ROOT / "lib" / "gradpath"


def _modules(folder: str = "") -> list[str]:
    return sorted(p.stem for p in (PACKAGE / folder).glob("*.py")
                  if p.stem != "__init__" and not p.stem.startswith("_"))


def _readme_layout() -> str:
    text = (ROOT / "README.md").read_text()
    layout = text.split("## Layout", 1)[1].split("```")[1]
    return layout


def test_the_package_docstring_names_every_core_module():
    doc = gradpath.__doc__ or ""
    missing = [m for m in _modules() if f":mod:`gradpath.{m}`" not in doc]
    assert not missing, f"gradpath/__init__.py's docstring does not list {missing}"


def test_the_readme_layout_names_every_module_of_each_layer():
    layout = _readme_layout()
    sections = {"": r"lib/gradpath/ ", "experiments": r"lib/gradpath/experiments/",
                "book": r"lib/gradpath/book/"}
    for folder, start in sections.items():
        block = layout.split(start, 1)[1].split("\nlib/", 1)[0].split("\ntests/", 1)[0]
        words = set(re.findall(r"[a-z_]+", block))
        missing = [m for m in _modules(folder) if m not in words]
        assert not missing, f"README's layout for {start.strip()} does not list {missing}"


def test_a_bare_install_needs_only_torch_numpy_and_matplotlib():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] for d in project["dependencies"]}
    assert names == {"torch", "numpy", "matplotlib"}
    book = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0]
            for d in project["optional-dependencies"]["book"]}
    assert {"plotly", "ipywidgets", "scikit-learn", "tqdm", "jupyterquiz", "jupytercards"} <= book
    assert "torch" not in book                          # the Colab set-up never reinstalls torch
