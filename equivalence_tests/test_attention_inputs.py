"""Bad input to the attention core: one clear error, naming the argument, in every implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference.attention import attention_forward
from torch_impl.native.attention import scaled_dot_product_attention as native_sdpa
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa


def reference_call(q, k, v, attn_mask=None, **kwargs):
    return attention_forward(q, k, v, attn_mask, **kwargs)[0]


def as_numpy(x):
    return None if x is None else x.numpy()


IMPLS = {
    "reference": (reference_call, as_numpy),
    "scratch": (scratch_sdpa, lambda t: t),
    "native": (native_sdpa, lambda t: t),
}


def t(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype)


SHAPE_CASES = {
    "head dim of k differs from q": ((t(2, 4, 10, 64), t(2, 4, 10, 32), t(2, 4, 10, 32), None),
                                     r"k: expected \(B, H, Lk, d_head\) with leading dims \(2, 4\) and d_head=64"),
    "k and v lengths differ": ((t(2, 4, 5, 8), t(2, 4, 10, 8), t(2, 4, 9, 8), None), r"v: expected .* Lk=10"),
    "batch differs": ((t(2, 4, 5, 8), t(3, 4, 6, 8), t(3, 4, 6, 8), None), r"k: expected .*leading dims \(2, 4\)"),
    "heads differ": ((t(2, 4, 5, 8), t(2, 2, 6, 8), t(2, 2, 6, 8), None), r"k: expected .*leading dims \(2, 4\)"),
    "dims differ": ((t(2, 4, 5, 8), t(4, 6, 8), t(4, 6, 8), None), "q, k, v: expected the same number of dims"),
    "one-dim q": ((t(8), t(8), t(8), None), r"q: expected \(B, H, L, d_head\)"),
    "mask of the wrong shape": ((t(2, 4, 5, 8), t(2, 4, 6, 8), t(2, 4, 6, 8), torch.ones(5, 5, dtype=torch.bool)),
                                r"attn_mask: expected a shape broadcastable to \(B, H, Lq, Lk\) = \(2, 4, 5, 6\)"),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", SHAPE_CASES)
def test_shape_mismatch_names_the_argument(impl: str, case: str) -> None:
    fn, convert = IMPLS[impl]
    (q, k, v, mask), message = SHAPE_CASES[case]
    with pytest.raises(ValueError, match=message):
        fn(convert(q), convert(k), convert(v), convert(mask))


@pytest.mark.parametrize("impl", IMPLS)
def test_integer_inputs_are_refused(impl: str) -> None:
    fn, convert = IMPLS[impl]
    q = torch.ones(1, 1, 2, 2, dtype=torch.int64)
    with pytest.raises(TypeError, match="q: expected"):
        fn(convert(q), convert(q), convert(q))


@pytest.mark.parametrize("impl", IMPLS)
def test_mixed_dtypes_are_refused(impl: str) -> None:
    fn, convert = IMPLS[impl]
    with pytest.raises(TypeError, match="q, k, v: expected one dtype"):
        fn(convert(t(1, 1, 2, 2)), convert(t(1, 1, 2, 2, dtype=torch.float32)), convert(t(1, 1, 2, 2)))


@pytest.mark.parametrize("impl", IMPLS)
def test_integer_mask_is_refused(impl: str) -> None:
    fn, convert = IMPLS[impl]
    x = t(1, 1, 2, 2)
    with pytest.raises(TypeError, match="attn_mask: expected a boolean keep-mask or a floating additive mask"):
        fn(convert(x), convert(x), convert(x), convert(torch.ones(2, 2, dtype=torch.int64)))


@pytest.mark.parametrize("impl", IMPLS)
def test_mask_with_is_causal_is_refused(impl: str) -> None:
    fn, convert = IMPLS[impl]
    x = t(1, 1, 2, 2)
    with pytest.raises(ValueError, match="attn_mask: cannot be combined with is_causal"):
        fn(convert(x), convert(x), convert(x), convert(torch.ones(2, 2, dtype=torch.bool)), is_causal=True)


@pytest.mark.parametrize("fn", [scratch_sdpa, native_sdpa])
def test_mixed_devices_are_refused(fn) -> None:
    q = t(1, 1, 2, 2)
    k = torch.empty(1, 1, 2, 2, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="q, k, v: expected one device"):
        fn(q, k, q)


def test_reference_refuses_float16_and_tensors() -> None:
    x16 = np.ones((1, 1, 2, 2), dtype=np.float16)
    with pytest.raises(TypeError, match="q: expected dtype float32 or float64, got float16"):
        attention_forward(x16, x16, x16)
    with pytest.raises(TypeError, match=r"q: expected a numpy\.ndarray, got Tensor"):
        attention_forward(t(1, 1, 2, 2), t(1, 1, 2, 2), t(1, 1, 2, 2))


def test_reference_refuses_nan_or_plus_inf_additive_mask() -> None:
    x = np.ones((1, 1, 2, 2))
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match=r"attn_mask: an additive mask must not hold NaN or \+inf"):
            attention_forward(x, x, x, np.array([[0.0, bad], [0.0, 0.0]]))


def test_native_refuses_unknown_backend() -> None:
    x = t(1, 1, 2, 2)
    with pytest.raises(ValueError, match="backend: expected one of"):
        native_sdpa(x, x, x, backend="fastest")


def test_pinned_backend_that_cannot_run_raises_instead_of_falling_back() -> None:
    x = t(1, 1, 2, 2)
    with pytest.raises(RuntimeError):
        native_sdpa(x, x, x, backend="cudnn")  # no cuDNN attention on the CPU
