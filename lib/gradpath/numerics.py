"""Norms that do not lie: reductions that are right for every finite input whose result the
result's dtype can hold.

A float32 sum of squares overflows once the norm passes about ``1.8e19`` (the sum passes
float32's largest number, ``3.4e38``): a single entry above ``1.8e19`` is enough, and so are
``10**6`` entries of ``2e16``. It loses precision once the entries fall below about ``1e-19``
(their squares fall below float32's smallest normal number, ``1.2e-38``) and gives zero once
they fall below about ``2.6e-23`` (squares below half the smallest subnormal, ``1.4e-45``),
although the entries themselves are perfectly finite: ``torch.full((100,), 1e20).norm()`` is
``inf`` and ``torch.full((100,), 1e-26).norm()`` is ``0``. ``torch.nn.utils.clip_grad_norm_``
inherits the same behaviour.

Every norm gradpath reports comes from :func:`tensor_norms`: a fast float32 reduction where it
is provably exact (no overflow happened, and lost tiny squares cannot matter), and float64
accumulation (or division by the largest entry, on devices without float64) where it is not.
:func:`accurate_norm` is the one exact norm every other function (and the gradient doctor)
falls back to, and :func:`trusted_norms` the one rule for when a fast float32 norm may be kept.
:func:`combined_norm` joins separate norms without overflow; :func:`as_float64` and
:func:`float64_statistics` accumulate means and variances in float64. A norm is ``inf``/``nan``
exactly when the tensor holds an ``inf``/``nan`` entry, which is decided with ``torch.isfinite``
on the entries, never from a derived norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_COMPRESSED = (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


def _fast_norm_list(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's L2 norm as a 0-d tensor on its device, from one fused reduction.

    ``torch._foreach_norm`` for float32 (the common case); float16/bfloat16 are accumulated in
    float32 and float64 in float64. A result can overflow or underflow although every entry is
    finite; :func:`_reliable` says when it cannot have.
    """
    with torch.no_grad():
        if all(t.dtype == torch.float32 for t in tensors):
            if tensors and tensors[0].device.type == "cpu":
                return _cpu_norm_list(tensors)
            return list(torch._foreach_norm(list(tensors)))
        return [torch.linalg.vector_norm(t, dtype=torch.float32 if t.dtype in _LOW_PRECISION
                                         else None) for t in tensors]


# On the CPU, torch._foreach_norm is a loop over the tensors, and (measured with torch 2.13) a
# slower one than calling torch.linalg.vector_norm on each tensor once a tensor has more than a
# few thousand entries; it wins on many small tensors, where it saves the per-call overhead.
_CPU_FOREACH_LIMIT = 1 << 14


