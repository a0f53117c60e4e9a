"""Benchmark: execute each chapter notebook once and report time, peak memory and device.

Run ``python -m gradpath.book.bench chapters/*.ipynb`` (or ``make bench``). Each notebook runs in a
fresh process, with its own kernel, so the peak memory of one does not leak into the next. This
is a measurement, not a test: it prints a table and fails only if a notebook fails.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

BUDGET_SECONDS = 30.0


def run_one(path: Path) -> dict[str, object]:
    """Execute one notebook with nbclient in this process's kernel child; return measurements."""
    import nbformat
    from nbclient import NotebookClient

    from gradpath.device import pick_device

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    # ru_maxrss of waited-for children (the kernel) is in KiB on Linux.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"notebook": path.name, "seconds": seconds, "peak_mib": peak_mib,
            "device": str(pick_device())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.notebooks[0])))
        return 0
    missing = [p for p in args.notebooks if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    env = {**os.environ, "GRADPATH_PROGRESS": "0"}
    rows = []
    for path in args.notebooks:
        done = subprocess.run([sys.executable, "-m", "gradpath.book.bench", "--one", str(path)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            print(f"FAILED: {path}", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    width = max(len(str(r["notebook"])) for r in rows)
    print(f"| {'notebook':<{width}} | seconds | peak MiB | device |")
    print(f"|{'-' * (width + 2)}|--------:|---------:|--------|")
    for r in rows:
        flag = "" if float(r["seconds"]) <= BUDGET_SECONDS else " (over budget)"  # type: ignore[arg-type]
        print(f"| {r['notebook']:<{width}} | {r['seconds']:7.1f} | {r['peak_mib']:8.0f} | "
              f"{r['device']}{flag} |")
    total = sum(float(r["seconds"]) for r in rows)  # type: ignore[arg-type]
    print(f"\ntotal {total:.1f} s over {len(rows)} notebooks (budget {BUDGET_SECONDS:.0f} s each)"
          f" on {os.cpu_count()} CPU cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
