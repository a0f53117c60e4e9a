"""A learner's launch: chapters run in a fresh Colab-like environment, twice each.

Colab gives a notebook a Python with torch, ipywidgets 7.7.1 and much else preinstalled, no
myst-nb, and a working directory (``/content``) that is not the course's. This test builds such an
environment and runs two chapters in it as a learner would:

1. a throwaway venv in a temporary folder, which sees the shared venv's packages as its
   "preinstalled" ones (a ``.pth`` line, so torch is not installed again), has ipywidgets 7.7.1
   installed over them, and hides the book's build tools (myst-nb, MyST, Jupyter Book, Sphinx);
2. a local git repository holding the working tree stands in for GitHub: the set-up cell is
   pointed at it exactly as ``make set-repository`` would point it at a fork, and its clone goes
   to a temporary folder that already holds a half-finished clone (a failed earlier run);
3. each chapter runs in a fresh kernel whose working directory is an empty ``content/`` folder
   (the set-up cell clones and installs gradpath), then again in a new kernel, as after
   "Restart session → Run all" (gradpath is installed now, so the set-up cell skips the install).

It then checks what a learner would see: no errors; each ``{glue:text}`` role the prose shows
raw has its value printed, formatted as the page formats it; one explorer per explorer cell, and
the explorer runs with ipywidgets 7.7.1; no progress bar is left frozen; the quiz and the
references show; no package that was there before the launch changed version.

It takes minutes and needs the package index (for ipywidgets 7.7.1 and gradpath's build
backend), so it runs only with ``GRADPATH_LAUNCHED=1`` (``make launched``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(os.environ.get("GRADPATH_LAUNCHED") != "1",
                                reason="slow: installs into a throwaway venv and runs two "
                                       "chapters twice; run with GRADPATH_LAUNCHED=1 "
                                       "(make launched)")

CHAPTERS = ["01-chain-rule", "03-exploding-gradients"]
COLAB_WIDGETS = "ipywidgets==7.7.1"
HIDDEN = ("myst_nb", "myst_parser", "jupyter_book", "sphinx", "sphinxcontrib")
GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`:]+)(?::([^`]*))?`")
WIDGET = "application/vnd.jupyter.widget-view+json"
TIMEOUT = 600

# Added to the end of each notebook: press every explorer's "Run" button, as a learner would.
PRESS_RUN = textwrap.dedent("""\
    import ipywidgets
    from ipywidgets import interactive
    explorers = [w for w in list(ipywidgets.Widget.widgets.values())
                 if isinstance(w, interactive)]
    print("explorers:", len(explorers), "ipywidgets", ipywidgets.__version__)
    for explorer in explorers:
        explorer.update()
""")

# What a learner's session has: each distribution the environment finds, at the version that
# wins on sys.path (gradpath apart: the shared venv's editable copy is not importable here).
VERSIONS = textwrap.dedent("""\
    import importlib.metadata as m, importlib.util, json
    names = {d.metadata["Name"].lower().replace("_", "-") for d in m.distributions()}
    versions = {n: m.version(n) for n in sorted(names - {"gradpath"})}
    versions["gradpath importable"] = importlib.util.find_spec("gradpath") is not None
    print(json.dumps(versions))
