"""``triad check`` for the attention core: reference, scratch and native on one case."""

from __future__ import annotations

import numpy as np
import torch

from reference.attention import attention_backward, attention_forward
from torch_impl.native.attention import scaled_dot_product_attention as native_sdpa
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from triad.agreement.base import ComponentResult, compare
from triad.harness.attention import default_case, run_attention
from triad.tolerance import F64_REL_BOUND, attention_magnitudes, low_precision_bound, max_abs_err


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
        tensor_bounds = {}
        for tensor, expected in oracle.items():
            mu = max(float(np.max(np.abs(expected))), magnitudes[tensor])
            allowed = low_precision_bound(max_abs_err(baseline[tensor], expected), mu, "float32", magnitudes["logits"])
            tensor_bounds[tensor] = allowed / mu
        results.append(compare("attention", f"{name} vs reference", "float32",
                               run_attention(kernel, inputs, dout, torch.float32), oracle, tensor_bounds, magnitudes))
    return results
