"""Run a grid: for each case, fresh random inputs, the output checked against the reference, then every mode timed.

A case ends in one status per mode, never in a crash:

==============  ===========================================================================
``ok``          timed; the row has ms, TFLOP/s, share of the matmul peak, peak memory
``unsupported`` the kernel declares it does not run this device, dtype, head dim, causal mask or
                backward (``triad_support``; the reference is CPU float32/64 only) or declines it
                at run time (a pinned SDPA backend with no kernel for the case,
                ``NotImplementedError``)
``oom``         out of memory (CUDA or host) while checking or timing
``wrong``       the output disagrees with the float64 reference: reported, not timed
``error``       anything else the kernel raised (the message is kept)
``skipped``     the device's time budget was spent before the case started
==============  ===========================================================================

**The check.** The kernel runs on the full inputs; its output on a few rows (first and last batch
element and head; the first and the last ``CHECK_ROWS // 2`` queries, so both ends of a causal mask are
seen, and ``CHECK_ROWS`` evenly spaced queries between them) is compared with the float64 NumPy
reference on the same (dtype-rounded) inputs, against the project's one rule
(``triad.tolerance.low_precision_bound``, the verifier's floor for any kernel) with the plain-torch
``scratch`` kernel in the same dtype as the baseline. Checking a few rows, not the whole output, keeps
the float64 check cheap at L = 16k (no (L, L) matrix, no full copy to the host); ``triad verify`` is
the thorough check.

**GQA.** A case with ``group > 1`` gives k and v ``H / group`` heads and calls the kernel with
``enable_gqa=True`` (SDPA's keyword); a kernel whose signature takes no ``enable_gqa`` keyword (nor
``**kwargs``) cannot express the case and its rows are ``unsupported``. The check pairs query head ``h``
with K/V head ``h // group``, FlashAttention's mapping, and checks a middle query head too (the first and
the last head cannot tell it from the wrong ``h % Hkv``).
"""

from __future__ import annotations

import inspect
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

import numpy as np
import torch

from reference.attention import attention_forward
from torch_impl.kernels import TORCH_DTYPES, Kernel, resolve_kernel
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from triad.bench.flops import FLOP_CONVENTION, MODES, attention_flops
from triad.bench.grid import Case, Grid
from triad.bench.measure import Timing, matmul_peak_tflops, peak_memory_bytes, time_rounds, uses_tf32_ceiling
from triad.bench.report import finite_report
from triad.tolerance import KERNEL_LOGIT_FLOOR_FACTOR, attention_magnitudes, low_precision_bound, max_abs_err
from triad.verify.support import KernelSupport, declared_support, is_declined

CHECK_ROWS = 16
STATUSES = ("ok", "unsupported", "oom", "wrong", "error", "skipped")


@dataclass
class Row:
    """One kernel x device x dtype x shape x causal x mode: what the table, the JSON and the plot show."""

    kernel: str
    device: str
    dtype: str
    B: int
    H: int
    Lq: int
    Lk: int
    d_head: int
    causal: bool
    mode: str
    status: str
    message: str = ""
    median_ms: float | None = None
    p20_ms: float | None = None
    p80_ms: float | None = None
    rounds: int = 0
    flops: float = 0.0
    tflops: float | None = None
    matmul_peak_tflops: float | None = None
    peak_share: float | None = None  # tflops / matmul_peak_tflops
    above_peak: bool = False  # tflops above the measured matmul peak: a broken measurement
    peak_memory_bytes: int | None = None
    speedup_over_cpu: float | None = None  # on a CUDA row: the CPU row's median / this median
    check_err: float | None = None  # relative to mu: the output's worst error against the float64 reference
    check_bound: float | None = None  # relative to mu: what the rule allows
    Hkv: int | None = None  # K/V heads (GQA: H / Hkv query heads share one); None in a hand-made row: H
    matmul_peak_tf32: bool = False  # the row is compared with the TF32-on matmul peak (CUDA float32)

    def key(self) -> tuple[Any, ...]:
        """Everything but the device: rows with equal keys are the same work on two devices."""
        return (self.kernel, self.dtype, self.B, self.H, self.Hkv, self.Lq, self.Lk, self.d_head, self.causal,
                self.mode)


