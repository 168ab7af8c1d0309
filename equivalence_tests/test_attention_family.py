"""Today's attention family (GQA, windows, softcap, ALiBi, varlen, the LSE): reference, scratch and native agree.

Native softcap needs FlexAttention's ``score_mod``, and FlexAttention has no backward on the CPU (torch 2.13:
it refuses even the forward when an input requires grad). So on the CPU the softcap properties compare
native's out and LSE with the reference, and the gradients two-way, reference vs scratch: their ids say
``native-fwd-only-cpu``. The gpu-marked tests run the full three-way FlexAttention forward and backward on
CUDA. Eager FlexAttention costs ~0.1-0.3 s a call on the CPU (every native call runs it, for the LSE; the
first call ~10 s), so only the float64 properties without softcap draw the profile's examples, the others a
fifth of them (6 under the ci profile, 200 under thorough).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence_tests.flash_strategies import FlashCase, VarlenCase, flash_cases, varlen_cases
from equivalence_tests.strategies import AttentionCase, attention_cases
from reference.attention import attention_backward, attention_forward
from reference.flash_attention import flash_attention_forward, flash_attention_varlen_forward
from torch_impl.native.attention import scaled_dot_product_attention as native_sdpa
from torch_impl.native.flash_attention import flash_attention as native_flash
from torch_impl.native.flash_attention import flash_attention_varlen as native_flash_varlen
from torch_impl.native.flex_attention import flex_flash_attention, flex_flash_attention_varlen, flex_sdpa
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from torch_impl.scratch.flash_attention import flash_attention as scratch_flash
from torch_impl.scratch.flash_attention import flash_attention_varlen as scratch_flash_varlen
from triad.agreement.attention import run_attention
from triad.agreement.attention_family import (
    FlashProblem,
    comparable_lse,
    flash_magnitudes,
    reference_flash,
    run_flash,
)
from triad.tolerance import F64_REL_BOUND, attention_magnitudes, low_precision_bound, max_abs_err, max_rel_err

IMPLS = {"dense": {"scratch": scratch_flash, "native": native_flash},
         "varlen": {"scratch": scratch_flash_varlen, "native": native_flash_varlen}}
FLEX = {"dense": flex_flash_attention, "varlen": flex_flash_attention_varlen}
SOFTCAPS = st.sampled_from([1.0, 2.5, 5.0, 50.0])  # where tanh bends, and nearly the identity
FEWER = settings(max_examples=max(5, settings.default.max_examples // 5))
# Fixed cases with every feature at once, softcap included (the CUDA tests, and the CPU refusal test).
GPU_CASE = FlashCase(B=2, Lq=77, Lk=130, n_kv=2, n_rep=3, d=64, dv=64, causal=True, window=(40, -1), softcap=5.0,
                     alibi="geometric", softmax_scale=None, seed=12)
GPU_VARLEN = VarlenCase(lengths_q=(30, 0, 1, 47), lengths_k=(50, 9, 1, 40), n_kv=2, n_rep=2, d=64, dv=64,
                        causal=True, window=(-1, -1), softcap=30.0, alibi="random_bh", seed=13)


def problem_of(case: FlashCase | VarlenCase) -> FlashProblem:
    arrays = case.arrays()
    cu_seqlens = case.cu_seqlens() if isinstance(case, VarlenCase) else None
    return FlashProblem(arrays["q"], arrays["k"], arrays["v"], arrays["dout"], case.kwargs(), cu_seqlens)


def draw_case(data: st.DataObject, layout: str, softcap: bool) -> FlashCase | VarlenCase:
    case = data.draw(flash_cases() if layout == "dense" else varlen_cases(), label="case")
    return dataclasses.replace(case, softcap=data.draw(SOFTCAPS, label="softcap") if softcap else 0.0)


def assert_float64_agreement(name: str, actual: dict, expected: dict, magnitudes: dict) -> None:
    actual = comparable_lse(actual, expected)
    for tensor, value in actual.items():
        reference = np.where(np.isneginf(expected[tensor]), 0.0, expected[tensor])
        err = max_rel_err(value, reference, magnitudes[tensor])
        assert err <= F64_REL_BOUND, f"{name} {tensor}: relative error {err:.3e} > {F64_REL_BOUND:g}"


def assert_float32_within_bound(name: str, actual: dict, expected: dict, baseline: dict, magnitudes: dict) -> None:
    """The project's float32 rule: error against the float64 oracle <= 2 x the float32 reference's + the floor."""
    actual, baseline = comparable_lse(actual, expected), comparable_lse(baseline, expected)
    for tensor, value in actual.items():
        reference = np.where(np.isneginf(expected[tensor]), 0.0, expected[tensor])
        mu = max(magnitudes[tensor], float(np.max(np.abs(reference), initial=0.0)))
        allowed = low_precision_bound(max_abs_err(baseline[tensor], reference), mu, "float32", magnitudes["logits"])
        err = max_abs_err(value, reference)
        assert err <= allowed, f"{name} {tensor}: float32 error {err:.3e} > allowed {allowed:.3e}"


@pytest.mark.parametrize("layout", ["dense", "varlen"])
@given(data=st.data())
def test_flash_attention_agrees_across_implementations_float64(layout: str, data: st.DataObject) -> None:
    """GQA/MQA, causal, windows, ALiBi, Lq != Lk, odd d (softcap below): out, LSE, dq, dk, dv three-way."""
    problem = problem_of(draw_case(data, layout, softcap=False))
    expected, magnitudes = reference_flash(problem), flash_magnitudes(problem)
    for name, fn in IMPLS[layout].items():
        assert_float64_agreement(name, run_flash(fn, problem, torch.float64), expected, magnitudes)


@pytest.mark.parametrize("layout", ["dense-native-fwd-only-cpu", "varlen-native-fwd-only-cpu"])
@FEWER
@given(data=st.data())
def test_flash_attention_softcap_agrees_float64(layout: str, data: st.DataObject) -> None:
    """Softcap with everything else: reference vs scratch on out, LSE and gradients; native (FlexAttention's
    score_mod, no backward on the CPU) on out and LSE."""
    layout = layout.split("-")[0]
    problem = problem_of(draw_case(data, layout, softcap=True))
    expected, magnitudes = reference_flash(problem), flash_magnitudes(problem)
    assert_float64_agreement("scratch", run_flash(IMPLS[layout]["scratch"], problem, torch.float64), expected,
                             magnitudes)
    native = run_flash(IMPLS[layout]["native"], problem, torch.float64, grads=False)
    assert_float64_agreement("native (fwd only)", native, expected, magnitudes)


@pytest.mark.parametrize("layout", ["dense", "varlen", "dense-softcap-native-fwd-only-cpu",
                                    "varlen-softcap-native-fwd-only-cpu"])
@FEWER
@given(data=st.data())
def test_flash_attention_float32_within_bound_derived_from_float64_oracle(layout: str, data: st.DataObject) -> None:
    softcap = "softcap" in layout
    layout = layout.split("-")[0]
    problem = problem_of(draw_case(data, layout, softcap=softcap))
    expected, baseline = reference_flash(problem), reference_flash(problem, np.float32)
    magnitudes = flash_magnitudes(problem)
    for name, fn in IMPLS[layout].items():
        actual = run_flash(fn, problem, torch.float32, grads=not (softcap and name == "native"))
        assert_float32_within_bound(name, actual, expected, baseline, magnitudes)


def gqa_inputs(case: AttentionCase, n_kv: int) -> tuple[dict, np.ndarray]:
    """The case's arrays with k, v cut to n_kv heads (case.H a multiple of n_kv)."""
    inputs, dout = case.arrays()
    return {**inputs, "k": inputs["k"][:, :n_kv], "v": inputs["v"][:, :n_kv]}, dout


