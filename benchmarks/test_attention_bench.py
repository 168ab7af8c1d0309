"""The attention core through pytest-benchmark: the cases of a ``triad bench`` preset, every mode.

Each case is built, checked against the float64 reference and timed by the same code as ``triad bench``
(``triad.bench.runner``); pytest-benchmark only does the timing and the bookkeeping. On CUDA the timed
callable ends with ``torch.cuda.synchronize()``, so the time is the GPU's. A kernel that declines a case
(no kernel for it on this device, a declared dtype it lacks) or runs out of memory is skipped with the
reason; one whose output disagrees with the reference fails. An out-of-memory while timing (inside
``benchmark.pedantic``) skips the test too, after the case's tensors and autograd graph are dropped and
the CUDA cache emptied, so that the next cases do not run out of memory in its wake. ``extra_info`` carries the FLOPs
(``triad.bench.flops``), TFLOP/s, peak memory, device and backend; each group is one shape, dtype and mode,
so ``--benchmark-group-by=group`` lines the kernels up against each other.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest
import torch

from torch_impl.kernels import resolve_kernel
from triad.bench.flops import attention_flops
from triad.bench.grid import Case
from triad.bench.measure import peak_memory_bytes, synchronize
from triad.bench.runner import Inputs, accepts_gqa, checked_inputs, exception_status, mode_call
from triad.verify.support import declared_support

ROUNDS, WARMUP = 25, 3
_checked: dict[Case, tuple[Inputs, tuple[float, float]]] = {}  # the last case's inputs, shared by its modes


def _backend(kernel: str, device: str) -> str:
    if kernel == "reference":
        return "NumPy (CPU), hand-written backward"
    if kernel == "scratch":
        return "torch tensor ops, autograd backward"
    if kernel == "native":
        return f"F.scaled_dot_product_attention, PyTorch's dispatch on {device}"
    if kernel.startswith("sdpa-"):
        return f"F.scaled_dot_product_attention pinned to the {kernel.removeprefix('sdpa-')} backend on {device}"
    return f"user kernel {kernel}"


def _inputs(kernel: Any, case: Case) -> tuple[Inputs, tuple[float, float]]:
    """The case's checked inputs, computed once for all its modes; skips what the kernel cannot run."""
    if case not in _checked:
        _checked.clear()
        if case.device == "cuda":
            torch.cuda.empty_cache()
        support = declared_support(kernel)
        if case.device not in support.devices or case.dtype not in support.dtypes:
            pytest.skip(f"{case.kernel} declares devices {support.devices}, dtypes {support.dtypes}")
        if case.shape.group > 1 and not accepts_gqa(kernel):
            pytest.skip(f"{case.kernel} takes no enable_gqa keyword: cannot express GQA")
        try:
            _checked[case] = checked_inputs(kernel, case, seed=0)
        except Exception as exc:
            _skip_or_raise(exc)
    return _checked[case]


def _skip_or_raise(exc: Exception) -> NoReturn:
    """Skip a case the kernel declines or that runs out of memory (results, as in ``triad bench``); raise the rest."""
    status = exception_status(exc)
    if status not in ("unsupported", "oom"):
        raise exc
    pytest.skip(f"{status}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")


def _free(device: str) -> None:
    """Drop the shared inputs (and through them any autograd graph) and hand cached CUDA memory back."""
    _checked.clear()
    if device == "cuda":
        torch.cuda.empty_cache()


def _timed_or_skip_reason(benchmark: Any, timed: Any, setup: Any) -> str:
    """Run ``benchmark.pedantic``; "" when it ran, the skip reason when the kernel ran out of memory (raises
    anything else). The exception and its frames are gone when this returns, so the memory can be freed."""
    try:
        benchmark.pedantic(timed, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    except Exception as exc:
        if exception_status(exc) != "oom":
            raise
        return f"oom: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    return ""


def test_attention(benchmark: Any, case: Case, mode: str) -> None:
    kernel = resolve_kernel(case.kernel)
    inputs, (check_err, check_bound) = _inputs(kernel, case)  # raises WrongOutputError on a wrong kernel
    device = case.device
    try:
        call = mode_call(kernel, inputs, case.causal, mode)
    except Exception as exc:  # the bwd graph is built here: a backward-less kernel or an OOM
        _skip_or_raise(exc)

    def timed() -> None:
        call()
        synchronize(device)

    def setup() -> None:
        inputs.clear_grads()
        synchronize(device)

    shape = case.shape
    benchmark.group = f"{device} {case.dtype} {shape.label()} {'causal' if case.causal else 'full'} {mode}"
    oom = _timed_or_skip_reason(benchmark, timed, setup)
    if oom:
        del call, timed, setup, inputs  # the closures hold the bwd graph and the inputs
        _free(device)
        pytest.skip(oom)
    inputs.clear_grads()
    flops = attention_flops(shape.B, shape.H, shape.L, shape.L, shape.d_head, case.causal, mode)
    median_s = benchmark.stats.stats.median if benchmark.stats is not None else None  # None: --benchmark-disable
    benchmark.extra_info.update({
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "backend": _backend(case.kernel, device),
        "dtype": case.dtype,
        "mode": mode,
        "causal": case.causal,
        "shape": {"B": shape.B, "H": shape.H, "L": shape.L, "d_head": shape.d_head},
        "flops": flops,
        "tflops": None if median_s is None else flops / median_s / 1e12,
        "peak_memory_bytes": peak_memory_bytes(call, device),
        "torch_threads": torch.get_num_threads(),
        "check_err": check_err,
        "check_bound": check_bound,
    })
