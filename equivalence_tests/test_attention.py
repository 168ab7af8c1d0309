"""The attention core: reference, scratch and native agree; the reference backward is right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from equivalence_tests.component_helpers import assert_all_close
from equivalence_tests.known_failures import Symptom, min_row_lse, xfail_if_known
from equivalence_tests.strategies import AttentionCase, attention_cases
from reference.attention import attention_backward, attention_forward
from reference.gradcheck import numerical_gradients
from torch_impl.kernels import BUILTIN_KERNELS
from torch_impl.native.attention import scaled_dot_product_attention as native_sdpa
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from triad.harness.attention import run_attention
from triad.tolerance import (
    F64_REL_BOUND,
    FD_REL_BOUND,
    FD_STEP,
    attention_magnitudes,
    locate_mismatch,
    low_precision_bound,
    max_abs_err,
    max_rel_err,
)
from triad.verify.support import is_declined

TORCH_IMPLS = {"scratch": scratch_sdpa, "native": native_sdpa}
RESULT_TENSORS = ("out", "dq", "dk", "dv")


def reference_results(case: AttentionCase, dtype: type = np.float64) -> tuple[dict, dict, np.ndarray, dict]:
    """Reference outputs and gradients in ``dtype``; also the inputs, dout and the float64 cache."""
    inputs, dout = case.arrays()
    cast = {n: (a.astype(dtype) if a is not None and a.dtype == np.float64 else a) for n, a in inputs.items()}
    out, cache = attention_forward(cast["q"], cast["k"], cast["v"], cast["attn_mask"],
                                   is_causal=case.mask_kind == "is_causal", scale=case.scale)
    grads = attention_backward(dout.astype(dtype), cache)
    return dict(zip(RESULT_TENSORS, (out, *grads), strict=True)), inputs, dout, cache


def run_kernel_on_case(kernel, case: AttentionCase, inputs: dict, dout: np.ndarray, dtype: torch.dtype) -> dict:
    return run_attention(kernel, inputs, dout, dtype, is_causal=case.mask_kind == "is_causal", scale=case.scale)


@given(case=attention_cases())
def test_attention_agrees_across_implementations_float64(case: AttentionCase) -> None:
    expected, inputs, dout, cache = reference_results(case)
    magnitudes = attention_magnitudes(dout, cache)
    for name, kernel in TORCH_IMPLS.items():
        actual = run_kernel_on_case(kernel, case, inputs, dout, torch.float64)
        assert_all_close(actual, expected, F64_REL_BOUND, magnitudes, name)


@given(case=attention_cases(max_len=5, max_head_dim=4, max_logit_scale=10.0))
def test_reference_attention_backward_matches_finite_differences(case: AttentionCase) -> None:
    inputs, dout = case.arrays()
    q, k, v = inputs["q"], inputs["k"], inputs["v"]

    def forward() -> np.ndarray:
        return attention_forward(q, k, v, inputs["attn_mask"], is_causal=case.mask_kind == "is_causal",
                                 scale=case.scale)[0]

    _, cache = attention_forward(q, k, v, inputs["attn_mask"], is_causal=case.mask_kind == "is_causal",
                                 scale=case.scale)
    analytic = dict(zip(("q", "k", "v"), attention_backward(dout, cache), strict=True))
    numeric = numerical_gradients(forward, {"q": q, "k": k, "v": v}, dout, h=FD_STEP)
    magnitudes = attention_magnitudes(dout, cache)
    assert_all_close(analytic, numeric, FD_REL_BOUND, {name: magnitudes["d" + name] for name in analytic},
                     "finite differences")


@given(case=attention_cases())
def test_attention_float32_within_bound_derived_from_float64_oracle(case: AttentionCase) -> None:
    """float32 error against the float64 oracle <= 2 x the float32 reference's own error + the floor."""
    expected, inputs, dout, cache = reference_results(case)
    baseline, *_ = reference_results(case, np.float32)
    magnitudes = attention_magnitudes(dout, cache)
    for name, kernel in TORCH_IMPLS.items():
        actual = run_kernel_on_case(kernel, case, inputs, dout, torch.float32)
        for tensor in RESULT_TENSORS:
            allowed = low_precision_bound(max_abs_err(baseline[tensor], expected[tensor]),
                                          max(magnitudes[tensor], float(np.max(np.abs(expected[tensor])))),
                                          "float32", magnitudes["logits"])
            found = locate_mismatch(actual[tensor], expected[tensor], allowed)
            assert found is None, f"{name} {tensor} float32: {found}"