@given(case=attention_cases(max_len=16, max_head_dim=9, max_logit_scale=100.0), n_kv=st.integers(1, 3),
       n_rep=st.integers(1, 4))
@FEWER
def test_sdpa_enable_gqa_agrees_across_implementations(case: AttentionCase, n_kv: int, n_rep: int) -> None:
    """SDPA's signature with enable_gqa=True: reference, scratch, native SDPA (out, dq, dk, dv) and the
    flex kernel (out: forward only on the CPU), masks of every kind."""
    case = dataclasses.replace(case, H=n_kv * n_rep)
    inputs, dout = gqa_inputs(case, n_kv)
    is_causal = case.mask_kind == "is_causal"
    out, cache = attention_forward(inputs["q"], inputs["k"], inputs["v"], inputs["attn_mask"], is_causal=is_causal,
                                   scale=case.scale, enable_gqa=True)
    expected = dict(zip(("out", "dq", "dk", "dv"), (out, *attention_backward(dout, cache)), strict=True))
    magnitudes = attention_magnitudes(dout, cache)
    magnitudes.update(dk=magnitudes["dk"] * n_rep, dv=magnitudes["dv"] * n_rep)  # a K/V head sums its group
    for name, kernel in {"scratch": scratch_sdpa, "native": native_sdpa}.items():
        actual = run_attention(kernel, inputs, dout, torch.float64, is_causal=is_causal, scale=case.scale,
                               enable_gqa=True)
        for tensor, value in actual.items():
            err = max_rel_err(value, expected[tensor], magnitudes[tensor])
            assert err <= F64_REL_BOUND, f"{name} {tensor}: relative error {err:.3e}"
    q, k, v, mask = (None if x is None else torch.from_numpy(x) for x in
                     (inputs["q"], inputs["k"], inputs["v"], inputs["attn_mask"]))
    flex_out = flex_sdpa(q, k, v, mask, is_causal=is_causal, scale=case.scale, enable_gqa=True).numpy()
    assert max_rel_err(flex_out, out, magnitudes["out"]) <= F64_REL_BOUND, "flex out"


