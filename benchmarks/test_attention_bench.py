"""The attention core through pytest-benchmark: reference, scratch and native; fwd, bwd and fwd+bwd; CPU and CUDA.

Each case is built, checked against the float64 reference and timed by the same code as ``triad bench``
(``triad.bench.runner``); pytest-benchmark only does the timing and the bookkeeping. On CUDA the timed
callable ends with ``torch.cuda.synchronize()``, so the time is the GPU's. ``extra_info`` carries the
FLOPs (``triad.bench.flops``), TFLOP/s, peak memory, device and backend.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from torch_impl.kernels import resolve_kernel
from triad.bench.flops import MODES, attention_flops
from triad.bench.grid import Case, Shape
from triad.bench.measure import peak_memory_bytes, synchronize
from triad.bench.runner import checked_inputs, mode_call

ROUNDS, WARMUP = 25, 3
SHAPES = {"cpu": Shape(B=2, H=4, L=256, d_head=64), "cuda": Shape(B=4, H=16, L=2048, d_head=64)}
DEVICES = [pytest.param("cpu"),
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def _backend(kernel: str, device: str) -> str:
    if kernel == "reference":
        return "NumPy (CPU), hand-written backward"
    if kernel == "scratch":
        return "torch tensor ops, autograd backward"
    return f"F.scaled_dot_product_attention, PyTorch's dispatch on {device}"


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kernel_name", ["reference", "scratch", "native"])
@pytest.mark.parametrize("device", DEVICES)
def test_attention(benchmark: Any, device: str, kernel_name: str, mode: str, causal: bool) -> None:
    if kernel_name == "reference" and device == "cuda":
        pytest.skip("the NumPy reference runs on the CPU only")
    kernel = resolve_kernel(kernel_name)
    case = Case(kernel_name, device, "float32", SHAPES[device], causal)
    inputs, (check_err, check_bound) = checked_inputs(kernel, case, seed=0)  # raises on a wrong kernel
    call = mode_call(kernel, inputs, causal, mode)

    def timed() -> None:
        call()
        synchronize(device)

    def setup() -> None:
        inputs.clear_grads()
        synchronize(device)

    benchmark.pedantic(timed, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    inputs.clear_grads()
    shape = case.shape
    flops = attention_flops(shape.B, shape.H, shape.L, shape.L, shape.d_head, causal, mode)
    benchmark.extra_info.update({
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "backend": _backend(kernel_name, device),
        "dtype": case.dtype,
        "shape": {"B": shape.B, "H": shape.H, "L": shape.L, "d_head": shape.d_head},
        "flops": flops,
        "tflops": flops / benchmark.stats.stats.median / 1e12,
        "peak_memory_bytes": peak_memory_bytes(call, device),
        "torch_threads": torch.get_num_threads(),
        "check_err": check_err,
        "check_bound": check_bound,
    })
