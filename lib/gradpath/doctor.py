"""The gradient doctor: watch any PyTorch model train and say what is wrong, where, and what to do.

Five lines in a plain training loop::

    from gradpath.doctor import Doctor

    doctor = Doctor(model, optimizer)           # attach once (hooks; the model is not changed)
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        doctor.step(loss)                       # after backward, before clipping and step()
        optimizer.step()
    print(doctor.report())                      # findings: kind, where, evidence, fix, chapter

or, for a verdict before training, :func:`checkup` (a short probe run on a copy of the model).

What is recorded
----------------
Every step, on the device and with one host transfer per step (``sync_every=1``) or per
``sync_every`` steps: the loss, the L2 norm of every parameter's gradient (combined on the host
into one norm per *weight layer* and the global norm), and, with a ``GradScaler``, its scale.
Every ``sample_every`` steps (and at step 0): each weight layer's output RMS, the dead fraction of
ReLU units and the saturated fraction of sigmoid/tanh units (and of ``nn.RNN``'s hidden states),
and, when the optimizer is given, the update-to-data ratio ``‖ΔW‖/‖W‖`` of every weight layer
(the *actual* change made by ``optimizer.step()``, so it is right for Adam as for SGD) and the
global norm the optimizer saw (less than the doctor's when clipping was applied).

A *weight layer* is a module that directly owns a trainable parameter with two or more
dimensions (``Linear``, ``Conv*``, ``Embedding``, ``RNN``/``LSTM``/``GRU``,
``MultiheadAttention`` through its ``in_proj_weight``...); its gradient norm, weight norm and
update ratio are those of those matrices together. Layers are ordered as the forward pass first
calls them (the input side first). Biases and normalization gains count in the global norm and
the non-finite checks, not in the per-layer rules.

Norms are float64-accurate for finite inputs: a float32 norm is trusted only where it cannot have
overflowed or lost precision to underflow (:func:`gradpath.numerics.trusted_norms`); any other is
recomputed in float64 from the tensor before ``optimizer.step()``. A gradient is non-finite when
one of its entries is: for float16/bfloat16/float32 tensors the float64 sum of squares of finite
entries cannot overflow, so a non-finite float64 norm means a non-finite entry; float64 gradients
are checked with :func:`torch.isfinite` directly.

Cost: per step, one fused pass over the gradients (``torch._foreach_norm``) and one transfer to
the host; on a sampled step, hooks on every layer and a copy of the weight matrices before
``optimizer.step()`` (the copy is kept between samples: memory equal to the weights), which is
why sampling defaults to every 50 steps. ``python -m gradpath.book.doctor_bench`` measures the
overhead against the same loop without the doctor.

Non-finite localisation: at the first step whose loss or gradient is non-finite, the doctor
re-runs that step's forward (same weights, inputs and random state) with a finiteness check on
every module's output, then its backward from the same output gradient with a check on every
gradient as it is produced, and names the first module whose forward output or backward gradient
is inf/nan. It costs nothing on finite steps (``torch.autograd.detect_anomaly`` slows every step
two- to fifty-fold). Buffers (BatchNorm statistics), ``.grad`` fields and the random state are
restored afterwards. To make the re-run possible the doctor keeps, until :meth:`Doctor.step`,
references to the step's inputs and to ``∂L/∂output`` (``localise=False`` turns this off; the
culprit is then located from the gradient norms alone).

The rules
---------
Each rule produces at most one :class:`Finding`; ``where`` is the layer where the symptom is
most extreme. Ratios are used wherever possible, so that a summed loss (every gradient ``N×``
larger), a model's size or its input scale does not change a verdict; a ratio rule must hold on
at least a quarter of the steps (or samples), so one spike does not fire it and a network that
has stalled everywhere after a bad start still does.

============  ==================================================  ===========  =================
kind          fires when                                          threshold    source
============  ==================================================  ===========  =================
nonfinite     the loss or a gradient entry is inf/nan             any          course, ch. 3
              (``torch.isfinite`` on the tensors; with a
              GradScaler, the loss only)
vanishing     ``‖∂L/∂W‖`` of the input-side weight layer over     ``< 1e-3``   course rule
              that of the output-side one; or output RMS of the   on ≥ 25%     (``gradpath.
              last weight layer over the first's                  of steps     diagnosis``),
                                                                               ch. 2 and 6
exploding     the same ratios; or the global gradient norm's      ``> 1e3``    course rule,
              growth over the run; or, in a ReLU ``nn.RNN``,                   ch. 3 and 6;
              the hidden state's RMS at the last time step over                Pascanu et al.
              the first                                                        (2013)
dead_units    share of a ReLU module's units that output 0 for    ``> 50%``    course, ch. 5
              every example of the batch (last sample)
saturation    share of a sigmoid/tanh module's outputs where      ``> 50%``    course, ch. 2,
              ``f'(z)`` is below 1% of its maximum (median of                  5, 6
              samples)
update_ratio  ``‖ΔW‖/‖W‖`` per step (median of samples) outside   ``1e-5``,    CS231n notes
              the band in more than half of the weight layers;    ``1e-1``     ("want ~1e-3"),
              ``1e-3`` is a rule of thumb, not a target                        Karpathy's
                                                                               makemore part 3
clipping      share of sampled steps clipped; the threshold is    ``> 50%``,   Deep Learning
              best near the 90th percentile of unclipped norms    90th pct.    Tuning Playbook
loss_scale    float16 in use and a weight layer's share of        ``> 50%``    Micikevicius et
              exactly-zero gradient entries, without a                         al. (2018);
              GradScaler or with its scale at or below 1; or a                 PyTorch AMP
              GradScaler skipping more than half the steps                     docs
============  ==================================================  ===========  =================

The thresholds are module constants (``VANISHING_RATIO``, ``SUSTAINED``, ``DEAD_LIMIT``,
``SATURATION_LIMIT``, ``UPDATE_RATIO_LOW``/``HIGH``, ``CLIPPED_LIMIT``, ``ZERO_GRADIENT_LIMIT``,
``SKIPPED_LIMIT``). Dead and saturated fractions need the activation as a module (``nn.ReLU``,
``nn.Sigmoid``, ``nn.Tanh``): an activation called as a function is invisible to hooks, so for a
model without such modules dead units are looked for in the inputs of the weight layers instead.
A parameter shared by two modules (tied embeddings) belongs to the first that registers it.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import math
import textwrap
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gradpath.diagnosis import RATIO_LIMIT
from gradpath.numerics import accurate_norm, trusted_norms

KINDS = ("vanishing", "exploding", "nonfinite", "dead_units", "saturation", "update_ratio",
         "loss_scale", "clipping")

VANISHING_RATIO = 1.0 / RATIO_LIMIT
EXPLODING_RATIO = RATIO_LIMIT
GROWTH_LIMIT = RATIO_LIMIT
SUSTAINED = 0.25
DEAD_LIMIT = 0.5
SATURATION_LIMIT = 0.5
SATURATION_DERIVATIVE = 0.01
UPDATE_RATIO_LOW = 1e-5
UPDATE_RATIO_TYPICAL = 1e-3
UPDATE_RATIO_HIGH = 1e-1
CLIPPED_LIMIT = 0.5
CLIP_PERCENTILE = 90
ZERO_GRADIENT_LIMIT = 0.5
SKIPPED_LIMIT = 0.5

_MAX_CAPTURED_CALLS = 16

CHAPTERS: dict[str, str] = {
    "vanishing": "Gradient Flow, chapter 2: Vanishing gradients (chapters/02-vanishing-gradients)",
    "exploding": "Gradient Flow, chapter 3: Exploding gradients (chapters/03-exploding-gradients)",
    "nonfinite": "Gradient Flow, chapter 3: Exploding gradients (chapters/03-exploding-gradients)",
    "dead_units": "Gradient Flow, chapter 5: Activation functions "
                  "(chapters/05-activation-functions)",
    "saturation": "Gradient Flow, chapter 5: Activation functions "
                  "(chapters/05-activation-functions)",
    "update_ratio": "Gradient Flow, chapter 12: Capstone, section 5, the update-to-data ratio "
                    "(chapters/12-capstone)",
    "clipping": "Gradient Flow, chapter 4: Gradient clipping (chapters/04-gradient-clipping)",
    "loss_scale": "Gradient Flow, chapter 11: Mixed precision and loss scaling "
                  "(chapters/11-mixed-precision)",
}
"""The course page that explains each kind: the one that teaches its fix (chapter 12 reads the
update-to-data ratio as the doctor does and raises a learning rate on its advice; chapter 11
teaches loss scaling with a GradScaler)."""

_RELU_LIKE = (nn.ReLU, nn.ReLU6)
_SATURATING = (nn.Sigmoid, nn.Tanh)


# ----------------------------------------------------------------------------------------------
# Findings and the report
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One thing the doctor found.

    Attributes:
        kind: one of :data:`KINDS`.
        where: qualified name of the module (as in ``model.named_modules()``); ``""`` is the whole
            model, ``"loss"`` the loss function, ``"input"`` the batch itself.
        evidence: the numbers and the threshold that fired, in words.
        fix: what to change, in a sentence.
        chapter: the course page that explains it.
        step: the step it refers to, when it is one step (non-finite values); else ``None``.
    """

    kind: str
    where: str
    evidence: str
    fix: str
    chapter: str
    step: int | None = None

    def __str__(self) -> str:
        place = _display(self.where) if self.where else "the whole model"
        at = f" at step {self.step}" if self.step is not None else ""
        lines = [f"[{self.kind}] at {place}{at}"]
        for label, text in (("evidence", self.evidence), ("fix", self.fix),
                            ("learn why", self.chapter)):
            lines.append(textwrap.fill(text, width=100, initial_indent=f"  {label + ':':<11}",
                                       subsequent_indent=" " * 13, break_on_hyphens=False))
        return "\n".join(lines)