@pytest.mark.parametrize("layout", ["dense", "varlen"])
def test_native_softcap_with_gradients_on_cpu_is_refused_clearly(layout: str) -> None:
    case = GPU_VARLEN if layout == "varlen" else GPU_CASE  # softcap > 0 in both
    problem = problem_of(case)
    for fn in (IMPLS[layout]["native"], FLEX[layout]):
        with pytest.raises(NotImplementedError, match="no backward on CPU"):
            run_flash(fn, problem, torch.float64)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: every implementation raises the reference's error, word for word.
# ---------------------------------------------------------------------------------------------------------------

def base_inputs(varlen: bool) -> tuple[list, dict]:
    """Good inputs (args, kwargs), NumPy: dense B=2, Lq=3, Lk=4, H=4, Hkv=2, d=3; varlen 2 sequences."""
    rng = np.random.default_rng(0)
    if varlen:
        cu_q, cu_k = np.array([0, 2, 5], dtype=np.int32), np.array([0, 3, 4], dtype=np.int32)
        return [rng.standard_normal((5, 4, 3)), rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3)),
                cu_q, cu_k], {}
    return [rng.standard_normal((2, 3, 4, 3)), rng.standard_normal((2, 4, 2, 3)),
            rng.standard_normal((2, 4, 2, 3))], {}


def _with(position: int | str, value: object) -> Callable[[bool], tuple[list, dict]]:
    """A bad case: the good inputs with argument ``position`` (an index or a keyword) replaced by ``value``
    (or by ``value(args)``)."""

    def make(varlen: bool) -> tuple[list, dict]:
        args, kwargs = base_inputs(varlen)
        resolved = value(args) if callable(value) else value
        if isinstance(position, int):
            args[position] = resolved
        else:
            kwargs[position] = resolved
        return args, kwargs
    return make


BAD_INPUTS = {
    "hkv-not-dividing-h": _with(1, lambda a: np.concatenate([a[1], a[1][..., :1, :]], axis=-2)),
    "window-not-a-pair": _with("window_size", (3,)),
    "window-below-minus-one": _with("window_size", (-2, 0)),
    "window-float": _with("window_size", (1.5, 2)),
    "softcap-negative": _with("softcap", -1.0),
    "softcap-inf": _with("softcap", float("inf")),
    "softcap-nan": _with("softcap", float("nan")),
    "softcap-not-a-number": _with("softcap", "2"),
    "alibi-wrong-shape": _with("alibi_slopes", np.ones(5)),
    "alibi-not-finite": _with("alibi_slopes", np.array([1.0, np.inf, 1.0, 1.0])),
    "alibi-int": _with("alibi_slopes", np.ones(4, dtype=np.int64)),
}
VARLEN_BAD_INPUTS = {
    **BAD_INPUTS,
    "cu-seqlens-float": _with(3, np.array([0.0, 2.0, 5.0])),
    "cu-seqlens-not-from-zero": _with(3, np.array([1, 2, 5], dtype=np.int32)),
    "cu-seqlens-decreasing": _with(4, np.array([0, 3, 2, 4], dtype=np.int32)),
    "cu-seqlens-wrong-total": _with(4, np.array([0, 3, 5], dtype=np.int32)),
    "cu-seqlens-different-counts": _with(4, np.array([0, 1, 3, 4], dtype=np.int32)),
    "alibi-per-sequence-wrong-count": _with("alibi_slopes", np.ones((3, 4))),
}
REFERENCE = {"dense": flash_attention_forward, "varlen": flash_attention_varlen_forward}


def to_torch(x: object) -> object:
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


@pytest.mark.parametrize("impl", ["scratch", "native", "flex"])
@pytest.mark.parametrize(("layout", "bad"), [("dense", b) for b in BAD_INPUTS] +
                         [("varlen", b) for b in VARLEN_BAD_INPUTS])
