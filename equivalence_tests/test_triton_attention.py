"""Our Triton FlashAttention kernel against the float64 reference: outputs, LSE and every gradient.

Without CUDA the kernel runs under Triton's interpreter (``conftest.py`` sets ``TRITON_INTERPRET=1``
before anything imports it), on small shapes that still span several 32-wide tiles and end in partial
ones. The oracle is the float64 NumPy reference (``reference.flash_attention_forward`` for the
FlashAttention interface, ``reference.attention_forward`` for SDPA's); the bound is the project's rule
(``triad.tolerance.low_precision_bound``) with plain torch attention in the same dtype as the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

pytest.importorskip("triton", reason="needs the [triton] extra")

from reference import (
    attention_backward,
    attention_forward,
    causal_mask,
    flash_attention_backward,
    flash_attention_forward,
)
from torch_impl.kernels import BUILTIN_KERNELS, TORCH_DTYPES, KernelNotFoundError, resolve_kernel
from torch_impl.triton_attention import INTERPRETED, attention, triton_flash_attention, triton_sdpa
from triad.tolerance import low_precision_bound, max_abs_err

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(DEVICE == "cpu" and not INTERPRETED,
                                reason="no CUDA and Triton's interpreter is off (TRITON_INTERPRET=1 unset)")


@dataclass(frozen=True)
class FlashCase:
    B: int
    H: int
    Hkv: int
    Lq: int
    Lk: int
    d: int
    causal: bool = False
    window: tuple[int, int] = (-1, -1)
    softcap: float = 0.0
    logit_scale: float = 1.0  # multiplies q, so that softcap bends the scores

    def __str__(self) -> str:
        return (f"B{self.B}-H{self.H}:{self.Hkv}-Lq{self.Lq}-Lk{self.Lk}-d{self.d}"
                f"{'-causal' if self.causal else ''}-w{self.window[0]}:{self.window[1]}-cap{self.softcap:g}")


def _visible(case: FlashCase) -> torch.Tensor:
    """(Lq, Lk) FlashAttention's keep-mask: bottom-right causal and window."""
    left, right = case.window[0], 0 if case.causal else case.window[1]
    i = torch.arange(case.Lq)[:, None] + case.Lk - case.Lq  # (Lq, 1) the anchor of each query
    j = torch.arange(case.Lk)[None, :]  # (1, Lk)
    keep = torch.ones(case.Lq, case.Lk, dtype=torch.bool)  # (Lq, Lk)
    if left >= 0:
        keep &= j >= i - left
    if right >= 0:
        keep &= j <= i + right
    return keep


def torch_flash_baseline(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, case: FlashCase) -> torch.Tensor:
    """Plain dense torch attention in the inputs' dtype, (B, L, H, d) layout: the rule's baseline."""
    group = case.H // case.Hkv
    q_, k_, v_ = (x.transpose(1, 2) for x in (q, k, v))  # (B, H or Hkv, L, d)
    k_, v_ = k_.repeat_interleave(group, 1), v_.repeat_interleave(group, 1)  # (B, H, Lk, d)
    scores = q_ @ k_.transpose(-1, -2) / math.sqrt(case.d)  # (B, H, Lq, Lk)
    if case.softcap > 0:
        scores = case.softcap * torch.tanh(scores / case.softcap)
    keep = _visible(case).to(q.device)  # (Lq, Lk)
    scores = scores.masked_fill(~keep, float("-inf"))
    probs = torch.softmax(scores, -1).nan_to_num(0.0)  # (B, H, Lq, Lk), rows with no key: 0
    return (probs @ v_).transpose(1, 2)  # (B, Lq, H, d)


def _inputs(case: FlashCase, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"q": case.logit_scale * rng.standard_normal((case.B, case.Lq, case.H, case.d)),
            "k": rng.standard_normal((case.B, case.Lk, case.Hkv, case.d)),
            "v": rng.standard_normal((case.B, case.Lk, case.Hkv, case.d)),
            "dout": rng.standard_normal((case.B, case.Lq, case.H, case.d))}


