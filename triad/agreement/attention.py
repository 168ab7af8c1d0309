"""``triad check`` for the attention core: reference, scratch and native on one case."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from reference.attention import attention_backward, attention_forward
from reference.masks import causal_mask, padding_mask
from torch_impl.native.attention import scaled_dot_product_attention as native_sdpa
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from triad.agreement.base import ComponentResult, compare
from triad.tolerance import F64_REL_BOUND, attention_magnitudes, low_precision_bound, max_abs_err


def run_attention(
    kernel: Callable[..., torch.Tensor],
    inputs: Mapping[str, np.ndarray | None],
    dout: np.ndarray,
    dtype: torch.dtype,
    device: str = "cpu",
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Run an SDPA-shaped kernel on NumPy inputs (q, k, v, attn_mask); return out, dq, dk, dv as float64."""
    q, k, v = (torch.tensor(inputs[n], dtype=dtype, device=device, requires_grad=True) for n in ("q", "k", "v"))
    mask = inputs.get("attn_mask")
    mask_t = None if mask is None else torch.tensor(mask, device=device)
    if mask_t is not None and mask_t.is_floating_point():
        mask_t = mask_t.to(dtype)
    out = kernel(q, k, v, mask_t, **kwargs)
    out.backward(torch.tensor(dout, dtype=dtype, device=device))
    return {
        name: t.detach().cpu().double().numpy()
        for name, t in (("out", out), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad))
    }


def default_case(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """B=2, H=4, Lq=12, Lk=9, d_head=16, padding on the second sequence and a bottom-right causal
    mask, so Lq != Lk, padded keys and fully masked query rows all appear."""
    rng = np.random.default_rng(seed)
    B, H, Lq, Lk, E = 2, 4, 12, 9, 16
    tokens = np.array([[5] * Lk, [5] * (Lk - 3) + [0] * 3])  # (B, Lk); pad_id 0
    keep = padding_mask(tokens, pad_id=0) & causal_mask(Lq, Lk, "bottom_right")  # (B, 1, Lq, Lk)
    inputs = {
        "q": rng.standard_normal((B, H, Lq, E)),
        "k": rng.standard_normal((B, H, Lk, E)),
        "v": rng.standard_normal((B, H, Lk, E)),
        "attn_mask": keep,
    }
    dout = rng.standard_normal((B, H, Lq, E))
    return inputs, dout


def check_attention() -> list[ComponentResult]:
    inputs, dout = default_case()
    out, cache = attention_forward(inputs["q"], inputs["k"], inputs["v"], inputs["attn_mask"])
    dq, dk, dv = attention_backward(dout, cache)
    oracle = {"out": out, "dq": dq, "dk": dk, "dv": dv}
    magnitudes = attention_magnitudes(dout, cache)
    kernels = {"scratch": scratch_sdpa, "native": native_sdpa}

    results = [
        compare("attention", f"{name} vs reference", "float64",
                run_attention(kernel, inputs, dout, torch.float64), oracle, F64_REL_BOUND, magnitudes)
        for name, kernel in kernels.items()
    ]

    # float32: the baseline is the reference itself computed in float32; each torch
    # implementation may be LOW_PRECISION_FACTOR times as far from the float64 oracle.
    inputs32 = {n: (a.astype(np.float32) if a.dtype == np.float64 else a) for n, a in inputs.items()}
    out32, cache32 = attention_forward(inputs32["q"], inputs32["k"], inputs32["v"], inputs32["attn_mask"])
    baseline = dict(zip(("out", "dq", "dk", "dv"), (out32, *attention_backward(dout.astype(np.float32), cache32)),
                        strict=True))
    for name, kernel in kernels.items():
        result = compare("attention", f"{name} vs reference", "float32",
                         run_attention(kernel, inputs, dout, torch.float32), oracle, 0.0, magnitudes)
        result.tensor_bounds = {}
        for tensor, expected in oracle.items():
            mu = max(float(np.max(np.abs(expected))), magnitudes[tensor])
            allowed = low_precision_bound(max_abs_err(baseline[tensor], expected), mu, "float32", magnitudes["logits"])
            result.tensor_bounds[tensor] = allowed / mu
        result.bound = max(result.tensor_bounds.values())
        results.append(result)
    return results
