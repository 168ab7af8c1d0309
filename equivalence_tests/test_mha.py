"""Multi-head attention: reference, scratch and native agree; the reference backward is right; the traps are caught."""

from __future__ import annotations

from dataclasses import dataclass
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence_tests.component_helpers import assert_all_close
from reference.attention import attention_forward
from reference.gradcheck import numerical_gradients
from reference.masks import causal_mask
from reference.multi_head_attention import mha_backward, mha_forward, mha_param_shapes
from torch_impl.convert import load_native
from torch_impl.native.multi_head_attention import MultiHeadAttention as NativeMHA
from torch_impl.native.multi_head_attention import torch_masks
from torch_impl.scratch.multi_head_attention import MultiHeadAttention as ScratchMHA
from triad.harness.blocks import MASK_KINDS, block_errors, block_magnitudes, make_mask, random_params, run_torch_block
from triad.tolerance import F64_REL_BOUND, FD_REL_BOUND, FD_STEP


@dataclass(frozen=True)
class MhaCase:
    B: int
    H: int
    d_head: int
    Lq: int
    Lk: int
    cross: bool  # False: self-attention, x_kv is x_q (and Lk = Lq)
    bias: bool
    mask_kind: str
    seed: int

    @property
    def d_model(self) -> int:
        return self.H * self.d_head

    def arrays(self) -> dict:
        rng = np.random.default_rng(self.seed)
        Lk = self.Lk if self.cross else self.Lq
        x_q = rng.standard_normal((self.B, self.Lq, self.d_model))
        return {
            "params": random_params(mha_param_shapes(self.d_model, self.bias), rng),
            "x_q": x_q,
            "x_kv": rng.standard_normal((self.B, Lk, self.d_model)) if self.cross else x_q,
            "mask": make_mask(self.mask_kind, self.B, self.H, self.Lq, Lk, rng),
            "dy": rng.standard_normal((self.B, self.Lq, self.d_model)),
        }


@st.composite
def mha_cases(draw: st.DrawFn, max_len: int = 6, max_d_head: int = 3) -> MhaCase:
    return MhaCase(
        B=draw(st.integers(1, 2)), H=draw(st.integers(1, 3)), d_head=draw(st.integers(1, max_d_head)),
        Lq=draw(st.integers(1, max_len)), Lk=draw(st.integers(1, max_len)), cross=draw(st.booleans()),
        bias=draw(st.booleans()), mask_kind=draw(st.sampled_from(MASK_KINDS)), seed=draw(st.integers(0, 2**32 - 1)),
    )


def reference_results(a: dict, n_heads: int, cross: bool) -> dict[str, np.ndarray]:
    y, cache = mha_forward(a["x_q"], a["x_kv"], a["params"], n_heads, a["mask"])
    dx_q, dx_kv, grads = mha_backward(a["dy"], cache)
    inputs = {"dx_q": dx_q, "dx_kv": dx_kv} if cross else {"dx": dx_q + dx_kv}  # self: one input, both paths
    return {"out": y, **inputs, **grads}


def torch_results(case: MhaCase, a: dict, native: bool) -> dict[str, np.ndarray]:
    """Run scratch or native (train mode, dropout 0) on the case; self-attention passes one tensor twice."""
    module = (NativeMHA if native else ScratchMHA)(case.d_model, case.H, bias=case.bias)
    mask = None if a["mask"] is None else torch.tensor(a["mask"])
    if case.cross:
        inputs, forward = {"x_q": a["x_q"], "x_kv": a["x_kv"]}, lambda t: module(t["x_q"], t["x_kv"], mask)
    else:
        inputs, forward = {"x": a["x_q"]}, lambda t: module(t["x"], t["x"], mask)
    return run_torch_block(module, a["params"], inputs, a["dy"], forward, module.mha if native else None)


@given(case=mha_cases())
def test_mha_grads_agree_across_implementations(case: MhaCase) -> None:
    """Output, input gradients and every parameter gradient (native: in_proj_weight.grad split in three)."""
    a = case.arrays()
    expected = reference_results(a, case.H, case.cross)
    for name, native in (("scratch", False), ("native", True)):
        assert_all_close(torch_results(case, a, native), expected, F64_REL_BOUND, block_magnitudes(expected), name)


@given(case=mha_cases(max_len=3, max_d_head=2))
@settings(max_examples=15)  # each example runs ~2 * (params + inputs) forwards: up to ~300 of them
def test_reference_mha_backward_matches_finite_differences(case: MhaCase) -> None:
    a = case.arrays()
    x_kv = a["x_kv"].copy() if not case.cross else a["x_kv"]  # differentiate the two roles separately
    _, cache = mha_forward(a["x_q"], x_kv, a["params"], case.H, a["mask"])
    dx_q, dx_kv, grads = mha_backward(a["dy"], cache)
    analytic = {"x_q": dx_q, "x_kv": dx_kv, **grads}
    numeric = numerical_gradients(lambda: mha_forward(a["x_q"], x_kv, a["params"], case.H, a["mask"])[0],
                                  {"x_q": a["x_q"], "x_kv": x_kv, **a["params"]}, a["dy"], h=FD_STEP)
    assert_all_close(analytic, numeric, FD_REL_BOUND, block_magnitudes(numeric), "finite differences")


