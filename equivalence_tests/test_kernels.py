"""The kernel registry: built-in names and a user's ``package.module:function``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_impl.kernels import (
    BUILTIN_FEATURES,
    BUILTIN_KERNELS,
    FEATURES,
    FLASH_KERNELS,
    KernelNotFoundError,
    resolve_kernel,
)


def test_builtin_names_resolve_and_run_on_cpu() -> None:
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    expected = BUILTIN_KERNELS["reference"](q, q, q)
    for name in ("scratch", "native", "sdpa-math"):
        torch.testing.assert_close(resolve_kernel(name)(q, q, q), expected, rtol=1e-12, atol=1e-14)


def test_module_colon_function_resolves() -> None:
    kernel = resolve_kernel("torch.nn.functional:scaled_dot_product_attention")
    assert kernel is torch.nn.functional.scaled_dot_product_attention


def test_reference_kernel_backward_is_the_hand_written_one() -> None:
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: BUILTIN_KERNELS["reference"](x, x, x), (q,))


@pytest.mark.parametrize(("spec", "message"), [
    ("fastest", "not a built-in kernel"),
    ("no_such_module_xyz:attn", "cannot import module 'no_such_module_xyz'"),
    ("torch.nn.functional:no_such_fn", "has no attribute 'no_such_fn'"),
    ("math:pi", "is a float, not a callable"),
    ("", "expected a name"),
])
def test_unresolvable_names_raise_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(KernelNotFoundError, match=message):
        resolve_kernel(spec)


def test_every_builtin_declares_its_features_from_the_registry() -> None:
    from triad.verify.support import declared_support

    assert set(BUILTIN_FEATURES) == set(BUILTIN_KERNELS)
    for name, kernel in BUILTIN_KERNELS.items():
        assert set(BUILTIN_FEATURES[name]) <= set(FEATURES), name
        assert declared_support(kernel).features == BUILTIN_FEATURES[name], name
    assert declared_support(BUILTIN_KERNELS["flex"]).dropout is False


@pytest.mark.parametrize("name", ["reference", "scratch", "native", "sdpa-math", "flex"])
def test_builtins_run_grouped_query_attention(name: str) -> None:
    """enable_gqa=True: 6 query heads on 2 K/V heads, against the NumPy reference (flex: forward on the CPU)."""
    torch.manual_seed(0)
    q = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    k, v = torch.randn(2, 2, 7, 4, dtype=torch.float64), torch.randn(2, 2, 7, 3, dtype=torch.float64)
    keep = torch.rand(5, 7) < 0.7
    expected = BUILTIN_KERNELS["reference"](q, k, v, keep, enable_gqa=True)
    torch.testing.assert_close(resolve_kernel(name)(q, k, v, keep, enable_gqa=True), expected, rtol=1e-12, atol=1e-14)


def test_flex_declines_what_flexattention_cannot_run_on_cpu() -> None:
    from triad.verify.support import is_declined

    q = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(NotImplementedError, match="no backward on CPU") as no_backward:
        resolve_kernel("flex")(q, q, q)
    with pytest.raises(NotImplementedError, match="no attention dropout") as no_dropout:
        resolve_kernel("flex")(q.detach(), q.detach(), q.detach(), dropout_p=0.1)
    assert is_declined(no_backward.value) and is_declined(no_dropout.value)


@pytest.mark.parametrize("name", list(FLASH_KERNELS))
def test_flash_interface_kernels_match_the_reference_forward(name: str) -> None:
    """Each FlashAttention-interface built-in, every feature at once, dense and packed (forward: flex has no
    backward on the CPU; the gradients are compared in test_attention_family.py)."""
    from reference.flash_attention import flash_attention_forward, flash_attention_varlen_forward

    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 5, 4, 3)), rng.standard_normal((2, 7, 2, 3)), rng.standard_normal((2, 7, 2, 3))
    options = {"causal": True, "window_size": (3, -1), "softcap": 2.0, "alibi_slopes": rng.random(4)}
    kernel = FLASH_KERNELS[name]
    assert set(kernel.features) == set(FEATURES)
    out, lse, _ = flash_attention_forward(q, k, v, **options)
    t = {n: torch.from_numpy(x) if isinstance(x, np.ndarray) else x for n, x in options.items()}
    actual = kernel.dense(*(torch.from_numpy(x) for x in (q, k, v)), **t)
    np.testing.assert_allclose(actual[0].numpy(), out, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(np.isneginf(actual[1].numpy()), np.isneginf(lse))
    cu_q, cu_k = np.array([0, 4, 4, 10], dtype=np.int32), np.array([0, 2, 5, 14], dtype=np.int32)
    q, k, v = q.reshape(10, 4, 3), k.reshape(14, 2, 3), v.reshape(14, 2, 3)
    out, lse, _ = flash_attention_varlen_forward(q, k, v, cu_q, cu_k, **options)
    actual = kernel.varlen(*(torch.from_numpy(x) for x in (q, k, v, cu_q, cu_k)), **t)
    np.testing.assert_allclose(actual[0].numpy(), out, rtol=1e-12, atol=1e-14)
    finite = np.isfinite(lse)
    np.testing.assert_allclose(actual[1].numpy()[finite], lse[finite], rtol=1e-12)


def test_reference_flash_kernel_backward_is_the_hand_written_one() -> None:
    """FLASH_KERNELS["reference"]: the NumPy backward through autograd equals scratch's autograd gradients."""
    torch.manual_seed(1)
    q = torch.randn(2, 4, 6, 3, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, 5, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    options = {"causal": True, "softcap": 3.0, "alibi_slopes": torch.rand(6, dtype=torch.float64)}
    grads = {}
    for name in ("reference", "scratch"):
        out, _ = FLASH_KERNELS[name].dense(q, k, v, **options)
        grads[name] = torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    for reference, scratch in zip(grads["reference"], grads["scratch"], strict=True):
        torch.testing.assert_close(reference, scratch, rtol=1e-12, atol=1e-14)