def _run(fn, arrays: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """fn(q, k, v) -> out or (out, lse) on dtype-rounded inputs; out, lse and the gradients as float64."""
    q, k, v = (torch.tensor(arrays[n], dtype=TORCH_DTYPES[dtype], device=DEVICE, requires_grad=True)
               for n in ("q", "k", "v"))
    result = fn(q, k, v)
    out, lse = result if isinstance(result, tuple) else (result, None)
    out.backward(torch.tensor(arrays["dout"], dtype=out.dtype, device=DEVICE))
    values = {"out": out, "dq": q.grad, "dk": k.grad, "dv": v.grad}
    if lse is not None:
        values["lse"] = lse
    return {name: x.detach().double().cpu().numpy() for name, x in values.items()}


def _rounded(arrays: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    return {n: torch.tensor(x).to(TORCH_DTYPES[dtype]).double().numpy() for n, x in arrays.items()}


def term_magnitudes(arrays: dict[str, np.ndarray], layout: str = "BLHd") -> dict[str, float]:
    """The size of the terms each result sums (its rounding scale), even where the sum cancels to 0.

    dQ_i = s Σ_j P_ij (dP_ij − D_i) k_j with dP = dO Vᵀ and |D_i| <= max |dP| (P sums to 1): terms up to
    2 s max|dP| |k|; dK alike with q; dV_j = Σ_i P_ij dO_i: |dO|; out: |v|; lse: 1.
    """
    peak = {name: float(np.max(np.abs(x), initial=0.0)) for name, x in arrays.items()}
    dout, v = (arrays[n] if layout == "BHLd" else np.swapaxes(arrays[n], 1, 2) for n in ("dout", "v"))  # (B, H, L, .)
    v = np.repeat(v, dout.shape[1] // v.shape[1], axis=1)  # (B, H, Lk, d_v)
    dscores = 2.0 * float(np.max(np.abs(dout @ np.swapaxes(v, -1, -2)), initial=0.0)) / np.sqrt(arrays["q"].shape[-1])
    return {"out": peak["v"], "lse": 1.0, "dv": peak["dout"], "dq": dscores * peak["k"], "dk": dscores * peak["q"]}


def assert_agree(actual: dict[str, np.ndarray], baseline: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                 dtype: str, keys: int, terms: dict[str, float]) -> None:
    """Each tensor within the rule: 2 x the baseline's error + a floor of ulps at its magnitude and sqrt(keys)."""
    for name, want in expected.items():
        got, base = actual[name], baseline.get(name, want)
        if name == "lse":  # rows that see no key: -inf in both; elsewhere compared as the others
            assert np.array_equal(np.isneginf(got), np.isneginf(want)), "lse: -inf rows differ"
            got, base, want = (np.where(np.isneginf(want), 0.0, x) for x in (got, base, want))
        magnitude = max(float(np.max(np.abs(want), initial=0.0)), terms[name])
        bound = low_precision_bound(max_abs_err(base, want), magnitude, dtype, reduction=keys)
        err = max_abs_err(got, want)
        worst = np.unravel_index(np.argmax(np.abs(got - want)), want.shape) if want.size else ()
        assert err <= bound, (f"{name}: max |error| {err:.3e} at {tuple(int(i) for i in worst)} "
                              f"(got {got[worst]:.6g}, expected {want[worst]:.6g}), allowed {bound:.3e}")


def _flash_reference(arrays: dict[str, np.ndarray], case: FlashCase) -> dict[str, np.ndarray]:
    out, lse, cache = flash_attention_forward(arrays["q"], arrays["k"], arrays["v"], causal=case.causal,
                                              window_size=case.window, softcap=case.softcap)
    dq, dk, dv = flash_attention_backward(arrays["dout"], cache)
    return {"out": out, "lse": lse, "dq": dq, "dk": dk, "dv": dv}


def check_flash_case(case: FlashCase, dtype: str, seed: int = 0) -> None:
    arrays = _rounded(_inputs(case, seed), dtype)  # float64 values representable in dtype

    def kernel(q, k, v):  # type: ignore[no-untyped-def]
        return triton_flash_attention(q, k, v, causal=case.causal, window_size=case.window, softcap=case.softcap,
                                      return_lse=True)

    actual = _run(kernel, arrays, dtype)
    baseline = _run(lambda q, k, v: torch_flash_baseline(q, k, v, case), arrays, dtype)
    assert_agree(actual, baseline, _flash_reference(arrays, case), dtype, case.Lk, term_magnitudes(arrays))


# Small shapes, each several 32-wide tiles with a partial last one (the interpreter's tile size).
FLASH_CASES = [
    FlashCase(B=2, H=2, Hkv=2, Lq=37, Lk=70, d=40),  # Lq < Lk, tails, d not a power of two
    FlashCase(B=1, H=2, Hkv=2, Lq=20, Lk=45, d=64, causal=True),  # bottom-right causal, Lq < Lk
    FlashCase(B=1, H=2, Hkv=1, Lq=45, Lk=20, d=16, causal=True),  # Lq > Lk: 25 rows see no key; MQA
    FlashCase(B=1, H=4, Hkv=2, Lq=33, Lk=33, d=80),  # GQA 2:1, d = 80 (padded to 128)
    FlashCase(B=1, H=2, Hkv=2, Lq=70, Lk=70, d=16, window=(8, 5)),  # window: whole key tiles skipped
    FlashCase(B=1, H=2, Hkv=2, Lq=66, Lk=66, d=16, causal=True, window=(20, -1)),  # causal sliding window
    FlashCase(B=1, H=2, Hkv=2, Lq=40, Lk=10, d=16, window=(0, 0)),  # 30 rows whose window misses every key
    FlashCase(B=1, H=3, Hkv=3, Lq=35, Lk=50, d=32, softcap=2.0, logit_scale=4.0),  # softcap where tanh bends
]


@pytest.mark.parametrize("case", FLASH_CASES, ids=str)
def test_triton_flash_attention_agrees_with_the_float64_reference_in_float32(case: FlashCase) -> None:
    check_flash_case(case, "float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_triton_flash_attention_agrees_in_low_precision(dtype: str) -> None:
    check_flash_case(FlashCase(B=1, H=4, Hkv=2, Lq=40, Lk=50, d=32, causal=True, window=(24, -1), softcap=5.0,
                               logit_scale=2.0), dtype)


@pytest.mark.parametrize(("Lq", "Lk", "d", "d_v"), [(20, 45, 24, 40), (45, 20, 64, 64)])
def test_triton_sdpa_top_left_causal_agrees_with_the_reference(Lq: int, Lk: int, d: int, d_v: int) -> None:
    rng = np.random.default_rng(1)
    # SDPA's layout (B, H, L, d), q as a transposed view; k, v with 2 heads for 4 query heads (enable_gqa)
    arrays = _rounded({"q": rng.standard_normal((2, Lq, 4, d)).transpose(0, 2, 1, 3),
                       "k": rng.standard_normal((2, 2, Lk, d)), "v": rng.standard_normal((2, 2, Lk, d_v)),
                       "dout": rng.standard_normal((2, 4, Lq, d_v))}, "float32")
    out, cache = attention_forward(arrays["q"], arrays["k"], arrays["v"], causal_mask(Lq, Lk), enable_gqa=True)
    dq, dk, dv = attention_backward(arrays["dout"], cache)
    actual = _run(lambda q, k, v: triton_sdpa(q, k, v, is_causal=True, enable_gqa=True), arrays, "float32")
    baseline = _run(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=True, enable_gqa=True), arrays, "float32")
    assert_agree(actual, baseline, {"out": out, "dq": dq, "dk": dk, "dv": dv}, "float32", Lk,
                 term_magnitudes(arrays, "BHLd"))


def test_triton_gradients_are_deterministic() -> None:
    """No atomics: two runs give the same bits (dK/dV of a GQA group summed in one program, in order)."""
    case = FlashCase(B=1, H=4, Hkv=1, Lq=40, Lk=40, d=16)
    arrays = _rounded(_inputs(case, 3), "float32")
    first, second = (_run(lambda q, k, v: triton_flash_attention(q, k, v), arrays, "float32") for _ in range(2))
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def test_triton_sdpa_declines_what_it_does_not_support() -> None:
    q = torch.randn(1, 2, 8, 16, device=DEVICE)
    with pytest.raises(NotImplementedError, match="attn_mask is not supported"):
        triton_sdpa(q, q, q, attn_mask=torch.ones(8, 8, dtype=torch.bool, device=DEVICE))
    with pytest.raises(NotImplementedError, match="dropout is not supported"):
        triton_sdpa(q, q, q, dropout_p=0.1)
    with pytest.raises(NotImplementedError, match="float64 is not"):
        triton_sdpa(q.double(), q.double(), q.double())
    wide = torch.randn(1, 1, 4, 300, device=DEVICE)
    with pytest.raises(NotImplementedError, match="head dims up to 256"):
        triton_sdpa(wide, wide, wide)


def test_triton_declines_cpu_tensors_when_the_interpreter_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "INTERPRETED", False)
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(NotImplementedError, match="TRITON_INTERPRET=1"):
        triton_sdpa(q, q, q)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"window_size": (-2, 0)}, "window_size: expected a pair of ints >= -1"),
    ({"window_size": 3}, "window_size: expected a pair"),
    ({"softcap": -1.0}, "softcap: expected a finite number >= 0"),
    ({"softcap": float("inf")}, "softcap: expected a finite number >= 0"),
])
def test_triton_flash_attention_rejects_bad_options(kwargs: dict, message: str) -> None:
    q = torch.randn(1, 8, 2, 16, device=DEVICE)
    with pytest.raises(ValueError, match=message):
        triton_flash_attention(q, q, q, **kwargs)


