"""One execution per test run: the book is built from the notebooks nbmake has just executed.

``make test`` (through ``make notebooks``) runs
``python -m gradpath.book.executed chapters/*.ipynb``:

1. it copies the chapters (with their quizzes) into a temporary directory and runs nbmake, the
   notebook validator, on the copies with ``--overwrite``, so each chapter is executed exactly
   once and the copy keeps its outputs (``chapters/`` stays without outputs). The kernels run
   with ``GRADPATH_STATIC_BUILD=1``, as in the book build, so the outputs are the static page's.
   One pytest process per CPU core shares the chapters out (each kernel uses one thread);
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
import subprocess
import sys
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


def execution_seconds(executed: Path) -> float | None:
    """Wall-clock seconds from the first cell's start to the last cell's reply, as nbclient
    recorded them in the executed copy's cell metadata (``None`` if it recorded no timing).

    The book's compute badges read this from the cache, as they read MyST-NB's own timing when
    the build executes a notebook itself.
    """
    from datetime import datetime

    import nbformat

    starts, ends = [], []
    for cell in nbformat.read(executed, as_version=4).cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start = timing.get("iopub.status.busy") or timing.get("iopub.execute_input")
        end = timing.get("shell.execute_reply") or timing.get("iopub.status.idle")
        if start and end:
            starts.append(datetime.fromisoformat(start.replace("Z", "+00:00")))
            ends.append(datetime.fromisoformat(end.replace("Z", "+00:00")))
    if not starts:
        return None
    return (max(ends) - min(starts)).total_seconds()


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
        seconds = execution_seconds(path)
        data = {} if seconds is None else {"execution_seconds": seconds}
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(source.resolve()),  # type: ignore[arg-type]
                                                  data=data),
                                    check_validity=False, overwrite=True)
        stored.append(path.name)
    return stored


def _run_nbmake(targets: list[str], pytest_args: list[str], workers: int) -> int:
    """nbmake over ``targets`` in ``workers`` pytest processes at once; the worst exit code.

    Each notebook's kernel uses one CPU thread (``GRADPATH_CPU_THREADS`` defaults to 1), so on a
    machine with several cores the notebooks run side by side. Largest notebooks are dealt out
    first, so the groups take about equally long; each group's report is printed as it ends.
    """
    order = sorted(targets, key=lambda t: Path(t).stat().st_size, reverse=True)
    groups = [order[i::workers] for i in range(workers) if order[i::workers]]
    command = [sys.executable, "-m", "pytest", "--nbmake", "--overwrite", "-p", "no:cacheprovider",
               *pytest_args]
    if len(groups) == 1:
        return subprocess.run([*command, *groups[0]]).returncode
    running = [subprocess.Popen([*command, *group], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for group in groups]
    code = 0
    for process in running:
        out, _ = process.communicate()
        print(out, end="", flush=True)
        code = max(code, process.returncode)
    return code


def execute_and_cache(notebooks: list[Path], cache_dir: Path = DEFAULT_CACHE,
                      pytest_args: list[str] | None = None, workers: int = 1) -> int:
    """Run nbmake once on copies of ``notebooks``; if all pass, cache their outputs for the book.

    The notebooks must share one directory (their sibling files, e.g. ``quizzes/``, are copied
    with them). ``workers`` pytest processes share the notebooks between them. Returns the exit
    code (0: every notebook ran without an error).
    """
    if not notebooks:
        raise ValueError("no notebooks given")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    folders = {p.resolve().parent for p in notebooks}
    if len(folders) != 1:
        raise ValueError(f"the notebooks must share one directory, got {sorted(folders)}")
    source_dir = folders.pop()
    os.environ[STATIC_BUILD_ENV] = "1"      # the kernels build static pages, as in the book build
    with tempfile.TemporaryDirectory(prefix="gradpath-executed-") as tmp:
        work = Path(tmp) / source_dir.name
        shutil.copytree(source_dir, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        code = _run_nbmake([str(work / p.name) for p in notebooks], pytest_args or [], workers)
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
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="pytest processes running notebooks side by side (default: one "
                             "per CPU core)")
    args = parser.parse_args(argv)
    missing = [p for p in args.notebooks if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    return execute_and_cache(args.notebooks, args.cache, args.pytest_args.split(),
                             max(1, min(args.workers, len(args.notebooks))))


if __name__ == "__main__":
    raise SystemExit(main())