@pytest.mark.parametrize("impl", ["reference", "scratch", "native"])
def test_fully_masked_rows_give_zero_output_and_zero_gradient(impl: str) -> None:
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 3, n, 4)) for n in (5, 6, 6))
    keep = np.ones((2, 3, 5, 6), dtype=bool)
    keep[0, 1, 2] = False  # one row of one head of one sequence
    keep[1, :, 4] = False
    results = run_attention(BUILTIN_KERNELS[impl], {"q": q, "k": k, "v": v, "attn_mask": keep},
                            rng.standard_normal((2, 3, 5, 4)), torch.float64)
    for name in ("out", "dq"):
        assert np.all(results[name][0, 1, 2] == 0.0) and np.all(results[name][1, :, 4] == 0.0), name
        assert np.all(np.isfinite(results[name]))
    assert np.all(np.isfinite(results["dk"])) and np.all(np.isfinite(results["dv"]))
    assert np.any(results["out"][0, 0, 2] != 0.0), "only the masked rows are zero"


def test_additive_minus_inf_rows_match_boolean_rows() -> None:
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((1, 2, 4, 3)) for _ in range(3))
    keep = rng.random((1, 2, 4, 4)) < 0.6
    keep[0, 0, 1] = False
    additive = np.where(keep, 0.0, -np.inf)
    out_bool, _ = attention_forward(q, k, v, keep)
    out_add, _ = attention_forward(q, k, v, additive)
    np.testing.assert_array_equal(out_bool, out_add)


def test_additive_mask_is_added_after_scaling() -> None:
    """A finite additive mask must not be multiplied by the scale (nn.MultiheadAttention adds it after)."""
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 1, 3, 4)) for _ in range(3))
    mask = rng.standard_normal((3, 3))
    out, _ = attention_forward(q, k, v, mask, scale=0.25)
    scores = 0.25 * q[0, 0] @ k[0, 0].T + mask
    probs = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(out[0, 0], probs @ v[0, 0], rtol=1e-13)
    native = native_sdpa(*(torch.from_numpy(x) for x in (q, k, v, mask)), scale=0.25)
    np.testing.assert_allclose(native.numpy(), out, rtol=1e-12)


def test_default_scale_is_one_over_sqrt_head_dim() -> None:
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((1, 1, 3, 16)) for _ in range(3))
    default, _ = attention_forward(q, k, v)
    explicit, _ = attention_forward(q, k, v, scale=1 / 4.0)
    np.testing.assert_array_equal(default, explicit)


def test_is_causal_equals_top_left_mask() -> None:
    rng = np.random.default_rng(5)
    q = rng.standard_normal((1, 2, 4, 3))
    k, v = (rng.standard_normal((1, 2, 7, 3)) for _ in range(2))
    from reference.masks import causal_mask

    flag, _ = attention_forward(q, k, v, is_causal=True)
    mask, _ = attention_forward(q, k, v, causal_mask(4, 7, "top_left"))
    np.testing.assert_array_equal(flag, mask)
    native_flag = native_sdpa(*(torch.from_numpy(x) for x in (q, k, v)), is_causal=True)
    np.testing.assert_allclose(native_flag.numpy(), flag, rtol=1e-12, atol=1e-14)


@given(case=attention_cases(max_len=12, max_head_dim=8, max_logit_scale=10.0, mask_kinds=("none", "padding")))
@settings(max_examples=15)
def test_attention_dropout_reference_and_scratch_agree_with_one_keep_mask(case: AttentionCase) -> None:
    inputs, dout = case.arrays()
    rng = np.random.default_rng(case.seed)
    keep = rng.random((case.B, case.H, case.Lq, case.Lk)) >= 0.3
    out, cache = attention_forward(inputs["q"], inputs["k"], inputs["v"], inputs["attn_mask"], dropout_p=0.3,
                                   scale=case.scale, dropout_keep=keep)
    expected = dict(zip(RESULT_TENSORS, (out, *attention_backward(dout, cache)), strict=True))
    actual = run_attention(scratch_sdpa, inputs, dout, torch.float64, dropout_p=0.3, scale=case.scale,
                           dropout_keep=torch.from_numpy(keep))
    magnitudes = attention_magnitudes(dout, cache)
    for tensor in RESULT_TENSORS:
        assert max_rel_err(actual[tensor], expected[tensor], magnitudes[tensor]) <= F64_REL_BOUND, tensor