def test_triton_rejects_bad_shapes() -> None:
    q = torch.randn(1, 3, 8, 16, device=DEVICE)
    kv = torch.randn(1, 2, 8, 16, device=DEVICE)
    with pytest.raises(ValueError, match="k, v: expected a number of heads dividing q's 3, got 2"):
        triton_sdpa(q, kv, kv, enable_gqa=True)
    with pytest.raises(ValueError, match=r"or enable_gqa=True"):
        triton_sdpa(q, kv[:, :1], kv[:, :1])
    with pytest.raises(ValueError, match=r"k: expected BHLd \(1, 2, 8, 16\)"):
        triton_sdpa(q, kv[..., :8], kv, enable_gqa=True)


def test_triton_is_a_builtin_kernel_or_absent_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_kernel("triton") is BUILTIN_KERNELS["triton"]
    monkeypatch.delitem(BUILTIN_KERNELS, "triton")
    with pytest.raises(KernelNotFoundError, match=r"needs the \[triton\] extra: pip install"):
        resolve_kernel("triton")


def test_triad_verify_passes_triton() -> None:
    from triad.verify.api import verify_attention

    report = verify_attention("triton", device=DEVICE, max_examples=3, seed=0)
    assert report.verdict == "verified", report.message or report.failure


GPU_CASES = [
    FlashCase(B=2, H=8, Hkv=2, Lq=1000, Lk=1000, d=128, causal=True),
    FlashCase(B=1, H=8, Hkv=1, Lq=700, Lk=1500, d=64, window=(256, 0), softcap=30.0, logit_scale=3.0),
    FlashCase(B=2, H=4, Hkv=4, Lq=513, Lk=257, d=96),
    FlashCase(B=1, H=2, Hkv=2, Lq=300, Lk=300, d=256, causal=True),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("case", GPU_CASES, ids=str)
def test_triton_flash_attention_agrees_on_cuda_at_larger_shapes(case: FlashCase, dtype: str) -> None:
    check_flash_case(case, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_triad_verify_passes_triton_on_cuda(dtype: str) -> None:
    from triad.verify.api import verify_attention

    report = verify_attention("triton", device="cuda", dtype=dtype, max_examples=50, seed=0)
    assert report.verdict == "verified", report.message or report.failure


def _bench_rows(L: int, device: str = DEVICE) -> list:
    from triad.bench.grid import Case, DeviceGrid, Grid, Shape
    from triad.bench.runner import run_case

    grid = Grid("quick", ("triton",), (DeviceGrid(device, ("float32",), (16,), (L,), tokens=L, width=16,
                                                  matmul_sizes=(16,), budget_s=60.0),), rounds=25, warmup=1)
    return run_case(resolve_kernel("triton"), Case("triton", device, "float32", Shape(1, 1, L, 16), False), grid, 0)


@pytest.mark.skipif(DEVICE != "cpu", reason="the CPU's declined rows")
def test_triad_bench_reports_triton_on_cpu_as_unsupported_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _bench_rows(128)  # under the interpreter: longer than the declared 65
    assert {r.status for r in rows} == {"unsupported"} and "declares lengths up to 65" in rows[0].message
    monkeypatch.setattr(attention, "INTERPRETED", False)
    rows = _bench_rows(16)
    assert {r.status for r in rows} == {"unsupported"} and "TRITON_INTERPRET=1" in rows[0].message


@pytest.mark.gpu
def test_triad_bench_times_triton_on_cuda() -> None:
    rows = _bench_rows(1024, "cuda")
    assert {r.status for r in rows} == {"ok"}, [r.message for r in rows]
