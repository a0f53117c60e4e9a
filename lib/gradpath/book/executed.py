"""One execution per test run: the book is built from the notebooks nbmake has just executed.

``make test`` (through ``make notebooks``) runs
``python -m gradpath.book.executed chapters/*.ipynb``:

1. it copies the chapters (with their quizzes) into a temporary directory and runs nbmake, the
   notebook validator, on the copies with ``--overwrite``, so each chapter is executed exactly
   once and the copy keeps its outputs (``chapters/`` stays without outputs). The kernels run
   with ``GRADPATH_STATIC_BUILD=1``, as in the book build, so the outputs are the static page's;
2. if every notebook passed, it stores those outputs in the book's execution cache (MyST-NB's
   ``execute_notebooks: cache``, a jupyter-cache database in ``_build/.jupyter_cache``), so the
   book build that follows finds every chapter already executed and runs none of them again.

``make book`` on its own is unchanged: it executes whatever the cache does not hold.
(The copies live outside ``_build`` because nbmake skips every path with a ``_build`` part.)

The cache matches a notebook by a hash of its code cells (source and cell metadata) and its
kernelspec, so the outputs are attached to the *source* notebook from ``chapters/`` before they
are stored: the hash is then exactly the one the book build computes, and a chapter edited since
nbmake ran simply misses the cache and is executed by the build.

"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from gradpath.progress import STATIC_BUILD_ENV

DEFAULT_CACHE = Path("_build") / ".jupyter_cache"


def merge_outputs(source: Path, executed: Path) -> object:
    """The source notebook with the outputs of its executed copy attached, cell by cell.

    Raises:
        ValueError: if the two notebooks' code cells differ (the copy is not of this source).
    """
    import nbformat

    nb = nbformat.read(source, as_version=4)
    ran = nbformat.read(executed, as_version=4)
    mine = [c for c in nb.cells if c.cell_type == "code"]
    theirs = [c for c in ran.cells if c.cell_type == "code"]
    if [c.source for c in mine] != [c.source for c in theirs]:
        raise ValueError(f"{executed} is not an execution of {source}: their code cells differ")
    for cell, done in zip(mine, theirs, strict=True):
        cell.outputs = done.outputs
        cell.execution_count = done.get("execution_count")
    return nb


def cache_executed(executed_dir: Path, source_dir: Path = Path("chapters"),
                   cache_dir: Path = DEFAULT_CACHE) -> list[str]:
    """Store every executed notebook of ``executed_dir`` in the book's execution cache.

    Returns the names of the notebooks stored. Raises ``FileNotFoundError`` if a notebook has no
    source in ``source_dir`` or ``executed_dir`` holds no notebook.
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    executed = sorted(executed_dir.glob("*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"no executed notebooks in {executed_dir}")
    cache = get_cache(str(cache_dir))
    stored = []
    for path in executed:
        source = source_dir / path.name
        if not source.exists():
            raise FileNotFoundError(f"{path.name} has no source notebook in {source_dir}")
        nb = merge_outputs(source, path)
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(source.resolve())),  # type: ignore[arg-type]
                                    check_validity=False, overwrite=True)
        stored.append(path.name)
    return stored


def execute_and_cache(notebooks: list[Path], cache_dir: Path = DEFAULT_CACHE,
                      pytest_args: list[str] | None = None) -> int:
    """Run nbmake once on copies of ``notebooks``; if all pass, cache their outputs for the book.

    The notebooks must share one directory (their sibling files, e.g. ``quizzes/``, are copied
    with them). Returns pytest's exit code (0: every notebook ran without an error).
    """
    import pytest

    if not notebooks:
        raise ValueError("no notebooks given")
    folders = {p.resolve().parent for p in notebooks}
    if len(folders) != 1:
        raise ValueError(f"the notebooks must share one directory, got {sorted(folders)}")
    source_dir = folders.pop()
    os.environ[STATIC_BUILD_ENV] = "1"      # the kernels build static pages, as in the book build
    with tempfile.TemporaryDirectory(prefix="gradpath-executed-") as tmp:
        work = Path(tmp) / source_dir.name
        shutil.copytree(source_dir, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        targets = [str(work / p.name) for p in notebooks]
        code = int(pytest.main(["--nbmake", "--overwrite", "-p", "no:cacheprovider",
                                *(pytest_args or []), *targets]))
        if code != 0:
            return code
        executed = Path(tmp) / "executed"
        executed.mkdir()
        for p in notebooks:
            shutil.copyfile(work / p.name, executed / p.name)
        stored = cache_executed(executed, source_dir, cache_dir)
    print(f"stored the outputs of {len(stored)} notebooks in {cache_dir}: the book build will "
          "not execute them again")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--pytest-args", default="",
                        help="extra arguments for pytest, e.g. '-x --durations=0'")
    args = parser.parse_args(argv)
    missing = [p for p in args.notebooks if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    return execute_and_cache(args.notebooks, args.cache, args.pytest_args.split())


if __name__ == "__main__":
    raise SystemExit(main())