def per_head_loop(x_q: np.ndarray, x_kv: np.ndarray, params: dict, n_heads: int, mask: np.ndarray | None
                  ) -> np.ndarray:
    """MHA written the slow, obvious way: one head at a time, each with its own rows of W_q, W_k, W_v."""
    d_head = x_q.shape[-1] // n_heads
    outs = []
    for h in range(n_heads):
        rows = slice(h * d_head, (h + 1) * d_head)
        q, k, v = (x @ params[f"{n}_proj.weight"][rows].T + params[f"{n}_proj.bias"][rows]
                   for n, x in (("q", x_q), ("k", x_kv), ("v", x_kv)))  # (B, L, d_head) each
        outs.append(attention_forward(q, k, v, mask)[0])  # (B, Lq, d_head)
    return np.concatenate(outs, axis=-1) @ params["out_proj.weight"].T + params["out_proj.bias"]  # (B, Lq, D)


@pytest.mark.parametrize(("Lq", "Lk"), [(5, 5), (2, 7), (7, 3)])
def test_mha_equals_a_per_head_loop_with_each_tensor_split_by_its_own_length(Lq: int, Lk: int) -> None:
    """Catches heads split with ``view`` but no transpose, and keys reshaped with the query's length."""
    rng = np.random.default_rng(Lq * 10 + Lk)
    B, H, D = 2, 3, 6
    params = random_params(mha_param_shapes(D), rng)
    x_q, x_kv = rng.standard_normal((B, Lq, D)), rng.standard_normal((B, Lk, D))
    mask = causal_mask(Lq, Lk, "bottom_right")
    expected = per_head_loop(x_q, x_kv, params, H, mask)
    assert block_errors({"out": mha_forward(x_q, x_kv, params, H, mask)[0]}, {"out": expected})["out"] <= F64_REL_BOUND


