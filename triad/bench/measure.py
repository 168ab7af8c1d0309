"""Timing, peak memory and the matmul peak: how each number in a ``triad bench`` row is measured.

**Time.** ``warmup`` untimed calls first (lazy initialisation, cuDNN/flash autotuning, caches),
then ``rounds`` timed calls; the row reports the median and the 20th/80th percentiles in ms.
On CUDA each call is bracketed by CUDA events and the end event is waited on, so the time is
the GPU's; on the CPU by ``time.perf_counter`` (the thread count is in the report header).
A ``setup`` (clearing gradients) runs before each call, outside the timed region.

**Peak memory.** CUDA: the caching allocator's peak (``max_memory_allocated``) during one call,
minus what was allocated before it (the inputs), i.e. the kernel's working memory. CPU: torch's CPU
allocator keeps no statistics and ``tracemalloc`` does not see torch tensors, so we measure the
growth of the process's resident set: free heap memory is first handed back to the OS
(``malloc_trim``), the high-water mark is reset (``/proc/self/clear_refs``), one call runs, and
the row reports ``VmHWM - VmRSS(before)``. Pages the allocator still held from earlier calls are
reused without growing the resident set, so this is a lower bound of the working memory; it is
``None`` where ``/proc`` is not available.

**Matmul peak.** Square ``(n, n) @ (n, n)`` products on the same device and dtype, for a few ``n``,
through ``torch.mm`` and (CPU) NumPy, timed the same way; the best throughput of a *fastest* round is the
peak each row's TFLOP/s is compared with (a peak is what the device can do; on a shared machine a median
or a single size understates it and would flag honest rows as above the peak).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from torch_impl.kernels import TORCH_DTYPES
from triad.bench.flops import matmul_flops

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    min_ms: float
    rounds: int

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> Timing:
        if not samples_ms:
            raise ValueError("samples_ms: expected at least one timed round, got none")
        p20, median, p80 = np.percentile(np.asarray(samples_ms, dtype=np.float64), [20, 50, 80])
        return cls(float(median), float(p20), float(p80), float(min(samples_ms)), len(samples_ms))


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_rounds(fn: Callable[[], object], device: str, rounds: int, warmup: int,
                setup: Callable[[], None] | None = None) -> Timing:
    """Median and 20/80th percentiles of ``rounds`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    synchronize(device)
    samples_ms = []
    for _ in range(rounds):
        if setup is not None:
            setup()
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples_ms.append(start.elapsed_time(end))
        else:
            started = time.perf_counter()
            fn()
            samples_ms.append((time.perf_counter() - started) * 1e3)
    return Timing.from_samples(samples_ms)


def _proc_status_bytes(field: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel writes kB
    raise RuntimeError(f"{_PROC_STATUS} has no {field} line")


def _release_free_heap() -> None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None and hasattr(ctypes.CDLL(libc_name), "malloc_trim"):
        ctypes.CDLL(libc_name).malloc_trim(0)


def peak_memory_bytes(fn: Callable[[], object], device: str) -> int | None:
    """Working memory of one call of ``fn``: the CUDA allocator's peak, or the resident-set growth on CPU."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    if not (_PROC_STATUS.exists() and _PROC_CLEAR_REFS.exists()):
        return None
    _release_free_heap()
    before = _proc_status_bytes("VmRSS")
    _PROC_CLEAR_REFS.write_text("5")  # 5: reset the peak resident set size (VmHWM) to the current one
    fn()
    return max(0, _proc_status_bytes("VmHWM") - before)


def matmul_peak_tflops(device: str, dtype: str, sizes: tuple[int, ...], rounds: int, warmup: int,
                       seed: int = 0) -> tuple[float, int]:
    """The best TFLOP/s of square matmuls in ``dtype`` on ``device``, and the size that reached it.

    For each ``n`` in ``sizes``: ``torch.mm``, and on the CPU also NumPy's ``@`` (the reference's BLAS,
    which may differ from torch's); each timed over ``rounds`` and credited with its fastest round.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    best: tuple[float, int] = (0.0, sizes[0])
    for n in sizes:
        a = torch.randn(n, n, generator=generator, device=device, dtype=TORCH_DTYPES[dtype])  # (n, n)
        b = torch.randn(n, n, generator=generator, device=device, dtype=TORCH_DTYPES[dtype])  # (n, n)
        products: list[Callable[[], object]] = [partial(torch.mm, a, b)]
        if device == "cpu":
            products.append(partial(np.matmul, a.numpy(), b.numpy()))
        for product in products:
            tflops = matmul_flops(n) / (time_rounds(product, device, rounds, warmup).min_ms * 1e-3) / 1e12
            best = max(best, (tflops, n))
    return best