def _cpu_norm_list(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """float32 norms on the CPU: one ``_foreach_norm`` for the small tensors, one call per big one.
    """
    small = [i for i, t in enumerate(tensors) if t.numel() < _CPU_FOREACH_LIMIT]
    if len(small) == len(tensors):
        return list(torch._foreach_norm(list(tensors)))
    out: list[torch.Tensor | None] = [None] * len(tensors)
    if small:
        for i, norm in zip(small, torch._foreach_norm([tensors[i] for i in small]), strict=True):
            out[i] = norm
    for i, t in enumerate(tensors):
        if out[i] is None:
            out[i] = torch.linalg.vector_norm(t)
    return cast(list[torch.Tensor], out)


def _stacked(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack 0-d tensors in one call, converting to float64 only if some are float64."""
    if any(v.dtype != torch.float32 for v in values):
        dtype = torch.float64 if any(v.dtype == torch.float64 for v in values) else torch.float32
        values = [v.to(dtype) for v in values]
    return torch.stack(list(values))


def _fast_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`_fast_norm_list` stacked into one 1-D tensor (float64 if any input is float64)."""
    if not tensors:
        return torch.zeros(0)
    return _stacked(_fast_norm_list(tensors))


_TINY = {torch.float32: torch.finfo(torch.float32).tiny,
         torch.float64: torch.finfo(torch.float64).tiny}


def _limit(numel: int, accumulated_in: torch.dtype) -> float:
    """The smallest fast norm of ``numel`` entries that :func:`trusted_norms` accepts:
    ``sqrt(1e9 · numel · tiny)`` of the accumulation dtype."""
    return math.sqrt(1e9 * max(int(numel), 1) * _TINY[accumulated_in])


def _reliable_limits(tensors: Sequence[torch.Tensor]) -> list[float]:
    """Per tensor, the smallest fast norm that :func:`_reliable` accepts.

    Each tensor is accumulated in float64 if it is float64, else in float32 (see
    :func:`_fast_norm_list`).
    """
    return [_limit(t.numel(), torch.float64 if t.dtype == torch.float64 else torch.float32)
            for t in tensors]


def _reliable(value: float, limit: float) -> bool:
    """Whether a fast norm ``value`` is the true norm to rounding error (see
    :func:`trusted_norms`; ``limit`` from :func:`_reliable_limits`)."""
    return math.isfinite(value) and value >= limit


def trusted_norms(norms: Sequence[float] | np.ndarray, numels: Sequence[int] | np.ndarray,
                  accumulated_in: torch.dtype = torch.float32) -> np.ndarray:
    """Which fast norms are the true norms to rounding error; the others must be recomputed.

    A norm summed in ``accumulated_in`` (float32 for ``torch._foreach_norm`` or
    ``Tensor.norm()`` of a float32 tensor) is trusted when it is finite (no square overflowed:
    an overflow leaves ``inf`` in the sum) and ``norm² >= 1e9 · numel · tiny``: squares below
    the dtype's smallest normal number ``tiny`` may be lost or rounded, which changes the sum of
    squares by at most ``numel · tiny``, under 1e-9 of it. Anything smaller, including an exact
    0, and every ``inf``/``nan`` is untrusted: recompute it with :func:`accurate_norm` (an
    ``inf``/``nan`` that the tensor's entries confirm stays).

    Args:
        norms: the fast norms, one per tensor.
        numels: each tensor's number of entries.
        accumulated_in: the dtype the fast norms were accumulated in (float32 or float64).

    Returns:
        A boolean array, ``True`` where the fast norm can be used as it is.

    Raises:
        ValueError: if ``norms`` and ``numels`` differ in length, or for another dtype.
    """
    if accumulated_in not in _TINY:
        raise ValueError(f"accumulated_in must be torch.float32 or torch.float64, got "
                         f"{accumulated_in}")
    values = np.asarray(norms, dtype=np.float64).reshape(-1)
    counts = np.asarray(numels, dtype=np.float64).reshape(-1)
    if values.shape != counts.shape:
        raise ValueError(f"norms and numels differ in length: {values.size} and {counts.size}")
    # norm >= sqrt(limit) rather than norm² >= limit: no square to overflow, no warning for nan
    return np.isfinite(values) & (values >= np.sqrt(np.maximum(counts, 1.0)
                                                    * (1e9 * _TINY[accumulated_in])))


def _float64_capable(device: torch.device) -> bool:
    return device.type != "mps"


def accurate_norm(tensor: torch.Tensor) -> torch.Tensor:
    """The L2 norm of ``tensor`` as a 0-d tensor on its device: finite for finite entries
    whenever the norm itself is representable in the result's dtype.

    float16/bfloat16/float32 entries are accumulated in float64 (the square of float32's
    largest number, 1.2e77, and of its smallest, 2e-90, are both comfortably inside float64);
    float64 tensors, and every tensor on a device without float64 (MPS), are divided by their
    largest entry first. A sparse tensor's stored values are used (COO, and the compressed
    layouts CSR/CSC/BSR/BSC). The result is float64 (float32 on MPS); ``inf`` if an entry is
    infinite, ``nan`` if an entry is ``nan``, and also ``inf`` when finite entries have a norm
    beyond the result's largest number (float64: ``1.8e308``, e.g. 10 entries of ``1.7e308``;
    float32 on MPS: ``3.4e38``). Example: 100 entries of ``1e20`` give ``1e21``, 100 of
    ``1e-26`` give ``1e-25``.

    Raises:
        TypeError: if ``tensor`` is not a floating-point tensor.
    """
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        what = (f"dtype {tensor.dtype}" if isinstance(tensor, torch.Tensor)
                else type(tensor).__name__)
        raise TypeError(f"tensor must be a floating-point torch.Tensor, got {what}")
    t = _stored_values(tensor.detach())
    capable = _float64_capable(t.device)
    if t.numel() == 0:
        return torch.zeros((), dtype=torch.float64 if capable else torch.float32,
                           device=t.device)
    if t.dtype != torch.float64 and capable:
        return torch.linalg.vector_norm(t, dtype=torch.float64)
    return _scaled_norm(t.float() if t.dtype in _LOW_PRECISION else t)


def _stored_values(t: torch.Tensor) -> torch.Tensor:
    """A sparse tensor's stored values (COO coalesced first, so duplicates add up; CSR, CSC, BSR,
    BSC as stored); a strided tensor itself. The norm of the values is the tensor's norm."""
    if t.is_sparse:
        return t.coalesce().values()
    if t.layout in _COMPRESSED:
        return t.values()
    return t


def _exact_norm(t: torch.Tensor) -> float:
    """One tensor's L2 norm as a Python float, right for every finite entry."""
    return float(accurate_norm(t))


def _settle(values: list[float], tensors: Sequence[torch.Tensor],
            limits: Sequence[float]) -> list[float]:
    """Replace every fast norm that may have overflowed or underflowed by the exact one.

    A non-finite fast norm is kept only if the tensor itself holds a non-finite entry (decided by
    ``torch.isfinite`` on the entries); otherwise the entries are finite and the norm is
    recomputed exactly. ``limits`` come from :func:`_reliable_limits`.
    """
    out = list(values)
    for i, (v, limit) in enumerate(zip(values, limits, strict=True)):
        if _reliable(v, limit):
            continue
        t = tensors[i]
        if not math.isfinite(v) and not bool(torch.isfinite(t.detach()).all()):
            continue
        out[i] = _exact_norm(t)
    return out


def tensor_norms(tensors: Sequence[torch.Tensor]) -> list[float]:
    """The L2 norm of each tensor, as Python floats; right for every finite input whose norm is
    representable (see :func:`accurate_norm`).

    One fused reduction on the tensors' device and one transfer to the host; a norm that float32
    could not have computed exactly (a sum of squares that overflowed, once the norm passes about
    ``1.8e19``, or one too small to trust, entries below about ``1e-19``) is recomputed with
    float64 accumulation (scaled by the largest entry on devices without float64). Example: 100
    entries of ``1e20`` give ``1e21``, and 100 entries of ``1e-26`` give ``1e-25`` (a float32
    ``Tensor.norm()`` gives ``inf`` and ``0``).

    Args:
        tensors: any floating tensors (float16, bfloat16, float32, float64; strided or sparse:
            COO, CSR, CSC, BSR, BSC), on one device.

    Returns:
        One norm per tensor; ``inf`` or ``nan`` exactly when the tensor has an ``inf`` or ``nan``
        entry. Never raises because of the values.

    Raises:
        TypeError: if ``tensors`` is a single tensor rather than a sequence of them, or an item
            is not a floating-point tensor.
    """
    if isinstance(tensors, torch.Tensor):
        raise TypeError("tensor_norms takes a sequence of tensors; for one tensor use "
                        "tensor_norm(t) (or pass [t])")
    ts = list(tensors)
    for i, t in enumerate(ts):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            what = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"tensors[{i}] must be a floating-point tensor, got {what}")
    if not ts:
        return []
    ts = [_stored_values(t.detach()) for t in ts]
    fast = _fast_norms(ts)
    return _settle(fast.tolist(), ts, _reliable_limits(ts))


def tensor_norm(tensor: torch.Tensor) -> float:
    """The L2 norm of one tensor, right for every finite entry (see :func:`tensor_norms`)."""
    return tensor_norms([tensor])[0]


def combined_norm(norms: Sequence[float]) -> float:
    """The norm of several tensors together, ``sqrt(Σ ‖t_i‖²)``, from their separate norms.

    Computed with ``math.hypot`` (scaled, in float64), so it neither overflows nor underflows for
    finite inputs. ``nan`` if any norm is ``nan``, else ``inf`` if any is ``inf``.

    Raises:
        TypeError: if ``norms`` is a string or holds something that is not a number.
        ValueError: for a negative norm.
    """
    if isinstance(norms, (str, bytes)):
        raise TypeError(f"norms must be a sequence of numbers, got the string {norms!r}")
    values = []
    for i, n in enumerate(norms):
        if isinstance(n, (str, bytes, bool)):
            raise TypeError(f"norms[{i}] must be a number, got {n!r}")
        values.append(float(n))
    negative = [v for v in values if v < 0]
    if negative:
        raise ValueError(f"a norm cannot be negative, got {negative[0]!r}")
    if any(math.isnan(v) for v in values):
        return math.nan
    return math.hypot(*values)


def as_float64(tensor: torch.Tensor) -> torch.Tensor:
    """A detached float64 copy to accumulate in (on the CPU if the device has no float64, MPS).

    Every entry of a float16/bfloat16/float32 tensor squares to a finite, nonzero float64, so
    sums of squares, variances and norms computed from this copy neither overflow nor underflow.
    """
    t = tensor.detach()
    if not _float64_capable(t.device):
        t = t.cpu()
    return t.to(torch.float64)


def float64_statistics(tensor: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of all entries, accumulated in float64 (no overflow).

    The standard deviation is ``nan`` for a single entry.

    Raises:
        ValueError: for an empty tensor (it has no mean).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.numel() == 0:
        raise ValueError(f"float64_statistics needs at least one entry, got shape "
                         f"{tuple(tensor.shape)}")
    t = as_float64(tensor)
    return float(t.mean()), float(t.std()) if t.numel() > 1 else math.nan


def _exact_norms_on_device(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each tensor's L2 norm, right for every finite entry, computed without leaving the device.

    float64 accumulation in one fused call where the device has float64 and no input is float64;
    otherwise each tensor is divided by its largest entry first. Used where a host round trip per
    step would cost a device sync (``train(record_every > 1)``).
    """
    ts = [t.detach() for t in tensors]
    if _float64_capable(ts[0].device) and all(t.dtype != torch.float64 for t in ts):
        return torch.stack(torch._foreach_norm(ts, 2, dtype=torch.float64))
    return torch.stack([accurate_norm(t) for t in ts])


def _scaled_norm(t: torch.Tensor) -> torch.Tensor:
    """``max|t| · ‖t / max|t|‖`` as a 0-d tensor: no overflow or underflow for finite entries."""
    peak = t.abs().amax() if t.numel() else t.new_zeros(())
    usable = torch.isfinite(peak) & (peak > 0)
    scaled = torch.linalg.vector_norm(t / torch.where(usable, peak, torch.ones_like(peak)))
    return torch.where(usable, peak * scaled, peak)