def test_native_mha_honours_a_non_causal_mask_that_torch_would_discard_with_is_causal() -> None:
    """pytorch #131254: with ``is_causal=True`` torch may drop ``attn_mask``. We pass the flag only for the
    exact causal mask; an almost-causal mask (one more key blocked) must be honoured."""
    rng = np.random.default_rng(3)
    B, H, L, D = 2, 2, 5, 4
    params = random_params(mha_param_shapes(D), rng)
    x, dy = rng.standard_normal((B, L, D)), rng.standard_normal((B, L, D))
    almost = causal_mask(L, L)
    almost[3, 1] = False
    for mask, causal in ((causal_mask(L, L), True), (almost, False)):
        assert torch_masks(torch.tensor(mask), B, H, L, L)[2] is causal
        case = MhaCase(B, H, D // H, L, L, cross=False, bias=True, mask_kind="none", seed=0)
        a = {"params": params, "x_q": x, "x_kv": x, "mask": mask, "dy": dy}
        errors = block_errors(torch_results(case, a, native=True), reference_results(a, H, cross=False))
        assert max(errors.values()) <= F64_REL_BOUND
    # The trap is real in this torch: raw nn.MultiheadAttention with the flag ignores the almost-causal mask.
    raw = NativeMHA(D, H).double().mha
    xt = torch.tensor(x)
    flagged = raw(xt, xt, xt, attn_mask=torch.tensor(~almost), need_weights=False, is_causal=True)[0]
    honoured = raw(xt, xt, xt, attn_mask=torch.tensor(~almost), need_weights=False)[0]
    assert not torch.allclose(flagged, honoured)


def test_fully_masked_query_rows_give_the_output_bias_in_all_three() -> None:
    """Attention 0 on a row with no key: the output is out_proj.bias (native: need_weights=False, no NaN)."""
    rng = np.random.default_rng(4)
    B, H, L, D = 2, 2, 4, 4
    params = random_params(mha_param_shapes(D), rng)
    x, dy = rng.standard_normal((B, L, D)), rng.standard_normal((B, L, D))
    mask = np.ones((B, 1, L, L), dtype=bool)
    mask[1, 0, 2, :] = False  # query 2 of sequence 1 sees nothing
    a = {"params": params, "x_q": x, "x_kv": x, "mask": mask, "dy": dy}
    expected = reference_results(a, H, cross=False)
    np.testing.assert_array_equal(expected["out"][1, 2], params["out_proj.bias"])
    case = MhaCase(B, H, D // H, L, L, cross=False, bias=True, mask_kind="none", seed=0)
    for native in (False, True):
        errors = block_errors(torch_results(case, a, native), expected)
        assert max(errors.values()) <= F64_REL_BOUND


@pytest.mark.parametrize("fastpath", [False, True])
def test_native_mha_eval_no_grad_agrees_on_non_padded_queries(fastpath: bool) -> None:
    """Eval + no_grad, with torch's fast path on (checked to run) and off; padded query rows are not compared."""
    rng = np.random.default_rng(5)
    B, H, L, D = 3, 2, 5, 8
    params = random_params(mha_param_shapes(D), rng)
    x = rng.standard_normal((B, L, D))
    lengths = np.array([5, 3, 1])
    keep = (np.arange(L)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, L)
    expected = mha_forward(x, x, params, H, keep)[0]
    module = NativeMHA(D, H).double().eval()
    load_native(module.mha, params)
    calls = mock.Mock(wraps=torch._native_multi_head_attention)
    torch.backends.mha.set_fastpath_enabled(fastpath)
    try:
        with torch.no_grad(), mock.patch.object(torch, "_native_multi_head_attention", calls):
            xt = torch.tensor(x)
            out = module(xt, xt, torch.tensor(keep)).numpy()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert calls.called is fastpath
    real = np.arange(L)[None, :] < lengths[:, None]  # (B, L): non-padded query positions
    assert block_errors({"out": out[real]}, {"out": expected[real]})["out"] <= F64_REL_BOUND


def test_scratch_mha_dropout_agrees_with_reference_given_the_same_keep_mask() -> None:
    rng = np.random.default_rng(6)
    B, H, Lq, Lk, D, p = 2, 2, 3, 4, 4, 0.3
    params = random_params(mha_param_shapes(D), rng)
    x_q, x_kv, dy = rng.standard_normal((B, Lq, D)), rng.standard_normal((B, Lk, D)), rng.standard_normal((B, Lq, D))
    keep = rng.random((B, H, Lq, Lk)) >= p
    y, cache = mha_forward(x_q, x_kv, params, H, dropout_p=p, dropout_keep=keep)
    dx_q, dx_kv, grads = mha_backward(dy, cache)
    module = ScratchMHA(D, H, dropout=p).train()
    actual = run_torch_block(module, params, {"x_q": x_q, "x_kv": x_kv}, dy,
                             lambda t: module(t["x_q"], t["x_kv"], None, torch.tensor(keep)))
    errors = block_errors(actual, {"out": y, "dx_q": dx_q, "dx_kv": dx_kv, **grads})
    assert max(errors.values()) <= F64_REL_BOUND
    assert not np.allclose(y, mha_forward(x_q, x_kv, params, H)[0])  # the mask did change the result


def test_d_model_not_divisible_by_n_heads_is_a_clear_error_in_all_three() -> None:
    x = np.zeros((1, 2, 6))
    match = r"d_model: expected a multiple of n_heads=4, got 6 \(d_head would be 1.5\)"
    with pytest.raises(ValueError, match=match):
        mha_forward(x, x, random_params(mha_param_shapes(6), np.random.default_rng(0)), 4)
    for cls in (ScratchMHA, NativeMHA):
        with pytest.raises(ValueError, match=match):
            cls(6, 4)


def test_bad_mha_inputs_name_the_argument() -> None:
    rng = np.random.default_rng(7)
    params = random_params(mha_param_shapes(4), rng)
    x = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"x_kv: expected \(B, Lk, d_model\) with B=2 and d_model=4 like x_q, "
                                         r"got \(2, 3, 5\)"):
        mha_forward(x, rng.standard_normal((2, 3, 5)), params, 2)
    with pytest.raises(ValueError, match=r"x_q: expected \(B, Lq, d_model\), got \(3, 4\)"):
        mha_forward(x[0], x, params, 2)
    with pytest.raises(ValueError, match=r"params\['k_proj.weight'\]: expected shape \(4, 4\), got \(4, 3\)"):
        mha_forward(x, x, {**params, "k_proj.weight": np.zeros((4, 3))}, 2)
    with pytest.raises(ValueError, match=r"params: missing key 'v_proj.bias', expected shape \(4,\)"):
        mha_forward(x, x, {k: v for k, v in params.items() if k != "v_proj.bias"}, 2)
    bad_mask = np.ones((3, 3), dtype=bool)[None, None, :, :2]  # (1, 1, 3, 2) but Lk = 3
    with pytest.raises(ValueError, match=r"attn_mask: expected a shape broadcastable to \(B, H, Lq, Lk\) = "
                                         r"\(2, 2, 3, 3\), got \(1, 1, 3, 2\)"):
        mha_forward(x, x, params, 2, bad_mask)
    xt = torch.tensor(x)
    for module in (ScratchMHA(4, 2).double(), NativeMHA(4, 2).double()):
        with pytest.raises(ValueError, match=r"attn_mask: expected a shape broadcastable to \(B, H, Lq, Lk\)"):
            module(xt, xt, torch.tensor(bad_mask))
        with pytest.raises(ValueError, match=r"x_kv: expected \(B, Lk, d_model\)"):
            module(xt, torch.zeros(2, 3, 5, dtype=torch.float64))
