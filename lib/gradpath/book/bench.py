"""Benchmark: what recording costs, and each chapter notebook's time, peak memory and device.

Run ``python -m gradpath.book.bench chapters/*.ipynb`` (or ``make bench``). It prints two tables:

1. The recording overhead of :func:`gradpath.training.train`: the time of ``train()`` divided by
   the time of a bare PyTorch loop (same model, same minibatches, same optimizer, no
   measurements) for a 10-layer MLP of width 256 and of width 64, batch 64, on the CPU with one
   thread (and on CUDA when there is a GPU). Targets: at most 1.10x (width 256) and 1.20x
   (width 64).
2. Each notebook executed once, in a fresh process with its own kernel, so the peak memory of one
   does not leak into the next.

This is a measurement, not a test: it fails only if a notebook fails.
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
from typing import Any

BUDGET_SECONDS = 30.0
OVERHEAD_TARGETS = {256: 1.10, 64: 1.20}   # width -> largest acceptable train()/bare ratio


def _bare_loop(model: Any, data: Any, steps: int, batch_size: int, lr: float, seed: int) -> None:
    """What train() does minus the recording: the same batches, optimizer and loss."""
    import torch

    from gradpath.training import loss_function, make_optimizer

    model.train()
    opt = make_optimizer("sgd", list(model.parameters()), lr)
    criterion = loss_function(data)
    generator = torch.Generator().manual_seed(seed)
    n = len(data)
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=generator).to(data.x.device)
        x, y = data.x[idx], data.y[idx]
        opt.zero_grad(set_to_none=True)
        criterion(model(x), y).backward()
        opt.step()
    if data.x.device.type == "cuda":
        torch.cuda.synchronize()


def recording_overhead(width: int, *, depth: int = 10, batch_size: int = 64, steps: int = 30,
                       repeats: int = 41, device: str = "cpu") -> dict[str, float]:
    """Per-step seconds of ``train()`` and of a bare loop, and the ratio of the two.

    Both loops start from the same weights and draw the same minibatches. Each repeat times the
    two back to back (alternating which goes first), so a busy machine slows both alike; the
    ratio reported is the median over repeats of each pair's ratio, and the times are each
    loop's median. On the CPU the time is the process's CPU time (one thread), which a shared
    machine disturbs less than the wall clock; on CUDA it is the wall clock after a sync.
    """
    import copy
    import statistics

    import torch

    from gradpath.data import Dataset
    from gradpath.models import DeepMLP
    from gradpath.training import train

    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(4096, width, generator=g),
                   torch.randint(0, 10, (4096,), generator=g), "classification",
                   classes=10).to(device)
    start = DeepMLP(width, 10, width=width, depth=depth, init="he_normal",
                    generator=torch.Generator().manual_seed(0)).to(device)
    clock = time.process_time if device == "cpu" else time.perf_counter
    lr = 1e-3

    def timed(name: str) -> float:
        model = copy.deepcopy(start)
        began = clock()
        if name == "bare":
            _bare_loop(model, data, steps, batch_size, lr, seed=0)
        else:
            train(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=0)
            if device == "cuda":
                torch.cuda.synchronize()
        return (clock() - began) / steps

    timed("bare"), timed("train")                      # warm up both
    bare, trained, ratios = [], [], []
    for i in range(repeats):
        order = ("bare", "train") if i % 2 == 0 else ("train", "bare")
        t = {name: timed(name) for name in order}
        bare.append(t["bare"])
        trained.append(t["train"])
        ratios.append(t["train"] / t["bare"])
    return {"width": width, "bare_s": statistics.median(bare),
            "train_s": statistics.median(trained), "ratio": statistics.median(ratios)}


def print_overhead(devices: list[str] | None = None) -> list[dict[str, object]]:
    """Measure :func:`recording_overhead` for both widths and print a table."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    devices = devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    print("Recording overhead: train() / bare loop, 10-layer MLP, batch 64 "
          "(CPU: one thread, process CPU time)")
    print("| device | width | bare ms/step | train() ms/step | ratio | target |")
    print("|--------|------:|-------------:|----------------:|------:|-------:|")
    try:
        for device in devices:
            for width, target in OVERHEAD_TARGETS.items():
                row = recording_overhead(width, device=device)
                rows.append({**row, "device": device})
                flag = "" if row["ratio"] <= target else " (over target)"
                print(f"| {device} | {width} | {row['bare_s'] * 1e3:.3f} | "
                      f"{row['train_s'] * 1e3:.3f} | {row['ratio']:.3f}x | "
                      f"<= {target:.2f}x{flag} |")
    finally:
        torch.set_num_threads(threads)
    print()
    return rows


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
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-overhead", action="store_true",
                        help="skip the recording-overhead measurement")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.notebooks[0])))
        return 0
    missing = [p for p in args.notebooks if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    if not args.no_overhead:
        print_overhead()
    if not args.notebooks:
        return 0
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