@pytest.mark.parametrize("impl", ["reference", "scratch", "native"])
def test_attention_dropout_is_inverted_dropout(impl: str) -> None:
    """With v = 1 every output is sum_j P_j Z_j / (1 - p), whose mean is 1 when dropout is inverted.

    Fused SDPA dropout draws its random numbers its own way, so it is tested by statistics,
    not element-wise. 8192 rows of 64 keys: the mean's standard error is about 0.003.
    """
    torch.manual_seed(0)
    p = 0.3
    q, k = torch.randn(2, 4, 1024, 8, dtype=torch.float64), torch.randn(2, 4, 64, 8, dtype=torch.float64)
    v = torch.ones(2, 4, 64, 1, dtype=torch.float64)
    out = BUILTIN_KERNELS[impl](q, k, v, dropout_p=p)
    assert abs(out.mean().item() - 1.0) < 0.02
    assert out.std().item() > 0.05, "dropout was not applied"


def test_reference_dropout_needs_a_keep_mask_or_rng() -> None:
    x = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match="dropout_keep"):
        attention_forward(x, x, x, dropout_p=0.5)
    with pytest.raises(ValueError, match="dropout_p"):
        attention_forward(x, x, x, dropout_p=1.0)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["math", "flash", "efficient", "cudnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mask_kind", ["none", "is_causal", "padding", "causal_bottom_right"])
def test_sdpa_backends_on_cuda_within_low_precision_bound(backend: str, dtype: torch.dtype, mask_kind: str) -> None:
    """Each SDPA backend on the GPU against the float64 reference; baseline: scratch in the same dtype."""
    torch.backends.cuda.matmul.allow_tf32 = False
    case = AttentionCase(B=2, H=3, Lq=77, Lk=130, E=64, Ev=64, mask_kind=mask_kind, logit_scale=10.0,
                         scale=None, seed=11)
    expected, inputs, dout, cache = reference_results(case)
    magnitudes = attention_magnitudes(dout, cache)
    baseline = run_attention(scratch_sdpa, inputs, dout, dtype, device="cuda",
                             is_causal=mask_kind == "is_causal")
    kernel = f"sdpa-{backend}"
    try:
        actual = run_attention(BUILTIN_KERNELS[kernel], inputs, dout, dtype, device="cuda",
                               is_causal=mask_kind == "is_causal")
    except Exception as exc:  # only the shared declined-backend rule skips; a known upstream bug is an xfail
        if is_declined(exc):
            pytest.skip(f"{kernel} does not run this case: {str(exc).splitlines()[0]}")
        xfail_if_known(Symptom(kernel, message=str(exc)))
        raise
    nonfinite = frozenset(t for t in RESULT_TENSORS if np.any(np.isfinite(expected[t]) & ~np.isfinite(actual[t])))
    if nonfinite:
        xfail_if_known(Symptom(kernel, nonfinite=nonfinite, has_mask=inputs["attn_mask"] is not None,
                               min_lse=min_row_lse(inputs["q"], inputs["k"], inputs["attn_mask"],
                                                   mask_kind == "is_causal", case.scale)))
    dtype_name = str(dtype).removeprefix("torch.")
    for tensor in RESULT_TENSORS:
        scale = max(magnitudes[tensor], float(np.max(np.abs(expected[tensor]))))
        allowed = low_precision_bound(max_abs_err(baseline[tensor], expected[tensor]), scale, dtype_name,
                                      magnitudes["logits"])
        found = locate_mismatch(actual[tensor], expected[tensor], allowed)
        assert found is None, f"sdpa-{backend} {dtype_name} {tensor}: {found}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask", [None, "additive"])
def test_reference_computes_in_the_dtype_it_is_given(dtype, mask) -> None:
    x = np.ones((1, 1, 3, 4), dtype=dtype)
    attn_mask = None if mask is None else np.zeros((3, 3))  # a float64 mask must not promote float32 work
    out, cache = attention_forward(x, x, x, attn_mask, scale=0.3)
    assert out.dtype == dtype and cache["probs"].dtype == dtype
    assert all(g.dtype == dtype for g in attention_backward(out, cache))
