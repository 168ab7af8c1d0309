"""The kernel registry: built-in names and a user's ``package.module:function``."""

from __future__ import annotations

import pytest
import torch

from torch_impl.kernels import BUILTIN_KERNELS, KernelNotFoundError, resolve_kernel


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
