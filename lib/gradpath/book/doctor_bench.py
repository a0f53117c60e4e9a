"""What the gradient doctor costs: its training loop against the same loop without it.

Run ``python -m gradpath.book.doctor_bench``. For each model (a 10-layer width-256 ReLU MLP and a
small pre-LN transformer) two identical copies train on the same batches, one plain and one with
:class:`gradpath.doctor.Doctor` attached with its default settings; blocks of steps alternate
between the two (so a busy machine slows both alike), and the overhead is the median over rounds
of the ratio of their block times. CPU, one thread, unless ``device`` says otherwise; on the CPU
with one thread the clock is the thread's CPU time, so other jobs on a shared machine do not
inflate either loop. This is a measurement, not a test; the course's bar is a ratio of at most
1.10.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from gradpath.doctor import Doctor

BAR = 1.10
Step = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Overhead:
    """One model's measurement.

    Attributes:
        model: a short description.
        bare_ms: median milliseconds per step without the doctor.
        doctor_ms: median milliseconds per step with it.
        ratio: median over rounds of (doctor block time / bare block time).
        rounds: alternating rounds measured; steps: steps per block.
    """

    model: str
    bare_ms: float
    doctor_ms: float
    ratio: float
    rounds: int
    steps: int


def mlp(depth: int = 10, width: int = 256, inputs: int = 64, classes: int = 10) -> nn.Module:
    """``depth`` Linear layers of width ``width`` with ReLU between them (He initialization)."""
    layers: list[nn.Module] = []
    fan_in = inputs
    for _ in range(depth - 1):
        linear = nn.Linear(fan_in, width)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, classes))
    return nn.Sequential(*layers)


class TinyTransformer(nn.Module):
    """A small causal pre-LN transformer language model (token and position embeddings, encoder
    layers with ``norm_first=True``, a final LayerNorm and a linear head)."""

    def __init__(self, vocab: int = 64, width: int = 64, layers: int = 2, heads: int = 4,
                 context: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        h = self.embed(tokens) + self.position(torch.arange(length, device=tokens.device))
        mask = cast(torch.Tensor, self.mask)[:length, :length]
        return self.head(self.norm(self.encoder(h, mask=mask, is_causal=True)))


def _training_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                   batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
                   doctor: Doctor | None) -> Callable[[int], None]:
    def step(t: int) -> None:
        x, y = batch(t)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        loss.backward()
        if doctor is not None:
            doctor.step(loss)
        optimizer.step()
    return step


def measure(name: str, factory: Callable[[], nn.Module],
            batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]], *, lr: float = 1e-3,
            rounds: int = 25, steps: int = 20, warmup: int = 10) -> Overhead:
    """Median ratio of (loop with the doctor) to (loop without), alternating blocks of steps.

    Both copies start from the same weights and see the same batches; the doctor copy has a
    :class:`Doctor` with default settings and the optimizer attached.
    """
    torch.manual_seed(0)
    bare = factory()
    watched = copy.deepcopy(bare)
    bare_opt = torch.optim.AdamW(bare.parameters(), lr=lr)
    watched_opt = torch.optim.AdamW(watched.parameters(), lr=lr)
    doctor = Doctor(watched, watched_opt)
    run_bare = _training_step(bare, bare_opt, batch, None)
    run_watched = _training_step(watched, watched_opt, batch, doctor)
    for t in range(warmup):
        run_bare(t)
        run_watched(t)

    device = next(bare.parameters()).device

    def clock() -> float:
        # On the CPU, this thread's CPU time: other jobs on a shared machine then slow neither
        # loop (PyTorch runs on this thread when it has one). On a GPU, wall time after a sync.
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()

    def block(run: Callable[[int], None], start: int) -> float:
        begin = clock()
        for t in range(start, start + steps):
            run(t)
        return clock() - begin

    bare_times, watched_times, ratios = [], [], []
    for r in range(rounds):
        start = warmup + r * steps
        # Alternate which goes first, so neither always follows the other.
        if r % 2 == 0:
            b = block(run_bare, start)
            w = block(run_watched, start)
        else:
            w = block(run_watched, start)
            b = block(run_bare, start)
        bare_times.append(b)
        watched_times.append(w)
        ratios.append(w / b)
    doctor.report()  # the report is part of using the doctor; it must work on what was recorded
    doctor.detach()
    return Overhead(name, 1e3 * statistics.median(bare_times) / steps,
                    1e3 * statistics.median(watched_times) / steps, statistics.median(ratios),
                    rounds, steps)


def doctor_overhead(device: str = "cpu", threads: int = 1, rounds: int = 25,
                    steps: int = 20) -> list[Overhead]:
    """The doctor's overhead on the two reference models (see the module docstring)."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(8, 64, 64, generator=g).to(dev)
    ys = torch.randint(0, 10, (8, 64), generator=g).to(dev)
    tokens = torch.randint(0, 64, (8, 16, 33), generator=g).to(dev)

    def mlp_batch(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return xs[t % 8], ys[t % 8]

    def lm_batch(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = tokens[t % 8]
        return seq[:, :-1], seq[:, 1:]

    return [
        measure("MLP, 10 layers of width 256, batch 64", lambda: mlp().to(dev), mlp_batch,
                rounds=rounds, steps=steps),
        measure("transformer, 2 pre-LN layers, width 64, 16×32 tokens",
                lambda: TinyTransformer().to(dev), lm_batch, rounds=rounds, steps=steps),
    ]


def format_table(rows: list[Overhead]) -> str:
    """A Markdown table of the measurements."""
    lines = ["| model | bare ms/step | with doctor ms/step | ratio |",
             "|-------|-------------:|--------------------:|------:|"]
    for r in rows:
        flag = "" if r.ratio <= BAR else f" (over {BAR:.2f})"
        lines.append(f"| {r.model} | {r.bare_ms:.2f} | {r.doctor_ms:.2f} | {r.ratio:.3f}{flag} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    rows = doctor_overhead(args.device, args.threads, args.rounds, args.steps)
    print(f"Gradient doctor overhead ({args.device}, {torch.get_num_threads()} thread(s); "
          f"median of {args.rounds} alternating rounds of {args.steps} steps):")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
