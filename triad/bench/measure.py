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

**Two float32 ceilings on CUDA.** float32 work may run on the tensor cores as TF32 (or as 3xTF32, three
TF32 products that together keep float32's accuracy) or on the plain float32 units, 8x or more slower on
an H100. ``allow_tf32`` (off in ``triad bench``) chooses for cuBLAS, but not for every kernel: PyTorch's
mem-efficient attention runs float32 as 3xTF32 on the tensor cores whatever it says, ``native`` dispatches
float32 to it, and a Triton ``tl.dot`` on float32 defaults to TF32. So both ceilings are measured
(``torch.mm`` with TF32 off and on), and each float32 CUDA row is compared with the one its kernel can use:
the TF32-off peak for the kernels known to compute in IEEE float32 through cuBLAS with TF32 off
(``IEEE_FLOAT32_KERNELS``), the TF32-on peak for every other kernel (the higher ceiling: a row's share of
it never exceeds 100 % for an honest measurement, where against the TF32-off peak mem-efficient's can).

**Copy bandwidth** (``copy_bandwidth_gbs``, the memory ceiling the GPU run prints): a device-to-device
copy of a large buffer, counting the bytes read plus the bytes written.
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

# Kernels whose float32 work is IEEE float32 through cuBLAS (TF32 off): their CUDA float32 rows are compared with
# the TF32-off matmul peak; every other kernel's with the TF32-on one (see "Two float32 ceilings" above).
IEEE_FLOAT32_KERNELS = ("reference", "scratch", "sdpa-math")

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


def uses_tf32_ceiling(kernel: str, device: str, dtype: str) -> bool:
    """Whether a row of ``kernel`` is compared with the TF32-on matmul peak (CUDA float32, not IEEE-only)."""
    return device == "cuda" and dtype == "float32" and kernel not in IEEE_FLOAT32_KERNELS


def matmul_peak_tflops(device: str, dtype: str, sizes: tuple[int, ...], rounds: int, warmup: int,
                       seed: int = 0, tf32: bool = False) -> tuple[float, int]:
    """The best TFLOP/s of square matmuls in ``dtype`` on ``device``, and the size that reached it.

    For each ``n`` in ``sizes``: ``torch.mm``, and on the CPU in float32/float64 also NumPy's ``@`` (the
    reference's BLAS, which may differ from torch's); each timed over ``rounds`` and credited with its fastest round.
    ``tf32``: CUDA float32 products with TF32 allowed (the other float32 ceiling); restored afterwards.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    best: tuple[float, int] = (0.0, sizes[0])
    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        for n in sizes:
            a = torch.randn(n, n, generator=generator, device=device, dtype=TORCH_DTYPES[dtype])  # (n, n)
            b = torch.randn(n, n, generator=generator, device=device, dtype=TORCH_DTYPES[dtype])  # (n, n)
            products: list[Callable[[], object]] = [partial(torch.mm, a, b)]
            if device == "cpu" and dtype in ("float32", "float64"):  # NumPy has no bfloat16 (nor a fast float16)
                products.append(partial(np.matmul, a.numpy(), b.numpy()))
            for product in products:
                tflops = matmul_flops(n) / (time_rounds(product, device, rounds, warmup).min_ms * 1e-3) / 1e12
                best = max(best, (tflops, n))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed
    return best


def copy_bandwidth_gbs(device: str, nbytes: int, rounds: int, warmup: int, seed: int = 0) -> float:
    """GB/s of copying a ``nbytes`` buffer into another on ``device`` (bytes read plus written), fastest round."""
    if nbytes < 8:
        raise ValueError(f"nbytes: expected at least 8, got {nbytes}")
    generator = torch.Generator(device=device).manual_seed(seed)
    source = torch.randn(nbytes // 4, generator=generator, device=device)  # (n,) float32, never zeros
    target = torch.empty_like(source)
    timing = time_rounds(partial(target.copy_, source), device, rounds, warmup)
    return 2 * source.numel() * 4 / (timing.min_ms * 1e-3) / 1e9