""")

HIDE = textwrap.dedent(f"""\
    # Colab has no book-build tools: hide the shared venv's copies from this environment.
    import importlib.abc
    import sys

    class _NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {HIDDEN!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
""")


def _run(*command: str | Path, **kwargs) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}\n" \
                                   f"{result.stderr}"
    return result.stdout


class Launch:
    """The throwaway environment, and how to run a notebook in it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.venv = base / "venv"
        self.python = self.venv / "bin" / "python"
        self.source = base / "source"
        self.clone = base / "gradient-flow"
        self.content = base / "content"
        self.content.mkdir()
        self._snapshot_working_tree()
        _run(sys.executable, "-m", "venv", self.venv)
        site_packages = Path(_run(self.python, "-c", "import sysconfig; "
                                  "print(sysconfig.get_paths()['purelib'])").strip())
        (site_packages / "_preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        (site_packages / "sitecustomize.py").write_text(HIDE)
        # ensurepip's old setuptools would shadow the preinstalled one that torch requires
        _run(self.python, "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools",
             env=self.env())
        _run(self.python, "-m", "pip", "install", "--quiet", COLAB_WIDGETS, env=self.env())
        self.kernels = base / "kernels"
        spec = self.kernels / "launched"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(self.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "launched", "language": "python"}))

    def _snapshot_working_tree(self) -> None:
        """A git repository holding the working tree as it is (committed or not)."""
        files = _run("git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "-z")
        for name in filter(None, files.split("\0")):
            if (ROOT / name).is_file():
                (self.source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, self.source / name)
        git = ["git", "-C", self.source, "-c", "user.name=test", "-c", "user.email=test@example"]
        _run("git", "init", "--quiet", "--initial-branch=main", self.source)
        _run(*git, "add", "--all")
        _run(*git, "commit", "--quiet", "--message", "working tree")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
               and not k.startswith(("GRADPATH_", "JUPYTER_", "MPL"))}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def versions(self) -> dict[str, str]:
        return json.loads(_run(self.python, "-c", VERSIONS, env=self.env()))

    def notebook(self, chapter: str) -> nbformat.NotebookNode:
        """The chapter as a learner opens it, its set-up cell pointed at the local clone."""
        nb = nbformat.read(ROOT / "chapters" / f"{chapter}.ipynb", as_version=4)
        setup = nb.cells[0].source
        repository = re.search(r'^REPOSITORY = "([^"]+)"$', setup, re.M)
        clone = re.search(r'^CLONE = pathlib\.Path\("([^"]+)"\)$', setup, re.M)
        assert repository and clone, "the set-up cell's REPOSITORY/CLONE lines changed"
        nb.cells[0].source = (setup.replace(repository.group(0),
                                            f'REPOSITORY = "file://{self.source}"')
                              .replace(clone.group(0), f'CLONE = pathlib.Path("{self.clone}")'))
        nb.cells.append(nbformat.v4.new_code_cell(PRESS_RUN))
        return nb

    def execute(self, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
        """Run every cell in a new kernel (a fresh session), working directory content/."""
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient

        specs = KernelSpecManager(kernel_dirs=[str(self.kernels)], ensure_native_kernel=False)
        km = KernelManager(kernel_name="launched", kernel_spec_manager=specs)
        km.start_kernel(env=self.env(), cwd=str(self.content))
        try:
            NotebookClient(nb, km=km, timeout=TIMEOUT, kernel_name="launched",
                           allow_errors=False).execute()
        finally:
            km.shutdown_kernel(now=True)
        return nb

    def forget_gradpath(self) -> None:
        """A new Colab session for the next chapter: no gradpath, a half-finished clone."""
        subprocess.run([self.python, "-m", "pip", "uninstall", "--quiet", "--yes", "gradpath"],
                       env=self.env(), capture_output=True)
        shutil.rmtree(self.clone, ignore_errors=True)
        self.clone.mkdir()
        (self.clone / "README.md").write_text("a clone that stopped half-way")


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """{chapter: (first run, run after a restart)}, and the versions before and after."""
    launch = Launch(tmp_path_factory.mktemp("launched"))
    before = launch.versions()
    runs = {}
    for chapter in CHAPTERS:
        launch.forget_gradpath()
        first = launch.execute(launch.notebook(chapter))
        again = launch.execute(launch.notebook(chapter))
        runs[chapter] = (first, again)
        for label, nb in (("first", first), ("again", again)):   # kept for a look afterwards
            nbformat.write(nb, launch.base / f"{chapter}.{label}.ipynb")
    return runs, before, launch.versions()


def _text(output) -> str:
    if output.output_type == "stream":
        return output.text
    return output.get("data", {}).get("text/plain", "") if "data" in output else ""


def _runs(launched):
    runs, _, _ = launched
    for chapter, pair in runs.items():
        for label, nb in zip(("first run", "after a restart"), pair, strict=True):
            yield f"{chapter}, {label}", nb


def test_nothing_fails_and_nothing_is_left_raw(launched):
    for where, nb in _runs(launched):
        printed = "\n".join(_text(o) for c in nb.cells if c.cell_type == "code"
                            for o in c.outputs)
        assert "Traceback" not in printed, f"{where}: {printed[-3000:]}"
        for cell in nb.cells:                   # a cell's value is shown only where meant
            for output in getattr(cell, "outputs", []):
                if output.output_type == "execute_result":
                    assert cell.source.rstrip().split("\n")[-1].startswith("show("), \
                        f"{where}: stray value {_text(output)!r} under {cell.source[-80:]!r}"
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for name, spec in GLUE_ROLE.findall(cell.source):
                shown = re.search(rf"^{re.escape(name)} = (\S+)$", printed, re.M)
                assert shown, f"{where}: the prose shows {{glue:text}}`{name}` with no value"
                number = shown.group(1)
                value = float(number.rstrip("%")) / (100 if number.endswith("%") else 1)
                if spec.endswith("d"):
                    value = int(value)
                assert format(value, spec) == number, \
                    f"{where}: {name} printed as {number}, the page shows it as {spec!r}"


def test_each_explorer_shows_once_and_runs_with_colabs_ipywidgets(launched):
    for where, nb in _runs(launched):
        cells = [c for c in nb.cells if c.cell_type == "code" and "live_explorer(" in c.source]
        assert cells, where
        for cell in cells:
            views = [o for o in cell.outputs if WIDGET in o.get("data", {})]
            shown = [o for o in cell.outputs if "interactive(children" in _text(o)]
            assert len(views) == len(shown) == 1, \
                f"{where}: the explorer is shown {max(len(views), len(shown))} times"
        pressed = "".join(_text(o) for o in nb.cells[-1].outputs)
        assert f"explorers: {len(cells)} ipywidgets 7.7.1" in pressed, f"{where}: {pressed}"
        state = nb.metadata.get("widgets", {}).get(
            "application/vnd.jupyter.widget-state+json", {}).get("state", {})
        # an explorer's figure goes to its Output widget (kept in the widget state), or straight
        # to the cell where the kernel does not tag the output for the widget
        captured = [o for model in state.values()
                    for o in model.get("state", {}).get("outputs", [])] + nb.cells[-1].outputs
        assert not [o for o in captured if o.get("output_type") == "error"], \
            f"{where}: the explorer failed: {captured}"
        assert any("image/png" in o.get("data", {}) for o in captured), \
            f"{where}: pressing Run drew no figure ({captured})"


def test_quiz_references_and_figures_show(launched):
    for where, nb in _runs(launched):
        quiz = next(c for c in nb.cells if "show_quiz(" in c.source)
        assert any("text/html" in o.get("data", {}) for o in quiz.outputs), where
        references = next(c for c in nb.cells if "show_references(" in c.source)
        markdown = "".join(o.get("data", {}).get("text/markdown", "")
                           for o in references.outputs)
        assert markdown.count("\n- `") >= 1, f"{where}: no references listed"


def test_no_preinstalled_package_changes_version(launched):
    _, before, after = launched
    assert before["ipywidgets"] == "7.7.1"
    assert not before.pop("gradpath importable") and after.pop("gradpath importable")
    changed = {name: (version, after.get(name)) for name, version in before.items()
               if after.get(name) != version}
    assert not changed, f"the set-up cell changed preinstalled packages: {changed}"


def test_progress_bars_do_not_freeze(launched):
    """A saved notebook keeps no bar's text frozen where it stood when first displayed.

    Every loop in a chapter runs to its end, so no bar may be left at all: neither a widget
    view whose text fallback says ``0%|`` nor a text bar.
    """
    for where, nb in _runs(launched):
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                assert not re.search(r"\d+%\|", _text(output)), \
                    f"{where}: a progress bar frozen as {_text(output)!r}"