@dataclass
class Report:
    """What the doctor measured and concluded.

    Arrays are float64; ``nan`` marks "not measured" (a layer without a gradient at that step, a
    step without a sample) and ``inf`` a gradient norm whose tensor held an inf/nan entry.

    Attributes:
        model: the model's class name.
        layers: weight-layer names, in forward order (input side first).
        layer_types: their classes' names.
        layer_sizes: parameters in each layer's matrices.
        loss: shape (steps,), the loss passed to :meth:`Doctor.step` at each step.
        global_norm: shape (steps,), ``‖∂L/∂θ‖`` over every parameter with a gradient, before
            clipping and unscaled.
        gradient_norms: shape (steps, layers), each weight layer's gradient norm.
        sample_steps: the steps at which activations and updates were sampled.
        activation_rms: shape (samples, layers), RMS of each weight layer's output.
        update_ratio: shape (samples, layers), ``‖ΔW‖/‖W‖`` made by ``optimizer.step()``.
        optimizer_norm: shape (samples,), the global norm the optimizer saw (after clipping).
        dead: module name -> dead fraction at each sample (ReLU modules).
        saturated: module name -> saturated fraction at each sample (sigmoid/tanh modules).
        zero_fraction: shape (samples, layers): share of exactly-zero gradient entries (measured
            only when float16 is in use; else all ``nan``).
        time_growth: recurrent module name -> at each sample, the RMS of its output at the last
            time step over that at the first (``nn.RNN`` with ReLU: the one whose state is not
            bounded).
        loss_scale: shape (steps,), the ``GradScaler`` scale (``nan`` without one).
        skipped_steps: steps whose update the ``GradScaler`` skipped (its scale backed off).
        first_nonfinite_loss_step: first step with a non-finite loss, or ``None``.
        first_nonfinite_gradient_step: first step with a non-finite gradient entry, or ``None``.
        findings: what fired.
        notes: what could not be measured, and why.
    """

    model: str
    layers: list[str]
    layer_types: list[str]
    layer_sizes: list[int]
    loss: np.ndarray
    global_norm: np.ndarray
    gradient_norms: np.ndarray
    sample_steps: list[int]
    activation_rms: np.ndarray
    update_ratio: np.ndarray
    optimizer_norm: np.ndarray
    dead: dict[str, list[float]]
    saturated: dict[str, list[float]]
    zero_fraction: np.ndarray
    time_growth: dict[str, list[float]]
    loss_scale: np.ndarray
    skipped_steps: list[int]
    first_nonfinite_loss_step: int | None
    first_nonfinite_gradient_step: int | None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def healthy(self) -> bool:
        """True when no rule fired."""
        return not self.findings

    def kinds(self) -> set[str]:
        """The kinds of the findings."""
        return {f.kind for f in self.findings}

    def by_kind(self, kind: str) -> list[Finding]:
        """The findings of one kind (empty when it did not fire)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return [f for f in self.findings if f.kind == kind]

    # -- text -------------------------------------------------------------------------------------
    def layer_table(self) -> list[dict[str, object]]:
        """Per weight layer: median gradient norm, update ratio and output RMS over the run."""
        finite = _finite_steps(self)
        rows = []
        for j, name in enumerate(self.layers):
            rows.append({
                "layer": name or "(model)", "type": self.layer_types[j],
                "params": self.layer_sizes[j],
                "grad_norm": _nanmedian(self.gradient_norms[finite, j]),
                "update_ratio": _nanmedian(self.update_ratio[:, j]),
                "output_rms": _nanmedian(self.activation_rms[:, j]),
            })
        return rows

    def __str__(self) -> str:
        verdict = ("healthy: no rule fired" if self.healthy
                   else f"{len(self.findings)} finding{'s' * (len(self.findings) != 1)}")
        lines = [f"Gradient doctor: {self.model}, {self.steps} steps, {len(self.layers)} weight "
                 f"layers, {sum(self.layer_sizes):,} weights in them; {verdict}"]
        for finding in self.findings:
            lines.append(str(finding))
        rows = self.layer_table()
        width = max([5] + [len(r["layer"]) for r in rows])  # type: ignore[arg-type]
        lines.append("")
        lines.append(f"  {'layer':<{width}}  {'type':<18} {'grad norm':>9}  {'update/W':>8}  "
                     f"{'out RMS':>8}   (medians over the run)")
        for r in rows:
            lines.append(f"  {r['layer']:<{width}}  {str(r['type'])[:18]:<18} "
                         f"{_fmt(r['grad_norm']):>9}  {_fmt(r['update_ratio']):>8}  "
                         f"{_fmt(r['output_rms']):>8}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{f.kind}@{f.where or 'model'}" for f in self.findings) or "healthy"
        return f"<Report {self.model}: {self.steps} steps; {kinds}>"

    # -- figure -----------------------------------------------------------------------------------
    def figure(self) -> Figure:
        """One compact figure: gradient norms (layers × steps) and the update ratio with its band.

        Left: ``log10 ‖∂L/∂W‖`` of every weight layer (rows, input side on top) at every step
        (columns); non-finite steps are marked with a red line. Right: ``‖ΔW‖/‖W‖`` per layer at
        the sampled steps, on a log scale, over the ``1e-5``–``1e-1`` band with ``1e-3`` dashed.
        """
        fig = Figure(figsize=(10.0, 3.4), facecolor="white")
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1.0]})
        left.grid(False)                  # no grid over the heat map, whatever the style says
        norms = self.gradient_norms.T.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(np.isfinite(norms) & (norms > 0), np.log10(norms), np.nan)
        n = len(self.layers)
        shown = logs[np.isfinite(logs)]
        if n and shown.size:
            low, high = float(shown.min()), float(shown.max())
            if high - low < 1e-9:
                low, high = low - 0.5, high + 0.5
            image = left.imshow(np.ma.masked_invalid(logs), aspect="auto", cmap="viridis",
                                interpolation="nearest", origin="upper", vmin=low, vmax=high)
            fig.colorbar(image, ax=left, label="log10 ‖∂L/∂W‖", fraction=0.05, pad=0.02)
            ticks = list(range(n)) if n <= 12 else list(np.linspace(0, n - 1, 12).astype(int))
            left.set_yticks(ticks, [self.layers[i] or "(model)" for i in ticks], fontsize=7)
        else:
            left.text(0.5, 0.5, "no finite gradient norm of a weight matrix", ha="center",
                      va="center", transform=left.transAxes, color="0.4")
        left.set_xlabel("step")
        left.set_title("gradient norm per layer", fontsize=10)
        for step in {self.first_nonfinite_loss_step, self.first_nonfinite_gradient_step}:
            if step is not None:
                left.axvline(step, color="#D00000", lw=1.2)
        right.axhspan(UPDATE_RATIO_LOW, UPDATE_RATIO_HIGH, color="#009E73", alpha=0.10, lw=0,
                      label=f"{UPDATE_RATIO_LOW:g} to {UPDATE_RATIO_HIGH:g}: not flagged")
        right.axhline(UPDATE_RATIO_TYPICAL, color="#009E73", ls="--", lw=1,
                      label=f"{UPDATE_RATIO_TYPICAL:g}: typical")
        ratio = self.update_ratio
        drawn = False
        if ratio.size and np.isfinite(ratio).any():
            colours = _depth_colours(n)
            for j in range(n):
                ys = ratio[:, j]
                keep = np.isfinite(ys) & (ys > 0)
                if keep.any():
                    right.plot(np.asarray(self.sample_steps)[keep], ys[keep], color=colours[j],
                               lw=1.2, marker="." if keep.sum() < 4 else None)
                    drawn = True
        if drawn:
            right.set_yscale("log")
        else:
            right.set_yscale("log")
            right.set_ylim(1e-7, 1)
            right.text(0.5, 0.5, "not measured\n(pass the optimizer)", ha="center",
                       va="center", transform=right.transAxes, color="0.4")
        right.legend(loc="upper right", fontsize=7, handlelength=1.5)
        right.set_xlabel("step")
        right.set_title("update ratio ‖ΔW‖/‖W‖ (input side dark)", fontsize=10)
        right.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    # -- html -------------------------------------------------------------------------------------
    def to_html(self) -> str:
        """A self-contained HTML page: the findings, the per-layer table and the figure (PNG)."""
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=110)
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        e = html.escape
        verdict = ("Healthy: no rule fired." if self.healthy
                   else f"{len(self.findings)} finding(s).")
        parts = [
            "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
            f"<title>Gradient doctor: {e(self.model)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;}"
            "table{border-collapse:collapse;font-size:0.9rem;}td,th{border:1px solid #ccc;"
            "padding:0.25rem 0.5rem;text-align:left;vertical-align:top;}"
            ".kind{font-weight:bold;color:#D55E00;}img{max-width:100%;}</style></head><body>",
            f"<h2>Gradient doctor: {e(self.model)}</h2>",
            f"<p>{self.steps} steps, {len(self.layers)} weight layers. <b>{e(verdict)}</b></p>",
        ]
        if self.findings:
            parts.append("<table><tr><th>kind</th><th>where</th><th>evidence</th><th>fix</th>"
                         "<th>learn why</th></tr>")
            for f in self.findings:
                at = f" (step {f.step})" if f.step is not None else ""
                parts.append(f"<tr><td class='kind'>{e(f.kind)}</td>"
                             f"<td><code>{e(f.where or '(whole model)')}</code>{at}</td>"
                             f"<td>{e(f.evidence)}</td><td>{e(f.fix)}</td>"
                             f"<td>{e(f.chapter)}</td></tr>")
            parts.append("</table>")
        parts.append(f"<p><img alt='gradient norms and update ratios' "
                     f"src='data:image/png;base64,{png}'></p>")
        parts.append("<table><tr><th>layer</th><th>type</th><th>params</th>"
                     "<th>grad norm</th><th>update ratio</th><th>output RMS</th></tr>")
        for r in self.layer_table():
            parts.append(f"<tr><td><code>{e(str(r['layer']))}</code></td><td>{e(str(r['type']))}"
                         f"</td><td>{r['params']:,}</td><td>{_fmt(r['grad_norm'])}</td>"
                         f"<td>{_fmt(r['update_ratio'])}</td><td>{_fmt(r['output_rms'])}</td>"
                         "</tr>")
        parts.append("</table><p><small>Medians over the run.</small></p>")
        for note in self.notes:
            parts.append(f"<p><small>Note: {e(note)}</small></p>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()


def _display(name: str) -> str:
    """A module's name as the report prints it: quoted, and "(model)" for the model itself."""
    return f"'{name}'" if name else "(model)"


def _fmt(value: object) -> str:
    if not isinstance(value, (float, int)) or isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "–"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"