class WrongOutputError(Exception):
    def __init__(self, err: float, bound: float) -> None:
        super().__init__(f"output off the float64 reference by {err:.2e} (relative), allowed {bound:.2e}")
        self.err, self.bound = err, bound


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def _check_index(n: int, ends: int, middle: int = 0) -> np.ndarray:
    """The first and the last ``ends`` of ``range(n)`` and ``middle`` evenly spaced between, each once."""
    spaced = np.linspace(0, n - 1, middle + 2).round().astype(int)[1:-1] if n > 0 else np.arange(0)
    return np.unique(np.concatenate([np.arange(min(ends, n)), spaced, np.arange(max(n - ends, 0), n)]))


def check_output(out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                 dtype: str) -> tuple[float, float]:
    """Relative (to mu) error of ``out`` on a few rows against the float64 reference, and the rule's bound.

    The rows: the first and last batch element, the first and last head, the first and last
    ``CHECK_ROWS // 2`` queries and ``CHECK_ROWS`` evenly spaced between them (all keys), so a tile in the
    middle is seen too. Raises ``WrongOutputError`` when the error is above the bound.
    """
    B, H, L, Lk = q.shape[0], q.shape[1], q.shape[-2], k.shape[-2]
    rows = _check_index(L, CHECK_ROWS // 2, CHECK_ROWS)

    group = H // k.shape[1]
    # the query heads checked (GQA: one in the middle too, where h // group and h % Hkv differ); K/V head
    # h // group serves query head h
    heads = _check_index(H, 1, 1 if group > 1 else 0)

    def pick(x: torch.Tensor, queries: np.ndarray | None = None) -> torch.Tensor:
        head_index = heads if x.shape[1] == H else heads // group
        index = [torch.as_tensor(i, device=x.device) for i in (_check_index(B, 1), head_index)]
        x = x.index_select(0, index[0]).index_select(1, index[1])  # (b, h, L, d)
        return x if queries is None else x.index_select(2, torch.as_tensor(queries, device=x.device))  # (b, h, R, d)

    keep = np.tril(np.ones((L, Lk), dtype=bool))[rows] if causal else None  # (R, Lk), top-left
    q_rows, k_picked, v_picked = pick(q, rows), pick(k), pick(v)
    expected, cache = attention_forward(q_rows.double().cpu().numpy(), k_picked.double().cpu().numpy(),
                                        v_picked.double().cpu().numpy(), keep)  # (b, h, R, d)
    mask = None if keep is None else torch.as_tensor(keep, device=q.device)
    baseline = scratch_sdpa(q_rows, k_picked, v_picked, mask).double().cpu().numpy()  # (b, h, R, d)
    actual = pick(out, rows).double().cpu().numpy()  # (b, h, R, d)
    magnitudes = attention_magnitudes(np.ones_like(expected), cache)
    mu = max(magnitudes["out"], float(np.max(np.abs(expected))))
    err = max_abs_err(actual, expected)
    bound = low_precision_bound(max_abs_err(baseline, expected), mu, dtype, magnitudes["logit_magnitude"],
                                KERNEL_LOGIT_FLOOR_FACTOR, magnitudes["out_underflow"], magnitudes["out_reduction"])
    if not err <= bound:
        raise WrongOutputError(err / mu, bound / mu)
    return err / mu, bound / mu


@dataclass
class Inputs:
    """Fresh random q, k, v (leaves that require grad) and the upstream gradient dout, all (B, H, L, d)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    dout: torch.Tensor

    def clear_grads(self) -> None:
        self.q.grad = self.k.grad = self.v.grad = None


def random_inputs(case: Case, seed: int) -> Inputs:
    """Standard normal inputs on the case's device and dtype (never zeros: a kernel could shortcut them)."""
    shape, device = case.shape, case.device
    generator = torch.Generator(device=device).manual_seed(seed)

    def randn(heads: int) -> torch.Tensor:
        return torch.randn(shape.B, heads, shape.L, shape.d_head, generator=generator, device=device,
                           dtype=TORCH_DTYPES[case.dtype])  # (B, heads, L, d)

    q, k, v = (randn(heads).requires_grad_() for heads in (shape.H, shape.Hkv, shape.Hkv))
    return Inputs(q, k, v, randn(shape.H))


def gqa_keywords(inputs: Inputs) -> dict[str, bool]:
    """``{"enable_gqa": True}`` when k and v have fewer heads than q (a GQA case), else nothing."""
    return {"enable_gqa": True} if inputs.k.shape[1] != inputs.q.shape[1] else {}


def accepts_gqa(kernel: Kernel) -> bool:
    """Whether ``kernel`` takes SDPA's ``enable_gqa`` keyword (or any keyword); True when Python cannot tell."""
    try:
        parameters = inspect.signature(kernel).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "enable_gqa" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def mode_call(kernel: Kernel, inputs: Inputs, causal: bool, mode: str) -> Callable[[], None]:
    """The call one timed round of ``mode`` makes; clear the gradients (``inputs.clear_grads``) before each.

    ``fwd`` is the training forward: autograd records the graph and the kernel saves what its backward
    needs (a flash kernel its log-sum-exp, the math path its probabilities), then the graph is dropped, so
    that ``fwd`` and ``bwd`` add up to ``fwd+bwd`` (FLOPs 1 + 2.5 = 3.5); ``bwd`` builds the graph once,
    here, and each call runs ``backward(dout, retain_graph=True)`` on it; ``fwd+bwd`` runs both.
    """
    q, k, v, dout = inputs.q, inputs.k, inputs.v, inputs.dout
    keywords = gqa_keywords(inputs)
    if mode == "fwd":
        def call() -> None:
            kernel(q, k, v, is_causal=causal, **keywords)
    elif mode == "bwd":
        out = kernel(q, k, v, is_causal=causal, **keywords)  # (B, H, L, d), its graph kept for every round

        def call() -> None:
            out.backward(dout, retain_graph=True)
    elif mode == "fwd+bwd":
        def call() -> None:
            kernel(q, k, v, is_causal=causal, **keywords).backward(dout)
    else:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    return call


def checked_inputs(kernel: Kernel, case: Case, seed: int) -> tuple[Inputs, tuple[float, float]]:
    """Fresh inputs, and the kernel's forward on them checked against the reference ((error, bound), relative).

    Raises ``WrongOutputError`` (or whatever the kernel raises) instead of returning a kernel worth timing.
    """
    inputs = random_inputs(case, seed)
    with torch.no_grad():
        out = kernel(inputs.q, inputs.k, inputs.v, is_causal=case.causal, **gqa_keywords(inputs))  # (B, H, L, d)
    check = check_output(out, inputs.q.detach(), inputs.k.detach(), inputs.v.detach(), case.causal, case.dtype)
    return inputs, check


def _timed_modes(kernel: Kernel, case: Case, modes: tuple[str, ...], rounds: int, warmup: int,
                 seed: int) -> tuple[tuple[float, float], dict[str, tuple[Timing, int | None] | BaseException]]:
    """Check the output, then time each mode and measure its memory; an exception stands in for a mode that
    could not run."""
    inputs, check = checked_inputs(kernel, case, seed)
    results: dict[str, tuple[Timing, int | None] | BaseException] = {}
    for mode in modes:
        try:
            call = mode_call(kernel, inputs, case.causal, mode)
            timing = time_rounds(call, case.device, rounds, warmup, setup=inputs.clear_grads)
            inputs.clear_grads()
            results[mode] = (timing, peak_memory_bytes(call, case.device))
        except (Exception, SystemExit) as exc:  # recorded in the row: a benchmark never crashes on one kernel
            results[mode] = exc.with_traceback(None)  # its frames would keep the failed call's tensors alive
        finally:
            inputs.clear_grads()
            call = None  # type: ignore[assignment]  # frees the bwd graph before the next mode
            if case.device == "cuda":
                torch.cuda.empty_cache()
    return check, results


def exception_status(exc: BaseException) -> str:
    """The row status for what a kernel raised: ``oom``, ``unsupported``, ``wrong`` or ``error``."""
    if _is_oom(exc):
        return "oom"
    if is_declined(exc):
        return "unsupported"
    return "wrong" if isinstance(exc, WrongOutputError) else "error"


def case_row(case: Case, mode: str, status: str, message: str = "") -> Row:
    """A row for ``case`` in ``mode`` with its FLOPs and nothing measured yet."""
    shape = case.shape
    return Row(case.kernel, case.device, case.dtype, shape.B, shape.H, shape.L, shape.L, shape.d_head, case.causal,
               mode, status, message,
               flops=attention_flops(shape.B, shape.H, shape.L, shape.L, shape.d_head, case.causal, mode),
               Hkv=shape.Hkv, matmul_peak_tf32=uses_tf32_ceiling(case.kernel, case.device, case.dtype))


def set_matmul_peak(row: Row, matmul_peak: float | None) -> None:
    """The row's share of the matmul peak (the ceiling its kernel can use: ``row.matmul_peak_tf32``), and the
    flag for a throughput above it (a broken measurement)."""
    row.matmul_peak_tflops = matmul_peak
    if matmul_peak and row.tflops is not None:
        row.peak_share = row.tflops / matmul_peak
        row.above_peak = row.tflops > matmul_peak


def _undeclared(support: KernelSupport, case: Case) -> str:
    """Why the kernel's declaration rules ``case`` out ("" when it does not)."""
    if case.device not in support.devices or case.dtype not in support.dtypes:
        return f"declares devices {support.devices}, dtypes {support.dtypes}"
    if not support.min_head_dim <= case.shape.d_head <= support.max_head_dim:
        return f"declares head dims {support.min_head_dim}-{support.max_head_dim}"
    if case.causal and "is_causal" not in support.masks:
        return f"declares masks {support.masks}, not is_causal"
    if support.max_length is not None and support.max_length < case.shape.L:
        return f"declares lengths up to {support.max_length}"
    return ""


def run_case(kernel: Kernel, case: Case, grid: Grid, seed: int) -> list[Row]:
    """One row per mode of ``grid`` for ``case`` (their matmul peak is set by ``set_matmul_peak``)."""
    row = partial(case_row, case)
    try:
        support = declared_support(kernel)
    except TypeError as exc:  # a malformed triad_support attribute: this kernel's rows say so, the grid goes on
        return [row(m, "error", str(exc)) for m in grid.modes]
    if _undeclared(support, case):
        return [row(m, "unsupported", _undeclared(support, case)) for m in grid.modes]
    if case.shape.group > 1 and not accepts_gqa(kernel):
        return [row(m, "unsupported", "takes no enable_gqa keyword: cannot express GQA") for m in grid.modes]
    modes = grid.modes if support.backward else tuple(m for m in grid.modes if m == "fwd")
    undeclared_modes = [row(m, "unsupported", "declares no backward") for m in grid.modes if m not in modes]
    check: tuple[float | None, float | None] = (None, None)
    try:
        check, results = _timed_modes(kernel, case, modes, grid.rounds, grid.warmup, seed)
    except (Exception, SystemExit) as exc:  # from the untimed check (sys.exit too): one status for every mode
        results = dict.fromkeys(modes, exc.with_traceback(None))
    finally:
        if case.device == "cuda":
            torch.cuda.empty_cache()
    rows = []
    for mode, result in results.items():
        if isinstance(result, BaseException):
            first_line = (str(result).splitlines() or [""])[0][:200]
            r = row(mode, exception_status(result), f"{type(result).__name__}: {first_line}")
            if isinstance(result, WrongOutputError):
                r.check_err, r.check_bound = result.err, result.bound
            rows.append(r)
            continue
        timing, memory = result
        r = row(mode, "ok")
        r.check_err, r.check_bound = check
        r.median_ms, r.p20_ms, r.p80_ms, r.rounds = timing.median_ms, timing.p20_ms, timing.p80_ms, timing.rounds
        r.tflops = r.flops / (timing.median_ms * 1e-3) / 1e12
        r.peak_memory_bytes = memory
        rows.append(r)
    return rows + undeclared_modes


def add_speedups(rows: list[Row]) -> None:
    """On each ok CUDA row, the CPU median over the CUDA median for the same work."""
    cpu = {r.key(): r for r in rows if r.device == "cpu" and r.status == "ok"}
    for r in rows:
        match = cpu.get(r.key())
        if r.device == "cuda" and r.status == "ok" and match is not None and r.median_ms:
            r.speedup_over_cpu = match.median_ms / r.median_ms  # type: ignore[operator]


def reference_over_scratch(rows: list[Row]) -> list[dict[str, Any]]:
    """The NumPy reference's median over scratch's for the same CPU work (issue 5: must stay within 2x)."""
    scratch = {r.key()[1:]: r for r in rows if r.device == "cpu" and r.kernel == "scratch" and r.status == "ok"}
    ratios = []
    for r in rows:
        match = scratch.get(r.key()[1:])
        if r.device == "cpu" and r.kernel == "reference" and r.status == "ok" and match is not None:
            ratios.append({"dtype": r.dtype, "B": r.B, "H": r.H, "L": r.Lq, "d_head": r.d_head, "causal": r.causal,
                           "mode": r.mode, "ratio": r.median_ms / match.median_ms})  # type: ignore[operator]
    return ratios


def _cuda_header() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.split("\n")[0].strip()
    except (OSError, subprocess.SubprocessError):
        driver = None
    capability = ".".join(map(str, torch.cuda.get_device_capability()))
    return {"device": torch.cuda.get_device_name(), "capability": capability,
            "driver": driver, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "tf32": torch.backends.cuda.matmul.allow_tf32}


def _cpu_model() -> str:
    cpuinfo = "/proc/cpuinfo"
    if os.path.exists(cpuinfo):
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_header(grid: Grid) -> dict[str, Any]:
    """The device and software a run measured: stored in the JSON, printed above the table."""
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": grid.name,
        "kernels": list(grid.kernels),
        "rounds": grid.rounds,
        "warmup": grid.warmup,
        "flop_convention": FLOP_CONVENTION,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda": _cuda_header(),
    }


