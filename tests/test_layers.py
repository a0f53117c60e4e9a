"""gradpath's three layers: the core never imports experiments or book; experiments never book."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import tomllib
from conftest import ROOT

PACKAGE = ROOT / "lib" / "gradpath"


def _contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_every_core_module_is_in_the_forbidden_contract():
    core = {f"gradpath.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    forbidden = next(c for c in _contracts() if c["type"] == "forbidden")
    assert set(forbidden["source_modules"]) == core
    assert set(forbidden["forbidden_modules"]) == {"gradpath.experiments", "gradpath.book"}


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).parent / "lint-imports"
    command = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_the_core_imports_with_only_torch_numpy_and_matplotlib():
    # A bare `pip install gradpath` has no plotly, ipywidgets, scikit-learn, tqdm or jupyterquiz:
    # block them and import every core module.
    blocked = ["plotly", "ipywidgets", "sklearn", "tqdm", "jupyterquiz", "jupytercards", "myst_nb"]
    core = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"for m in {core!r}: __import__('gradpath.' + m)\n"
        "from gradpath.progress import progress\n"
        "assert list(progress(range(3))) == [0, 1, 2]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