def _depth_colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def _nanmedian(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def _finite_steps(report: Report) -> np.ndarray:
    """Boolean mask of steps with a finite loss and finite gradients."""
    ok = np.isfinite(report.loss) & np.isfinite(report.global_norm)
    return cast(np.ndarray, ok)


# ----------------------------------------------------------------------------------------------
# The rules
# ----------------------------------------------------------------------------------------------

def apply_rules(report: Report, *, localised: dict[str, Any] | None = None,
                fp16: bool = False, has_scaler: bool = False) -> list[Finding]:
    """Evaluate every rule of the module docstring's table on a report's measurements.

    Args:
        report: the measurements (its ``findings`` are ignored).
        localised: what the non-finite localisation found (``where``, ``what``, ``step``).
        fp16: whether float16 gradients or activations were seen.
        has_scaler: whether a ``GradScaler`` was attached.

    Returns:
        The findings, at most one per rule, in the order of :data:`KINDS`.
    """
    found: list[Finding] = []
    finite = _finite_steps(report)
    layers = report.layers
    shown = [_display(n) for n in layers]          # evidence names the model itself "(model)"

    def add(kind: str, where: str, evidence: str, fix: str, step: int | None = None) -> None:
        found.append(Finding(kind, where, evidence, fix, CHAPTERS[kind], step))

    # -- vanishing / exploding --------------------------------------------------------------------
    vanishing: list[tuple[str, str]] = []
    exploding: list[tuple[str, str]] = []
    grads = report.gradient_norms[finite] if report.gradient_norms.size else report.gradient_norms
    active = [j for j in range(len(layers)) if grads.size and np.isfinite(grads[:, j]).any()]
    if len(active) >= 2:
        first, last = active[0], active[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(grads[:, last] > 0, grads[:, first] / grads[:, last], np.nan)
        ratios = ratios[np.isfinite(ratios)]
        for low, bucket, word in ((True, vanishing, "below"), (False, exploding, "above")):
            limit = VANISHING_RATIO if low else EXPLODING_RATIO
            hits = ratios[ratios < limit] if low else ratios[ratios > limit]
            if ratios.size and hits.size >= SUSTAINED * ratios.size:
                bucket.append((layers[first], (
                    f"the gradient norm of {shown[first]} (input side) is {word} {limit:g}× "
                    f"that of {shown[last]} (output side) on {hits.size} of {ratios.size} "
                    f"steps (median there {np.median(hits):.2e}×, over the run "
                    f"{np.median(ratios):.2e}×); rule: {word} {limit:g} on at least "
                    f"{SUSTAINED:.0%} of the steps")))
    rms = report.activation_rms
    measured = [j for j in range(len(layers)) if rms.size and np.isfinite(rms[:, j]).any()]
    if len(measured) >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            growth_s = rms[:, measured[-1]] / rms[:, measured[0]]
        rows = np.flatnonzero(np.isfinite(growth_s) | np.isinf(growth_s))
        for low, bucket in ((True, vanishing), (False, exploding)):
            limit = VANISHING_RATIO if low else EXPLODING_RATIO
            hit = rows[growth_s[rows] < limit] if low else rows[growth_s[rows] > limit]
            if not rows.size or hit.size < SUSTAINED * rows.size:
                continue
            medians = [_nanmedian(rms[hit, j]) for j in measured]
            a, b = medians[0], medians[-1]
            growth = b / a if a > 0 else math.inf
            per_layer = growth ** (1 / (len(measured) - 1)) if math.isfinite(growth) else math.inf
            with np.errstate(divide="ignore", invalid="ignore"):
                gains = np.asarray(medians[1:]) / np.asarray(medians[:-1])
            if low:
                k = int(np.nanargmin(np.where(np.isnan(gains), np.inf, gains)))
            else:
                k = int(np.nanargmax(np.where(np.isnan(gains), -np.inf, gains)))
            where = layers[measured[k + 1]]
            bucket.append((where, (
                f"the forward signal {'fades' if low else 'grows'}: output RMS {b:.2e} at "
                f"{shown[measured[-1]]} vs {a:.2e} at {shown[measured[0]]} "
                f"(×{per_layer:.3g} per layer; the {'smallest' if low else 'largest'} gain, "
                f"×{gains[k]:.3g}, at {_display(where)}), on {hit.size} of {rows.size} "
                f"samples; rule: ratio {'below' if low else 'above'} {limit:g} on at least "
                f"{SUSTAINED:.0%} of them")))
    for module, values in report.time_growth.items():
        seen = np.asarray(values, dtype=float)
        seen = seen[~np.isnan(seen)]
        hits = seen[seen > EXPLODING_RATIO]
        if seen.size and hits.size >= SUSTAINED * seen.size:
            exploding.insert(0, (module, (
                f"the hidden state of {_display(module)} grows through time: its RMS at the "
                f"last step is {np.median(hits):.2e}× that at the first (on {hits.size} of "
                f"{seen.size} samples); in a recurrent net depth is sequence length; rule: above "
                f"{EXPLODING_RATIO:g} on at least {SUSTAINED:.0%} of the samples")))
    steps_ok = np.flatnonzero(finite & (report.global_norm > 0))
    if steps_ok.size >= 2:
        start, series = report.global_norm[steps_ok[0]], report.global_norm[steps_ok]
        peak = int(steps_ok[int(np.argmax(series))])
        growth = float(series.max() / start)
        if growth > GROWTH_LIMIT:
            with np.errstate(divide="ignore", invalid="ignore"):
                per = report.gradient_norms[peak] / report.gradient_norms[steps_ok[0]]
            where = layers[int(np.nanargmax(np.where(np.isfinite(per), per, -1)))] if (
                np.isfinite(per).any()) else ""
            exploding.append((where, (
                f"the global gradient norm grew {growth:.2e}× during the run, from "
                f"{start:.3g} at step {int(steps_ok[0])} to {series.max():.3g} at step {peak}; "
                f"rule: above {GROWTH_LIMIT:g}×")))
    if vanishing:
        add("vanishing", vanishing[0][0], "; ".join(e for _, e in vanishing),
            "use a non-saturating activation (ReLU family) with He initialization, add "
            "normalization or residual connections; in a recurrent net use an LSTM or GRU")
    if exploding:
        add("exploding", exploding[0][0], "; ".join(e for _, e in exploding),
            "scale the initialization to the fan-in (He for ReLU, Glorot for tanh), add "
            "normalization, lower the learning rate, or clip the gradient norm")

    # -- non-finite -------------------------------------------------------------------------------
    step_loss, step_grad = report.first_nonfinite_loss_step, report.first_nonfinite_gradient_step
    if has_scaler:
        # A GradScaler expects non-finite scaled gradients now and then (it skips those steps and
        # lowers its scale); only a non-finite loss is a finding (too many skips: loss_scale).
        step_grad = None
    if step_loss is not None or step_grad is not None:
        firsts = [s for s in (step_loss, step_grad) if s is not None]
        step = min(firsts)
        if step_loss == step_grad:
            opening = f"the loss and a gradient became non-finite at step {step}"
        elif step_loss == step:
            opening = (f"the loss became non-finite at step {step} (a gradient "
                     + (f"at step {step_grad})" if step_grad is not None else "never)"))
        else:
            opening = (f"a gradient became non-finite at step {step} (the loss "
                     + (f"at step {step_loss})" if step_loss is not None else "never)"))
        site = localised or {}
        where = str(site.get("where", ""))
        evidence = f"{opening}; {site.get('what', 'the module could not be located')}"
        add("nonfinite", where, evidence, _nonfinite_fix(str(site.get("phase", ""))), step)

    # -- dead units and saturation ----------------------------------------------------------------
    last_dead = {m: v[-1] for m, v in report.dead.items() if v and math.isfinite(v[-1])}
    dead = {m: v for m, v in last_dead.items() if v > DEAD_LIMIT}
    if dead:
        worst = max(dead, key=lambda m: dead[m])
        others = ", ".join(f"{_display(m)} {v:.0%}" for m, v in dead.items() if m != worst)
        add("dead_units", worst, (
            f"{dead[worst]:.0%} of the units of {_display(worst)} output 0 for every example "
            f"of the batch (step {report.sample_steps[-1]})"
            + (f"; also {others}" if others else "") + f"; rule: above {DEAD_LIMIT:.0%}"),
            "lower the learning rate, use He initialization with zero biases, or use an "
            "activation that keeps a gradient below zero (Leaky ReLU, GELU)")
    sat = {m: _nanmedian(np.asarray(v)) for m, v in report.saturated.items()}
    sat = {m: v for m, v in sat.items() if v > SATURATION_LIMIT}
    if sat:
        worst = max(sat, key=lambda m: sat[m])
        others = ", ".join(f"{_display(m)} {v:.0%}" for m, v in sat.items() if m != worst)
        add("saturation", worst, (
            f"{sat[worst]:.0%} of the outputs of {_display(worst)} sit where f'(z) is below "
            f"{SATURATION_DERIVATIVE:.0%} of its maximum (median over samples)"
            + (f"; also {others}" if others else "")
            + f"; rule: above {SATURATION_LIMIT:.0%}"),
            "shrink the pre-activations: Glorot/Xavier initialization, normalized inputs, a "
            "normalization layer before the activation, or a ReLU-family activation")

    # -- update ratio -----------------------------------------------------------------------------
    upd = report.update_ratio
    medians_u = {layers[j]: _nanmedian(upd[:, j]) for j in range(len(layers))} if upd.size else {}
    medians_u = {k: v for k, v in medians_u.items() if math.isfinite(v)}
    if medians_u:
        too_low = {k: v for k, v in medians_u.items() if v < UPDATE_RATIO_LOW}
        too_high = {k: v for k, v in medians_u.items() if v > UPDATE_RATIO_HIGH}
        half = len(medians_u) / 2
        if len(too_high) > half:
            worst = max(too_high, key=lambda k: too_high[k])
            add("update_ratio", worst, (
                f"the update-to-data ratio ‖ΔW‖/‖W‖ per step is above {UPDATE_RATIO_HIGH:g} in "
                f"{len(too_high)} of {len(medians_u)} weight layers (highest "
                f"{too_high[worst]:.2e} at {_display(worst)}, median over samples); about "
                f"{UPDATE_RATIO_TYPICAL:g} is a rule of thumb, and ratios within a decade of it "
                f"are typical"),
                "lower the learning rate (each step rewrites a large part of the weights)")
        elif len(too_low) > half:
            worst = min(too_low, key=lambda k: too_low[k])
            add("update_ratio", worst, (
                f"the update-to-data ratio ‖ΔW‖/‖W‖ per step is below {UPDATE_RATIO_LOW:g} in "
                f"{len(too_low)} of {len(medians_u)} weight layers (lowest {too_low[worst]:.2e} at "
                f"{_display(worst)}, median over samples); about "
                f"{UPDATE_RATIO_TYPICAL:g} is a rule of thumb, and ratios within a decade of it "
                f"are typical"),
                "raise the learning rate, or fix the vanishing gradient that starves these "
                "layers (the weights barely move)")

    # -- loss scale -------------------------------------------------------------------------------
    zeros = report.zero_fraction
    if fp16 and zeros.size and np.isfinite(zeros).any():
        med = [_nanmedian(zeros[:, j]) for j in range(len(layers))]
        scale_now = report.loss_scale[-1] if report.loss_scale.size else math.nan
        low_scale = not has_scaler or (math.isfinite(scale_now) and scale_now <= 1.0)
        worst_j = int(np.nanargmax(np.where(np.isfinite(med), med, -1)))
        if low_scale and med[worst_j] > ZERO_GRADIENT_LIMIT:
            how = ("without a GradScaler" if not has_scaler
                   else f"with the GradScaler's scale down to {scale_now:g}")
            add("loss_scale", layers[worst_j], (
                f"{med[worst_j]:.0%} of the gradient entries of {shown[worst_j]} are exactly "
                f"zero in float16 {how}: they underflowed (float16's smallest positive value is "
                f"6e-8); rule: above {ZERO_GRADIENT_LIMIT:.0%}"),
                "scale the loss with torch.amp.GradScaler (or train in bfloat16, whose range is "
                "float32's)")
    if has_scaler and report.steps >= 4:
        skipped = len(report.skipped_steps) / report.steps
        if skipped > SKIPPED_LIMIT:
            add("loss_scale", "", (
                f"the GradScaler skipped {len(report.skipped_steps)} of {report.steps} steps "
                f"(non-finite scaled gradients at every scale it tried); rule: above "
                f"{SKIPPED_LIMIT:.0%}"),
                "something overflows float16 even unscaled: find it (see nonfinite), keep that "
                "op in float32, or train in bfloat16")

    # -- clipping ---------------------------------------------------------------------------------
    sampled = [i for i, s in enumerate(report.sample_steps)
               if s < report.steps and math.isfinite(report.optimizer_norm[i])
               and math.isfinite(report.global_norm[s])]
    if sampled:
        clipped = [i for i in sampled
                   if report.optimizer_norm[i] < report.global_norm[report.sample_steps[i]]
                   * (1 - 1e-3)]
        share = len(clipped) / len(sampled)
        if clipped and share > CLIPPED_LIMIT:
            threshold = _nanmedian(report.optimizer_norm[clipped])
            p90 = float(np.percentile(report.global_norm[finite], CLIP_PERCENTILE))
            add("clipping", "", (
                f"{len(clipped)} of {len(sampled)} sampled steps were clipped (to about "
                f"{threshold:.3g}); the 90th percentile of the unclipped global norm is {p90:.3g};"
                f" rule: more than {CLIPPED_LIMIT:.0%} clipped"),
                f"the threshold is below this model's ordinary gradient norm: raise it to near "
                f"the 90th percentile of observed norms ({p90:.3g}); under SGD a learning rate "
                f"that is too high can also cause this")
    rank = {k: i for i, k in enumerate(KINDS)}
    return sorted(found, key=lambda f: rank[f.kind])


def _nonfinite_fix(phase: str) -> str:
    if phase == "input":
        return "the batch itself holds inf/nan: clean the data (or the augmentation) first"
    if phase == "loss":
        return ("the loss function overflows: compute it from logits (cross_entropy, "
                "binary_cross_entropy_with_logits) rather than log(softmax) or log(sigmoid), "
                "and guard any log or division with an epsilon")
    if phase == "forward":
        return ("this module's output overflows: check what it computes (exp, division, a large "
                "scale), add normalization before it or lower the learning rate; in float16, "
                "keep it in float32 or use bfloat16")
    if phase == "backward":
        return ("this module's backward produces inf/nan (sqrt, log, pow or division at 0): "
                "clamp its input away from the singular point or add an epsilon")
    if phase == "parameter":
        return ("this layer's weight gradient overflows: lower the learning rate, clip the "
                "gradient norm, or fix the growth that feeds it (initialization, normalization)")
    return "lower the learning rate or clip the gradient norm, then re-run with the doctor"


# ----------------------------------------------------------------------------------------------
# Norm helpers
# ----------------------------------------------------------------------------------------------

# accurate_norm (imported above) is gradpath.numerics.accurate_norm.


def _fast_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """Per-tensor L2 norms as one float32 vector on the device (not yet trusted)."""
    device = grads[0].device
    if all(g.dtype == torch.float32 and g.layout == torch.strided and g.device == device
           for g in grads):
        return torch.stack(torch._foreach_norm(grads, 2))
    norms = [accurate_norm(g).float() if g.dtype == torch.float64 or not g.layout == torch.strided
             else torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]
    return torch.stack([n.to(device) for n in norms])


def _checked_norms(tensors: list[torch.Tensor]) -> np.ndarray:
    """Exact float64 norms on the host: the fast float32 ones, with any that float32 could have
    got wrong (:func:`gradpath.numerics.trusted_norms`) recomputed in float64."""
    norms = _fast_norms(tensors).cpu().numpy().astype(np.float64)
    suspect = np.flatnonzero(~trusted_norms(norms, [t.numel() for t in tensors]))
    if suspect.size:
        norms[suspect] = _accurate_norms([tensors[k] for k in suspect]).cpu().numpy()
    return norms


def _accurate_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    device = grads[0].device
    return torch.stack([accurate_norm(g).to(device) for g in grads])


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _first_tensor(obj: object) -> torch.Tensor | None:
    found = _tensors(obj)
    return found[0] if found else None


def _describe_nonfinite(t: torch.Tensor) -> str:
    d = t.detach()
    nans = int(torch.isnan(d).sum())
    infs = int(torch.isinf(d).sum())
    parts = [f"{infs} inf" if infs else "", f"{nans} nan" if nans else ""]
    return f"{' and '.join(p for p in parts if p)} of {d.numel()} entries"


# ----------------------------------------------------------------------------------------------
# The doctor
# ----------------------------------------------------------------------------------------------

@dataclass
class _Layer:
    name: str
    module: nn.Module
    params: list[int]        # indices into Doctor._params: the layer's matrices (ndim >= 2)
    size: int
    is_conv: bool


@dataclass
class _Call:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    rng: list[tuple[str, torch.Tensor]]
    outputs: list[torch.Tensor] = field(default_factory=list)
    out_grads: dict[int, torch.Tensor] = field(default_factory=dict)


class Doctor:
    """Watches a model train and diagnoses its gradients; see the module docstring.

    Args:
        model: any ``nn.Module`` with trainable parameters.
        optimizer: the optimizer that trains it (optional): enables the update-to-data ratio
            and clipping detection, measured around ``optimizer.step()`` through its hooks.
        scaler: a ``torch.amp.GradScaler`` (optional): the doctor divides the gradients it sees
            by the scale (unless ``scaler.unscale_`` already ran), records the scale and the
            steps the scaler skipped.
        sample_every: activation statistics and update ratios every this many steps (and at
            step 0). Default 50 (Lightning's default logging interval), which keeps a sampled
            step's extra work (a copy of the weights, hooks on every layer) near 1% of a run;
            use 1–10 for short runs.
        sync_every: move the device measurements to the host every this many steps. ``1`` (the
            default) allows the exact re-run that localises a non-finite step; larger values
            (for a GPU) localise only from the recorded gradient norms, and accumulate norms in
            float64 on the device.
        localise: keep what a re-run of the failing step needs (references to each step's
            inputs, the random state and ``∂L/∂output`` until :meth:`step`). Default ``True``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``, ``optimizer`` not a
            ``torch.optim.Optimizer`` or ``scaler`` not a GradScaler.
        ValueError: if the model has no trainable parameter or lazy ones not yet initialized,
            if the optimizer holds none of its parameters, or for a non-positive
            ``sample_every``/``sync_every``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 scaler: Any = None, *, sample_every: int = 50, sync_every: int = 1,
                 localise: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        for name, value in (("sample_every", sample_every), ("sync_every", sync_every)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        lazy = [n for n, p in named if isinstance(p, nn.parameter.UninitializedParameter)]
        if lazy:
            raise ValueError(f"parameters {', '.join(lazy)} are not initialized yet (lazy "
                             "modules): run one forward pass before attaching the doctor")
        if not named:
            frozen = sum(1 for _ in model.parameters())
            raise ValueError(
                f"model {type(model).__name__} has no trainable parameters"
                + (f" ({frozen} frozen)" if frozen else "")
                + ": the doctor reads the gradients of parameters; attach it to the model you "
                "train, with requires_grad=True on what it learns")
        if optimizer is not None:
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError("optimizer must be a torch.optim.Optimizer, got "
                                f"{type(optimizer).__name__}")
            ours = {id(p) for _, p in named}
            if not any(id(p) in ours for g in optimizer.param_groups for p in g["params"]):
                raise ValueError("optimizer holds none of the model's trainable parameters: "
                                 "pass the optimizer that trains this model")
        if scaler is not None and not hasattr(scaler, "get_scale"):
            raise TypeError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.sample_every = sample_every
        self.sync_every = sync_every
        self.localise = localise
        self._params = [p for _, p in named]
        self._numels = np.array([p.numel() for p in self._params])
        self._param_names = [n for n, _ in named]
        self._param_owner = [n.rpartition(".")[0] for n, _ in named]
        index = {id(p): i for i, p in enumerate(self._params)}
        self._layers: list[_Layer] = []
        modules = dict(model.named_modules())
        for mname, module in modules.items():
            mats = [index[id(p)] for p in module.parameters(recurse=False)
                    if id(p) in index and p.dim() >= 2]
            if mats:
                self._layers.append(_Layer(
                    mname, module, mats, sum(self._params[i].numel() for i in mats),
                    isinstance(module, nn.modules.conv._ConvNd)))
        self._layer_of = {id(layer.module): j for j, layer in enumerate(self._layers)}
        self._containers = {
            j for j, layer in enumerate(self._layers)
            if any(id(m) in self._layer_of for m in layer.module.modules()
                   if m is not layer.module)}
        self._has_activation_modules = any(
            isinstance(m, _RELU_LIKE + _SATURATING + (nn.RNN,)) for m in model.modules())
        self._sample_keys: dict[int, tuple[list[tuple[str, Any]], list[float]]] = {}
        # Every trainable parameter dense float32 on one device: gradient norms in one call.
        self._plain = all(p.dtype == torch.float32 and p.device == self._params[0].device
                          for p in self._params) and not any(
            getattr(m, "sparse", False) for m in model.modules() if isinstance(m, nn.Embedding))
        self._probe_params = sorted(range(len(self._params)),
                                    key=lambda i: self._params[i].numel())[:8]
        # (parameters × layers): 1 where a parameter is one of a layer's matrices.
        self._membership = np.zeros((len(self._params), len(self._layers)))
        for j, layer in enumerate(self._layers):
            self._membership[layer.params, j] = 1.0
        self._forward_order: list[int] | None = None
        self._step = 0
        # host records
        self._loss: list[float] = []
        self._records: list[tuple[int, np.ndarray]] = []
        self._present_sets: list[np.ndarray] = []
        self._present_last: tuple[list[int], int] | None = None
        self._scale: list[float] = []
        self._first_loss: int | None = None
        self._first_grad: int | None = None
        self._localised: dict[str, Any] | None = None
        self._samples: dict[int, dict[str, Any]] = {}
        self._fp16 = False
        self._notes: list[str] = []
        # device-side records waiting for a sync: (step, key, tensor)
        self._pending: list[tuple[int, str, torch.Tensor]] = []
        self._pending_steps: list[tuple[int, list[int], bool, tuple[float, float] | None]] = []
        # hooks
        self._handles: list[Any] = []
        self._sample_handles: list[Any] = []
        self._sampling = False
        self._sample_record: dict[str, Any] = {}
        self._calls: list[_Call] = []
        self._calls_for_step: list[_Call] = []
        self._update_step = 0
        self._rerunning = False
        self._update_pending = False
        self._before: list[torch.Tensor] | None = None
        self._weight_before: torch.Tensor | np.ndarray = np.empty(0)
        self._on_cpu = self._params[0].device.type == "cpu" and sync_every == 1
        self._optimizer_present: list[int] = []
        self._attached = True
        if localise:
            self._handles.append(model.register_forward_pre_hook(self._capture_call,
                                                                  with_kwargs=True))
            self._handles.append(model.register_forward_hook(self._capture_output,
                                                             with_kwargs=True))
        if optimizer is not None:
            ref = weakref.ref(self)

            def pre(_opt: torch.optim.Optimizer, _a: Any, _k: Any) -> None:
                doctor = ref()
                if doctor is not None:
                    doctor._before_update()

            def post(_opt: torch.optim.Optimizer, _a: Any, _k: Any) -> None:
                doctor = ref()
                if doctor is not None:
                    doctor._after_update()

            self._handles.append(optimizer.register_step_pre_hook(pre))
            self._handles.append(optimizer.register_step_post_hook(post))
        self._arm_sampling()

    # -- lifecycle --------------------------------------------------------------------------------
    def detach(self) -> None:
        """Remove every hook; the model and optimizer are left exactly as before attaching."""
        self._disarm_sampling()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._calls.clear()
        self._before = None
        self._attached = False

    def __enter__(self) -> Doctor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- the per-step call ------------------------------------------------------------------------
    def step(self, loss: torch.Tensor | float) -> None:
        """Record this step: call after ``loss.backward()`` and before clipping and
        ``optimizer.step()`` (so the doctor sees the raw gradients).

        Args:
            loss: the scalar loss of this step (unscaled; a 0-d or one-element tensor, or a
                number).

        Raises:
            ValueError: if ``loss`` is not a scalar.
            RuntimeError: if no parameter has a gradient yet (call ``loss.backward()`` first), or
                after :meth:`detach`.
        """
        if not self._attached:
            raise RuntimeError("this doctor was detached: create a new Doctor(model, ...)")
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError(
                    f"loss must be a scalar (0-d or one-element tensor), got shape "
                    f"{tuple(loss.shape)}: reduce it first (loss.mean() or loss.sum()) and call "
                    "backward on that")
            loss_t = loss.detach()
        elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
            loss_t = torch.tensor(float(loss), dtype=torch.float64)
        else:
            raise ValueError(f"loss must be a scalar tensor or a number, got {type(loss).__name__}")
        present: list[int] = []
        grads: list[torch.Tensor] = []
        for i, p in enumerate(self._params):
            g = p.grad
            if g is not None:
                present.append(i)
                grads.append(g)
        if not present:
            raise RuntimeError("no parameter has a gradient yet: call loss.backward() before "
                               "doctor.step(loss)")
        step = self._step
        sampled = self._sampling
        self._update_pending = False
        # float16 gradients turn on the underflow measurement on both paths (before the sample)
        if not self._fp16 and any(g.dtype == torch.float16 for g in grads):
            self._fp16 = True
        if self._on_cpu:
            # The common case, kept lean: on the CPU reading a value costs no synchronization.
            if sampled:
                self._finish_sample(step, present, grads)
            self._calls_for_step, self._calls = self._calls, []
            if self._pending:
                self._sync(grads_now=None)
            norms_host = (torch.stack(torch._foreach_norm(grads)) if self._plain
                          else _fast_norms(grads)).numpy()
            scale = float(self._scale_tensor(grads[0].device)) if self.scaler is not None \
                else math.nan
            self._record_step(step, present, False, norms_host, float(loss_t), scale,
                              self._grads_are_scaled(), (present, grads))
            self._calls_for_step = []
            self._step += 1
            if self._step % self.sample_every == 0:
                self._arm_sampling()
            return
        exact = self.sync_every > 1
        norms = _accurate_norms(grads) if exact else _fast_norms(grads)
        device = norms.device
        if device.type == "cpu":
            # Nothing to synchronize on the CPU: read the loss and the scale directly.
            host: tuple[float, float] | None = (
                float(loss_t),
                float(self._scale_tensor(device)) if self.scaler is not None else math.nan)
            packed = norms
        else:
            host = None
            if loss_t.device != device:
                loss_t = loss_t.to(device)
            parts = [norms.double(), loss_t.double().reshape(1)]
            if self.scaler is not None:
                parts.append(self._scale_tensor(device))
            packed = torch.cat(parts)
        self._pending_steps.append((step, present, exact, host))
        self._pending.append((step, "step", packed))
        if sampled:
            self._finish_sample(step, present, grads)
        self._calls_for_step = self._calls
        self._calls = []
        if (step + 1) % self.sync_every == 0:
            self._sync(grads_now=(present, grads))
        self._calls_for_step = []
        self._step += 1
        if self._step % self.sample_every == 0:
            self._arm_sampling()

    def report(self) -> Report:
        """Everything measured so far, with the findings (see the rules in the module docstring).

        Raises:
            RuntimeError: if :meth:`step` was never called.
        """
        self._sync(grads_now=None)
        if not self._loss:
            raise RuntimeError("no step recorded yet: call doctor.step(loss) after each "
                               "loss.backward()")
        order = self._order()
        names = [self._layers[j].name for j in order]
        steps = len(self._loss)
        layer_norms, global_norm = self._norm_tables()
        grad = layer_norms[:, order] if steps else np.full((0, len(order)), math.nan)
        sample_steps = sorted(s for s in self._samples if s < steps)
        n_s = len(sample_steps)
        rms = np.full((n_s, len(order)), math.nan)
        upd = np.full((n_s, len(order)), math.nan)
        zeros = np.full((n_s, len(order)), math.nan)
        opt_norm = np.full(n_s, math.nan)
        dead: dict[str, list[float]] = {}
        sat: dict[str, list[float]] = {}
        time_growth: dict[str, list[float]] = {}
        for i, s in enumerate(sample_steps):
            rec = self._samples[s]
            for key, target in (("rms", rms), ("update", upd), ("zeros", zeros)):
                if key in rec:
                    target[i] = np.asarray(rec[key])[order]
            opt_norm[i] = rec.get("optimizer_norm", math.nan)
            for key, target_d in (("dead", dead), ("saturated", sat),
                                  ("time_growth", time_growth)):
                for m, v in rec.get(key, {}).items():
                    target_d.setdefault(m, [math.nan] * n_s)[i] = v
        scale = np.asarray(self._scale if self._scale else [math.nan] * steps, dtype=float)
        skipped = [t for t in range(steps - 1) if scale[t + 1] < scale[t]]
        notes = list(self._notes)
        if self.optimizer is None:
            notes.append("no optimizer given: update ratios and clipping were not measured "
                         "(Doctor(model, optimizer))")
        if not dead and not sat:
            notes.append("no nn.ReLU/nn.Sigmoid/nn.Tanh modules: dead and saturated fractions "
                         "were not measured (activations called as functions are invisible to "
                         "hooks)")
        unused = [names[k] for k in range(len(names)) if np.isnan(grad[:, k]).all()]
        if unused:
            notes.append(f"never received a gradient (unused?): {', '.join(unused)}")
        report = Report(
            model=type(self.model).__name__, layers=names,
            layer_types=[type(self._layers[j].module).__name__ for j in order],
            layer_sizes=[self._layers[j].size for j in order],
            loss=np.asarray(self._loss, dtype=float), global_norm=global_norm,
            gradient_norms=grad, sample_steps=sample_steps, activation_rms=rms,
            update_ratio=upd, optimizer_norm=opt_norm, dead=dead, saturated=sat,
            zero_fraction=zeros, time_growth=time_growth, loss_scale=scale,
            skipped_steps=skipped,
            first_nonfinite_loss_step=self._first_loss,
            first_nonfinite_gradient_step=self._first_grad, notes=notes)
        report.findings = apply_rules(report, localised=self._localised, fp16=self._fp16,
                                      has_scaler=self.scaler is not None)
        return report

    # -- internals: ordering ----------------------------------------------------------------------
    def _order(self) -> list[int]:
        """Weight layers in the order their forward starts; a layer whose forward never runs
        (``MultiheadAttention.out_proj``, used through its parent) follows the layer registered
        before it."""
        order = list(self._forward_order or [])
        for j in range(len(self._layers)):
            if j not in order:
                order.insert(order.index(j - 1) + 1 if j > 0 else 0, j)
        return order

    # -- internals: scaler ------------------------------------------------------------------------
    def _scale_tensor(self, device: torch.device) -> torch.Tensor:
        scaler = self.scaler
        scale = getattr(scaler, "_scale", None)
        if not isinstance(scale, torch.Tensor):
            scale = torch.tensor(float(scaler.get_scale()))  # type: ignore[union-attr]
        return scale.detach().to(device=device, dtype=torch.float64).reshape(1)

    def _grads_are_scaled(self) -> bool:
        """Whether the gradients the doctor sees now are multiplied by the scaler's scale (it
        reads the scaler's per-optimizer stage; without an optimizer, assumes they are)."""
        if self.scaler is None:
            return False
        if self.optimizer is None:
            return True
        states = getattr(self.scaler, "_per_optimizer_states", {})
        stage = states.get(id(self.optimizer), {}).get("stage")
        return getattr(stage, "name", "READY") == "READY"

    # -- internals: the sync ----------------------------------------------------------------------
    def _sync(self, grads_now: tuple[list[int], list[torch.Tensor]] | None) -> None:
        if not self._pending:
            return
        values: list[np.ndarray] = [np.empty(0)] * len(self._pending)
        if len(self._pending) == 1:
            values[0] = self._pending[0][2].cpu().numpy()
        else:
            by_device: dict[torch.device, list[int]] = {}
            for k, (_, _, t) in enumerate(self._pending):
                by_device.setdefault(t.device, []).append(k)
            for _, ks in by_device.items():
                # One transfer per device: the only host sync of this step.
                packed = torch.cat([self._pending[k][2].reshape(-1).double() for k in ks])
                host_np = packed.cpu().numpy()
                offset = 0
                for k in ks:
                    size = self._pending[k][2].numel()
                    values[k] = host_np[offset:offset + size]
                    offset += size
        pending, self._pending = self._pending, []
        steps, self._pending_steps = self._pending_steps, []
        meta = {s: (present, exact, host) for s, present, exact, host in steps}
        scaled = self._grads_are_scaled()
        for (step, key, _), value in zip(pending, values, strict=True):
            if key == "step":
                present, exact, host = meta[step]
                n = len(present)
                loss, scale = host if host is not None else (
                    float(value[n]), float(value[n + 1]) if self.scaler is not None else math.nan)
                # Only the current step can be re-run (its calls are the ones kept): an earlier
                # step of a sync_every batch is located from its gradient norms.
                self._record_step(step, present, exact, value[:n], loss, scale, scaled,
                                  grads_now if step == self._step else None)
            else:
                self._record_sample_value(step, key, value)

    def _record_step(self, step: int, present: list[int], exact: bool, value: np.ndarray,
                     loss: float, scale: float, scaled: bool,
                     grads_now: tuple[list[int], list[torch.Tensor]] | None) -> None:
        """Keep one step's per-parameter norms (made exact where float32 could be wrong) and the
        loss; look for the first non-finite step. Layer and global norms wait for report()."""
        norms = value.astype(np.float64)
        trusted = trusted_norms(norms, self._numels[present])
        all_trusted = bool(trusted.all())
        if not exact and not all_trusted:
            if grads_now is None or grads_now[0] != present:
                raise RuntimeError("internal: float32 norms left unchecked")  # pragma: no cover
            redo = np.flatnonzero(~trusted)
            norms[redo] = _accurate_norms([grads_now[1][k] for k in redo]).cpu().numpy()
        if self.scaler is not None:
            self._scale.append(scale)
            if scaled and math.isfinite(scale) and scale > 0:
                norms = norms / scale
        # A non-finite norm means a non-finite entry (see the module docstring): keep it as inf,
        # since nan in the records means "no gradient at this step".
        grad_bad = not all_trusted and not np.isfinite(norms).all()
        if grad_bad:
            bad_present = ~np.isfinite(norms)
            norms[bad_present] = math.inf
        key = self._present_key(present)
        self._records.append((key, norms))
        self._loss.append(loss)
        loss_bad = not math.isfinite(loss)
        if step in self._samples:
            self._samples[step]["param_norms"] = self._full(key, norms)
        if loss_bad and self._first_loss is None:
            self._first_loss = step
        if grad_bad and self._first_grad is None:
            self._first_grad = step
        if (loss_bad or grad_bad) and self._localised is None:
            bad = np.zeros(len(self._params), dtype=bool)
            if grad_bad:
                bad[self._present_sets[key]] = bad_present
            self._localised = self._localise(step, loss_bad, bad, rerun=grads_now is not None)

    def _present_key(self, present: list[int]) -> int:
        if self._present_last is not None and self._present_last[0] == present:
            return self._present_last[1]
        key = len(self._present_sets)
        for k, known in enumerate(self._present_sets):
            if known.tolist() == present:
                key = k
                break
        else:
            self._present_sets.append(np.asarray(present, dtype=int))
        self._present_last = (present, key)
        return key

    def _full(self, key: int, norms: np.ndarray) -> np.ndarray:
        """Per-parameter values with nan for parameters without a gradient at that step."""
        full = np.full(len(self._params), math.nan)
        full[self._present_sets[key]] = norms
        return full

    def _norm_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps × layers) layer gradient norms and (steps,) global norms from the records.

        A layer's norm is the root of the summed squares of its matrices' norms; ``nan`` where
        none of them had a gradient; ``inf`` (in float64, as the tensor held a non-finite entry)
        propagates."""
        steps = len(self._records)
        full = np.full((steps, len(self._params)), math.nan)
        for t, (key, norms) in enumerate(self._records):
            full[t, self._present_sets[key]] = norms
        # A non-finite norm (an inf/nan entry in the tensor) is reported as inf; it is left out
        # of the sums (inf × 0 in the product would be nan) and put back afterwards.
        nonfinite = np.isinf(full)
        with np.errstate(invalid="ignore", over="ignore"):
            squares = np.where(np.isfinite(full), full, 0.0) ** 2
            layer = np.sqrt(squares @ self._membership)
            layer[(~np.isnan(full)).astype(float) @ self._membership == 0] = math.nan
            global_norm = np.sqrt(squares.sum(axis=1))
        global_norm[nonfinite.any(axis=1)] = math.inf
        for j in range(len(self._layers)):
            rows = nonfinite[:, self._layers[j].params].any(axis=1)
            layer[rows, j] = math.inf
        return layer, global_norm

    # -- internals: sampling hooks ----------------------------------------------------------------
    def _arm_sampling(self) -> None:
        if self._sampling or not self._attached:
            return
        self._sampling = True
        # keys[k] names values[k] (a 0-d float64 device tensor), divided by divisors[k] on the
        # host: ("rms", j), ("dead", module), ("saturated", module), ("time_growth", module).
        self._sample_record = {"keys": [], "values": [], "divisors": [], "order": [],
                               "seen": set(), "started": {}, "last_weight_conv": False,
                               "input_zero": {}, "done": set(), "calls": {}}
        for name, module in self.model.named_modules():
            j = self._layer_of.get(id(module))
            if j is not None and j in self._containers:
                self._sample_handles.append(module.register_forward_pre_hook(
                    self._order_hook(j)))
            if j is not None or isinstance(module, _RELU_LIKE + _SATURATING):
                self._sample_handles.append(module.register_forward_hook(
                    self._sample_hook(name, module, j)))

    def _activation_norm(self, d: torch.Tensor) -> torch.Tensor | float:
        """‖d‖, exact: on the CPU a float32 norm read at once and redone in float64 if float32
        could be wrong; elsewhere a float64 norm left on the device."""
        if not self._on_cpu:
            return accurate_norm(d)
        value = float(torch.linalg.vector_norm(d, dtype=torch.float32))
        if not trusted_norms([value], [d.numel()])[0]:
            value = float(accurate_norm(d))
        return value

    def _order_hook(self, j: int) -> Callable[[nn.Module, Any], None]:
        """A weight layer that contains others is placed where its forward starts."""
        def hook(_m: nn.Module, _inputs: Any) -> None:
            if self._rerunning or not torch.is_grad_enabled():
                return
            rec = self._sample_record
            if j not in rec["seen"]:
                rec["seen"].add(j)
                rec["started"][j] = len(rec["order"])
                rec["order"].append(j)
        return hook

    def _disarm_sampling(self) -> None:
        for handle in self._sample_handles:
            handle.remove()
        self._sample_handles.clear()
        self._sampling = False

    def _sample_hook(self, name: str, module: nn.Module,
                     j: int | None) -> Callable[[nn.Module, Any, Any], None]:
        is_rnn = isinstance(module, nn.RNNBase)
        unbounded_rnn = isinstance(module, nn.RNN) and module.nonlinearity == "relu"
        kind = ("dead" if isinstance(module, _RELU_LIKE) or
                (isinstance(module, nn.RNN) and module.nonlinearity == "relu") else
                "sigmoid" if isinstance(module, nn.Sigmoid) else
                "tanh" if isinstance(module, nn.Tanh) or isinstance(module, nn.RNN) else "")
        container = j is not None and j in self._containers
        conv = j is not None and self._layers[j].is_conv

        def hook(_m: nn.Module, inputs: Any, output: Any) -> None:
            if self._rerunning or not torch.is_grad_enabled():
                return
            rec = self._sample_record
            key = name
            if name in rec["done"]:
                if j is not None:
                    return            # a weight layer called again (an RNN cell): first call
                # An activation module used at several places (one nn.ReLU for every layer).
                calls = rec["calls"][name] = rec["calls"].get(name, 1) + 1
                key = f"{name} (call {calls})"
            rec["done"].add(name)
            out = output if isinstance(output, torch.Tensor) else _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            if out.dtype == torch.float16:
                self._fp16 = True
            d = out.detach()
            keys, values, divisors = rec["keys"], rec["values"], rec["divisors"]
            if j is not None:
                if container:
                    # Its output is its nested layers' work, not its own (a model that owns a
                    # positional embedding, say); record none.
                    if len(rec["order"]) > rec["started"].get(j, -1) + 1:
                        return
                elif j not in rec["seen"]:
                    rec["seen"].add(j)
                    rec["order"].append(j)
                keys.append(("rms", j))
                values.append(self._activation_norm(d))
                divisors.append(math.sqrt(max(d.numel(), 1)))
                rec["last_weight_conv"] = conv
                if not self._has_activation_modules:
                    x = _first_tensor(inputs)
                    if x is not None and x.is_floating_point() and x.dim() >= 2:
                        rec["input_zero"][j] = x.detach()      # measured in step()
                # Growth through time can only explode in an unbounded recurrence: LSTM, GRU
                # and tanh states stay within [-1, 1] (there, look for saturation instead).
                if unbounded_rnn and not isinstance(_first_output(output),
                                                    nn.utils.rnn.PackedSequence):
                    growth = _growth_through_time(
                        d, batch_first=bool(getattr(module, "batch_first", False)))
                    if growth is not None:
                        keys.append(("time_growth", name))
                        values.append(float(growth) if self._on_cpu else growth)
                        divisors.append(1.0)
                if not is_rnn or not kind:
                    return
            units_conv = conv if j is not None else rec["last_weight_conv"]
            if kind == "dead":
                count, units = _dead_count(d, conv=units_conv)
                keys.append(("dead", key))
                values.append(float(count) if self._on_cpu else count)
                divisors.append(units)
            elif kind:
                keys.append(("saturated", key))
                count = _saturated_count(d, kind)
                values.append(float(count) if self._on_cpu else count)
                divisors.append(float(d.numel()))
        return hook

    def _finish_sample(self, step: int, present: list[int], grads: list[torch.Tensor]) -> None:
        rec = self._sample_record
        self._disarm_sampling()
        if not rec["order"]:
            # No training forward ran between arming and this step: try again next step.
            self._arm_sampling()
            return
        if self._forward_order is None:
            self._forward_order = list(rec["order"])
        keys, values, divisors = rec["keys"], rec["values"], rec["divisors"]
        # Dead inputs of weight layers fed by activations called as functions (not modules).
        for j, x in rec["input_zero"].items():
            if j != rec["order"][0]:
                count, units = _dead_count(x.abs(), conv=self._layers[j].is_conv)
                keys.append(("dead", f"{self._layers[j].name} (input)"))
                values.append(count)
                divisors.append(units)
        rec["input_zero"] = {}
        if self._fp16:
            where = {i: k for k, i in enumerate(present)}
            for j, layer in enumerate(self._layers):
                ks = [where[i] for i in layer.params if i in where]
                if ks:
                    zeros = sum((grads[k] == 0).sum(dtype=torch.float64) for k in ks)
                    keys.append(("zeros", j))
                    values.append(float(zeros) if self._on_cpu else zeros)
                    divisors.append(float(sum(grads[k].numel() for k in ks)))
        if values:
            self._sample_keys[step] = (keys, divisors)
            if all(isinstance(v, float) for v in values):
                self._record_sample_value(step, "sample", np.asarray(values, dtype=np.float64))
            else:
                device = next(v for v in values if isinstance(v, torch.Tensor)).device
                self._pending.append((step, "sample", torch.stack([
                    torch.as_tensor(v, dtype=torch.float64).to(device) for v in values])))
        self._samples.setdefault(step, {})
        if self.optimizer is not None:
            self._update_pending = True
            self._update_step = step

    def _record_sample_value(self, step: int, key: str, value: np.ndarray) -> None:
        rec = self._samples.setdefault(step, {})
        if key == "sample":
            keys, divisors = self._sample_keys.pop(step)
            L = len(self._layers)
            for (kind, what), v in zip(keys, value / np.asarray(divisors), strict=True):
                if kind in ("rms", "zeros"):
                    rec.setdefault(kind, np.full(L, math.nan))[what] = v
                else:
                    rec.setdefault(kind, {})[what] = float(v)
        elif key == "update":
            self._record_update(step, value)
        elif key == "optimizer_grads":
            self._record_optimizer_grads(step, value)
        else:
            kind, _, module = key.partition(":")
            rec.setdefault(kind, {})[module] = float(value[0])

    # -- internals: the update ratio (optimizer hooks) --------------------------------------------
    def _matrices(self) -> list[tuple[int, int]]:
        return [(j, i) for j, layer in enumerate(self._layers) for i in layer.params]

    def _sample_norms(self, tensors: list[torch.Tensor]) -> torch.Tensor | np.ndarray:
        """Exact norms on a sampled step: checked on the host at once on the CPU (reading a CPU
        tensor costs no sync), float64 on the device elsewhere (read at the next sync)."""
        if self._on_cpu:
            return _checked_norms(tensors)
        return _accurate_norms(tensors)

    def _before_update(self) -> None:
        if not self._update_pending:
            return
        weights = [self._params[i].detach() for _, i in self._matrices()]
        if self._before is None:
            # One persistent copy of the weight matrices, refilled at each sample (allocating it
            # afresh each time costs page faults as large as the copy itself).
            self._before = [torch.empty_like(w) for w in weights]
        torch._foreach_copy_(self._before, weights)
        self._weight_before = self._sample_norms(self._before)     # ‖W‖ before the step
        # The gradients the optimizer is about to use (after any clipping and unscaling) against
        # those the doctor saw. Clipping and unscaling multiply every gradient by one factor, so
        # a few small tensors tell it (a full pass over the gradients is not needed).
        present = [i for i in self._probe_params if self._params[i].grad is not None]
        if present:
            grads = [cast(torch.Tensor, self._params[i].grad) for i in present]
            self._optimizer_present = present
            self._put(self._update_step, "optimizer_grads", self._sample_norms(grads))

    def _after_update(self) -> None:
        if not self._update_pending or self._before is None:
            return
        self._update_pending = False
        after = [self._params[i].detach() for _, i in self._matrices()]
        torch._foreach_sub_(self._before, after)           # now W_before - W_after = -ΔW
        delta = self._sample_norms(self._before)
        weight = self._weight_before
        if isinstance(delta, np.ndarray) and isinstance(weight, np.ndarray):
            self._record_update(self._update_step, np.concatenate([delta, weight]))
        else:
            self._pending.append((self._update_step, "update",
                                  torch.cat([torch.as_tensor(delta), torch.as_tensor(weight)])))

    def _put(self, step: int, key: str, value: torch.Tensor | np.ndarray) -> None:
        """Record a sampled value now (host) or at the next sync (device)."""
        if isinstance(value, np.ndarray):
            self._record_sample_value(step, key, value)
        else:
            self._pending.append((step, key, value))

    def _record_update(self, step: int, value: np.ndarray) -> None:
        """‖ΔW‖/‖W‖ per layer from the (exact) per-matrix norms of ΔW and of W."""
        mats = self._matrices()
        n = len(mats)
        delta, weight = value[:n], value[n:]
        owner = np.array([j for j, _ in mats])
        d2 = np.bincount(owner, weights=delta ** 2, minlength=len(self._layers))
        w2 = np.bincount(owner, weights=weight ** 2, minlength=len(self._layers))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            self._samples.setdefault(step, {})["update"] = np.sqrt(d2) / np.sqrt(w2)

    def _record_optimizer_grads(self, step: int, value: np.ndarray) -> None:
        """The global norm the optimizer saw: the doctor's global norm times the median ratio of
        per-parameter norms after/before (clipping and unscaling scale every gradient alike)."""
        rec = self._samples.setdefault(step, {})
        seen = rec.get("param_norms")
        if seen is None:
            return
        before = seen[self._optimizer_present]
        trusted = np.isfinite(value) & (value > 0) & np.isfinite(before) & (before > 0)
        if trusted.any():
            ratio = float(np.median(value[trusted] / before[trusted]))
            known = seen[~np.isnan(seen)]
            rec["optimizer_norm"] = ratio * math.sqrt(float(np.sum(known ** 2)))

    # -- internals: capture for the re-run --------------------------------------------------------
    def _capture_call(self, _m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._rerunning or not torch.is_grad_enabled() or \
                len(self._calls) >= _MAX_CAPTURED_CALLS:
            return
        self._calls.append(_Call(args, dict(kwargs), _rng_state(self._params[0].device)))

    def _capture_output(self, _m: nn.Module, _args: Any, _kwargs: Any, output: Any) -> None:
        if self._rerunning or not torch.is_grad_enabled() or not self._calls:
            return
        call = self._calls[-1]
        if call.outputs:
            return
        for k, t in enumerate(_tensors(output)):
            if t.requires_grad:
                call.outputs.append(t)

                def keep(grad: torch.Tensor, k: int = k, call: _Call = call) -> None:
                    call.out_grads[k] = grad.detach()
                t.register_hook(keep)
        call.outputs = [t.detach() for t in call.outputs]  # keep no graph alive

    # -- internals: localisation ------------------------------------------------------------------
    def _localise(self, step: int, loss_bad: bool, bad: np.ndarray,
                  rerun: bool) -> dict[str, Any]:
        calls = self._calls_for_step
        if rerun and calls:
            try:
                found = self._rerun(calls, loss_bad)
            except Exception as error:  # a re-run that fails must never break training
                self._notes.append(f"the re-run of step {step} failed ({error!r}); the "
                                   "non-finite value was located from the gradient norms only")
                found = None
            if found is not None:
                return found
        elif not rerun:
            self._notes.append("sync_every > 1: the failing step could not be re-run; the "
                               "non-finite value was located from the gradient norms only")
        return self._from_gradients(bad, loss_bad)

    def _from_gradients(self, bad: np.ndarray, loss_bad: bool) -> dict[str, Any]:
        """The parameter nearest the output (in forward order) whose gradient is non-finite:
        the first one a non-finite backward signal reaches."""
        culprits = [int(i) for i in np.flatnonzero(bad)]
        if not culprits:
            return {"where": "loss" if loss_bad else "", "phase": "loss" if loss_bad else "",
                    "what": "the loss is non-finite while every gradient is finite"
                    if loss_bad else "no non-finite gradient was found"}
        rank = {self._layers[j].name: r for r, j in enumerate(self._order())}
        last = max(culprits, key=lambda i: rank.get(self._param_owner[i], -1))
        return {"where": self._param_owner[last], "phase": "parameter",
                "what": f"the gradient of '{self._param_names[last]}' is non-finite (of the "
                        "non-finite gradients, the one nearest the output)"}

    def _rerun(self, calls: list[_Call], loss_bad: bool) -> dict[str, Any] | None:
        """Re-run the failing step's forward calls, then their backward, with checks on; return
        the first non-finite value found (``None`` if the re-run finds none)."""
        model = self.model
        names = {id(m): n for n, m in model.named_modules()}
        runs: list[tuple[_Call, list[dict[str, Any]], list[torch.Tensor], list[torch.Tensor]]] = []
        with self._restoring():
            for call in calls:
                for t in _tensors((call.args, call.kwargs)):
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        return {"where": "input", "phase": "input",
                                "what": f"the batch passed to the model holds "
                                        f"{_describe_nonfinite(t)} (re-ran the step)"}
            # 1. Every forward call of the step, in order, each with its own random state.
            for call in calls:
                _set_rng(call.rng)
                events: list[dict[str, Any]] = []
                handles = [module.register_forward_hook(self._forward_check(names, events))
                           for module in model.modules()]
                try:
                    args = tuple(a.detach().requires_grad_(True)
                                 if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                                 for a in call.args)
                    with torch.enable_grad():
                        output = model(*args, **call.kwargs)
                finally:
                    for handle in handles:
                        handle.remove()
                forward = [e for e in events if e["phase"] == "forward"]
                if forward:
                    return {**forward[0], "what": forward[0]["what"] + " (re-ran the step)"}
                inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
                runs.append((call, events, inputs,
                             [t for t in _tensors(output) if t.requires_grad]))
            if loss_bad:
                return {"where": "loss", "phase": "loss",
                        "what": "every module's output is finite but the loss is not: the loss "
                                "function overflows (re-ran the step)"}
            # 2. Their backward, from the gradient the loss sent into each output.
            for call, events, inputs, outs in runs:
                if not outs or len(call.out_grads) != len(outs):
                    continue
                out_grads = [call.out_grads[k] for k in range(len(outs))]
                if any(not bool(torch.isfinite(g).all()) for g in out_grads):
                    return {"where": "loss", "phase": "loss",
                            "what": "the gradient of the loss with respect to the model's output "
                                    "is non-finite (re-ran the step)"}
                handles = [p.register_hook(self._parameter_check(pname, owner, events))
                           for p, pname, owner in zip(self._params, self._param_names,
                                                      self._param_owner, strict=True)]
                try:
                    # autograd.grad returns the gradients instead of adding them to .grad.
                    torch.autograd.grad(outs, list(self._params) + inputs,
                                        grad_outputs=out_grads, allow_unused=True)
                finally:
                    for handle in handles:
                        handle.remove()
                backward = [e for e in events if e["phase"] in ("backward", "parameter")]
                if backward:
                    return {**backward[0], "what": backward[0]["what"] + " (re-ran the step)"}
        return None

    @staticmethod
    def _forward_check(names: dict[int, str], events: list[dict[str, Any]]
                       ) -> Callable[[nn.Module, Any, Any], None]:
        """A forward hook that records the first non-finite module output, and hooks each
        module's inputs so the backward records the first module that passes back inf/nan."""
        def backward_done() -> bool:
            return any(e["phase"] in ("backward", "parameter") for e in events)

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            name = names.get(id(module), "?")
            if not any(e["phase"] == "forward" for e in events):
                for t in _tensors(output):
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        events.append({"where": name, "phase": "forward",
                                       "what": f"the forward output of {_display(name)} "
                                               f"({type(module).__name__}) holds "
                                               f"{_describe_nonfinite(t)}"})
                        break
            for x in _tensors(inputs):
                if x.requires_grad:
                    def check(grad: torch.Tensor, name: str = name,
                              kind: str = type(module).__name__) -> None:
                        if not backward_done() and not bool(torch.isfinite(grad).all()):
                            events.append({
                                "where": name, "phase": "backward",
                                "what": f"the gradient that {_display(name)} ({kind}) passes "
                                        f"back to its input holds {_describe_nonfinite(grad)}, "
                                        "while the gradient reaching its output is finite"})
                    x.register_hook(check)
        return hook

    @staticmethod
    def _parameter_check(pname: str, owner: str, events: list[dict[str, Any]]
                         ) -> Callable[[torch.Tensor], None]:
        def check(grad: torch.Tensor) -> None:
            if not any(e["phase"] in ("backward", "parameter") for e in events) and \
                    not bool(torch.isfinite(grad).all()):
                events.append({"where": owner, "phase": "parameter",
                               "what": f"the gradient of '{pname}' holds "
                                       f"{_describe_nonfinite(grad)} while every gradient before "
                                       "it in the backward pass is finite"})
        return check

    @contextmanager
    def _restoring(self) -> Iterator[None]:
        """Re-run a step without a trace: buffers, random state and mode are put back."""
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        rng = _rng_state(self._params[0].device)
        self._rerunning = True
        try:
            yield
        finally:
            self._rerunning = False
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            _set_rng(rng)


def _dead_count(t: torch.Tensor, *, conv: bool) -> tuple[torch.Tensor, float]:
    """(units whose value is 0 for every example and position, units) for a non-negative
    tensor: channels of a convolution's output, the last dimension otherwise."""
    if t.dim() < 2:
        return torch.tensor(math.nan, dtype=torch.float64, device=t.device), 1.0
    dim = 1 if conv else t.dim() - 1
    units = t if dim == t.dim() - 1 else t.movedim(dim, -1)
    peak = units.reshape(-1, t.shape[dim]).amax(dim=0)
    return (peak == 0).sum(dtype=torch.float64), float(t.shape[dim])


def _saturated_count(t: torch.Tensor, kind: str) -> torch.Tensor:
    """Entries where ``f'(z) < SATURATION_DERIVATIVE × max f'``, from the output ``f(z)``:
    ``σ' = s(1−s) ≤ 1/4`` is below ``0.01/4`` where ``|s − ½| > √(¼ − 0.0025)``, and
    ``tanh' = 1 − t²`` is below ``0.01`` where ``|t| > √0.99``."""
    if kind == "sigmoid":
        edge = math.sqrt(0.25 - 0.25 * SATURATION_DERIVATIVE)
        return ((t - 0.5).abs() > edge).sum(dtype=torch.float64)
    return (t.abs() > math.sqrt(1 - SATURATION_DERIVATIVE)).sum(dtype=torch.float64)


def _first_output(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) and output else output


def _growth_through_time(h: torch.Tensor, *, batch_first: bool) -> torch.Tensor | None:
    """RMS of a recurrent output at its last time step over that at its first (0-d float64);
    ``None`` for fewer than two steps or an unexpected shape."""
    if h.dim() not in (2, 3):
        return None
    axis = 1 if (batch_first and h.dim() == 3) else 0
    if h.shape[axis] < 2:
        return None
    first, last = h.select(axis, 0), h.select(axis, h.shape[axis] - 1)
    return (torch.linalg.vector_norm(last, dtype=torch.float64)
            / torch.linalg.vector_norm(first, dtype=torch.float64))


def _rng_state(device: torch.device) -> list[tuple[str, torch.Tensor]]:
    state = [("cpu", torch.get_rng_state())]
    if device.type == "cuda":
        state.append((f"cuda:{device.index or 0}", torch.cuda.get_rng_state(device)))
    return state


def _set_rng(state: list[tuple[str, torch.Tensor]]) -> None:
    for where, value in state:
        if where == "cpu":
            torch.set_rng_state(value)
        else:
            torch.cuda.set_rng_state(value, where)


# ----------------------------------------------------------------------------------------------
# checkup
# ----------------------------------------------------------------------------------------------

OptimizerLike = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def checkup(model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor],
            targets: torch.Tensor, loss_fn: Callable[[Any, torch.Tensor], torch.Tensor], *,
            steps: int = 20, optimizer: OptimizerLike | None = None,
            sample_every: int = 1) -> Report:
    """A verdict before training: train a deep copy for a few steps with a doctor attached.

    The model itself, its gradients, its mode and the global random state are left as they
    were. The copy is put in training mode and trained on the same batch at every step.

    Args:
        model: the model to examine.
        inputs: one batch (a tensor, or a sequence of tensors passed as ``model(*inputs)``).
        targets: the batch's targets.
        loss_fn: ``loss_fn(model(inputs), targets)`` must give a scalar loss.
        steps: training steps of the probe run (default 20).
        optimizer: an optimizer of ``model`` (copied: same class, groups and hyperparameters,
            fresh state), or a function that builds one from parameters. Default: Adam, lr 1e-3.
        sample_every: activation and update sampling period (default 1: every step).

    Returns:
        The doctor's :class:`Report` of the probe run.

    Raises:
        ValueError: for ``steps < 1``, a non-callable ``loss_fn``, a loss that is not a scalar
            tensor depending on the model's output, or an optimizer that does not train this
            model; and whatever :class:`Doctor` raises for the model.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not (isinstance(inputs, torch.Tensor) or (
            isinstance(inputs, Sequence) and inputs
            and all(isinstance(t, torch.Tensor) for t in inputs))):
        raise TypeError(f"inputs must be a tensor or a non-empty sequence of tensors, got "
                        f"{type(inputs).__name__}")
    patient = copy.deepcopy(model)
    patient.train()
    opt = _copy_optimizer(optimizer, model, patient)
    args = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    device = next(iter(patient.parameters()), torch.empty(0)).device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        doctor = Doctor(patient, opt, sample_every=sample_every)
        try:
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(patient(*args), targets)
                if not (isinstance(loss, torch.Tensor) and loss.numel() == 1
                        and loss.requires_grad):
                    shape = (tuple(loss.shape) if isinstance(loss, torch.Tensor)
                             else type(loss).__name__)
                    raise ValueError("loss_fn(model(inputs), targets) must return a scalar loss "
                                     f"tensor computed from the model's output, got {shape}"
                                     + ("" if not isinstance(loss, torch.Tensor)
                                        or loss.requires_grad else " that needs no gradient"))
                loss.backward()
                doctor.step(loss)
                opt.step()
            return doctor.report()
        finally:
            doctor.detach()


def _copy_optimizer(optimizer: OptimizerLike | None, model: nn.Module,
                    patient: nn.Module) -> torch.optim.Optimizer:
    params = list(patient.parameters())
    if optimizer is None:
        return torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-3)
    if not isinstance(optimizer, torch.optim.Optimizer):
        if not callable(optimizer):
            raise ValueError("optimizer must be a torch.optim.Optimizer or a function of the "
                             f"parameters, got {type(optimizer).__name__}")
        return optimizer(p for p in params if p.requires_grad)
    mapping = {id(p): q for p, q in zip(model.parameters(), params, strict=True)}
    groups = []
    for group in optimizer.param_groups:
        missing = [p for p in group["params"] if id(p) not in mapping]
        if missing:
            raise ValueError("optimizer holds parameters that are not the model's: pass the "
                             "optimizer that trains this model, or a function that builds one")
        groups.append({**{k: v for k, v in group.items() if k != "params"},
                       "params": [mapping[id(p)] for p in group["params"]]})
    try:
        return type(optimizer)(groups, **optimizer.defaults)
    except TypeError as error:
        raise ValueError(f"cannot copy {type(optimizer).__name__} ({error}); pass a function "
                         "that builds it, e.g. optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1)"
                         ) from error