def test_bad_input_raises_the_references_error(impl: str, layout: str, bad: str) -> None:
    args, kwargs = (BAD_INPUTS if layout == "dense" else VARLEN_BAD_INPUTS)[bad](layout == "varlen")
    with pytest.raises((ValueError, TypeError)) as reference_error:
        REFERENCE[layout](*args, **kwargs)
    fn = FLEX[layout] if impl == "flex" else IMPLS[layout][impl]
    with pytest.raises(reference_error.type) as torch_error:
        fn(*(to_torch(a) for a in args), **{n: to_torch(v) for n, v in kwargs.items()})
    assert str(torch_error.value) == str(reference_error.value)


@pytest.mark.parametrize("impl", ["scratch", "native", "flex"])
def test_max_seqlen_shorter_than_a_sequence_is_refused(impl: str) -> None:
    args, _ = base_inputs(varlen=True)
    fn = FLEX["varlen"] if impl == "flex" else IMPLS["varlen"][impl]
    with pytest.raises(ValueError, match=r"max_seqlen_q: expected None or an int >= the longest sequence \(3\)"):
        fn(*(to_torch(a) for a in args), 2, 4)


@pytest.mark.parametrize("impl", ["scratch", "native"])
def test_sdpa_enable_gqa_refuses_hkv_not_dividing_h(impl: str) -> None:
    q, k = torch.ones(1, 4, 2, 3), torch.ones(1, 3, 2, 3)
    fn = scratch_sdpa if impl == "scratch" else native_sdpa
    with pytest.raises(ValueError, match="Hkv dividing H=4"):
        fn(q, k, k, enable_gqa=True)


# ---------------------------------------------------------------------------------------------------------------
# CUDA: the full three-way comparison, FlexAttention forward and backward, and SDPA's GQA per backend.
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["dense", "varlen"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("route", ["native", "flex"])
def test_flex_attention_three_way_forward_backward_on_cuda(layout: str, dtype: torch.dtype, route: str) -> None:
    """Softcap + ALiBi + window + GQA through FlexAttention on CUDA: out, LSE, dq, dk, dv against the reference."""
    torch.backends.cuda.matmul.allow_tf32 = False
    problem = problem_of(GPU_CASE if layout == "dense" else GPU_VARLEN)
    expected, magnitudes = reference_flash(problem), flash_magnitudes(problem)
    fn = IMPLS[layout]["native"] if route == "native" else FLEX[layout]
    actual = run_flash(fn, problem, dtype, device="cuda")
    if dtype == torch.float64:
        assert_float64_agreement(route, actual, expected, magnitudes)
    else:
        baseline = run_flash(IMPLS[layout]["scratch"], problem, dtype, device="cuda")
        assert_float32_within_bound(route, actual, expected, baseline, magnitudes)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["math", "flash", "efficient", "cudnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sdpa_enable_gqa_per_backend_on_cuda(backend: str, dtype: torch.dtype) -> None:
    """Each pinned SDPA backend with enable_gqa=True against the float64 reference; baseline: scratch."""
    torch.backends.cuda.matmul.allow_tf32 = False
    case = AttentionCase(B=2, H=8, Lq=77, Lk=130, E=64, Ev=64, mask_kind="causal_bottom_right", logit_scale=10.0,
                         scale=None, seed=14)
    inputs, dout = gqa_inputs(case, n_kv=2)
    out, cache = attention_forward(inputs["q"], inputs["k"], inputs["v"], inputs["attn_mask"], enable_gqa=True)
    expected = dict(zip(("out", "dq", "dk", "dv"), (out, *attention_backward(dout, cache)), strict=True))
    magnitudes = attention_magnitudes(dout, cache)
    baseline = run_attention(scratch_sdpa, inputs, dout, dtype, device="cuda", enable_gqa=True)
    try:
        actual = run_attention(native_sdpa, inputs, dout, dtype, device="cuda", backend=backend, enable_gqa=True)
    except RuntimeError as exc:
        pytest.skip(f"sdpa-{backend} does not run GQA here: {str(exc).splitlines()[0]}")
    name = str(dtype).removeprefix("torch.")
    for tensor in expected:
        mu = max(magnitudes[tensor] * (4 if tensor in ("dk", "dv") else 1), float(np.max(np.abs(expected[tensor]))))
        allowed = low_precision_bound(max_abs_err(baseline[tensor], expected[tensor]), mu, name, magnitudes["logits"])
        err = max_abs_err(actual[tensor], expected[tensor])
        assert err <= allowed, f"sdpa-{backend} {name} {tensor}: {err:.3e} > {allowed:.3e}"