def run_grid(grid: Grid, progress: Callable[[str], None] | None = None, seed: int = 0) -> dict[str, Any]:
    """Measure every case of ``grid``; returns the report: header, matmul peaks, rows, reference/scratch ratios.

    ``progress`` is called with a short label after each case (the CLI's progress bar).
    """
    if any(g.device == "cuda" for g in grid.devices) and not torch.cuda.is_available():
        raise ValueError("grid: has a cuda device grid, but torch.cuda.is_available() is False")
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32: TF32 would be a different dtype
    torch.backends.cudnn.allow_tf32 = False
    kernels = {name: resolve_kernel(name) for name in grid.kernels}

    def measure_peaks() -> dict[tuple[str, str, bool], tuple[float, int]]:
        """Per device and dtype; CUDA float32 twice, TF32 off and on (the two ceilings: see triad.bench.measure)."""
        ceilings = [(g, dtype, tf32) for g in grid.devices for dtype in g.dtypes
                    for tf32 in ((False, True) if g.device == "cuda" and dtype == "float32" else (False,))]
        return {(g.device, dtype, tf32): matmul_peak_tflops(g.device, dtype, g.matmul_sizes, grid.rounds,
                                                            grid.warmup, tf32=tf32) for g, dtype, tf32 in ceilings}

    before = measure_peaks()
    budgets = {g.device: g.budget_s for g in grid.devices}
    started: dict[str, float] = {}
    rows: list[Row] = []
    for index, case in enumerate(grid.cases()):
        started.setdefault(case.device, time.perf_counter())
        if time.perf_counter() - started[case.device] > budgets[case.device]:
            rows += [case_row(case, mode, "skipped", f"time budget of {budgets[case.device]:.0f} s spent")
                     for mode in grid.modes]
        else:
            rows += run_case(kernels[case.kernel], case, grid, seed + index)
        if progress is not None:
            progress(f"{case.kernel} {case.device} {case.dtype} {case.shape.label()}" + (" causal" * case.causal))
    # The peak is what the device can do: measured before and after the cases, the better of the two (one
    # measurement on a machine that is busy for a moment would understate it and flag honest rows).
    after = measure_peaks()
    measured = {key: max(before[key], after[key]) for key in before}
    for r in rows:
        set_matmul_peak(r, measured[(r.device, r.dtype, r.matmul_peak_tf32)][0])
    add_speedups(rows)
    return finite_report({
        "header": machine_header(grid),
        "matmul_peaks": [{"device": device, "dtype": dtype, "tf32": tf32, "n": n, "tflops": tflops}
                         for (device, dtype, tf32), (tflops, n) in measured.items()],
        "rows": [asdict(r) for r in rows],
        "reference_over_scratch": reference_over_scratch(rows),
    })

