"""Measure the float32 tolerance rule of ``triad/tolerance.py`` on hypothesis-drawn attention cases.

For each case, scratch and native (CPU) in float32 are compared with the float64 oracle; the
baseline is the NumPy reference computed in float32. Errors are printed in units of
u * mu (float32 ulps at the magnitude of the result) and the rule's violations are counted
for several factors and floors, so the constants in ``triad/tolerance.py`` can be re-derived.

    PYTHONPATH=. python benchmarks/calibrate_float32_rule.py [N_CASES]
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings

from equivalence_tests.strategies import AttentionCase, attention_cases
from reference.attention import attention_backward, attention_forward
from torch_impl.native.attention import scaled_dot_product_attention as native_sdpa
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from triad.harness.attention import run_attention
from triad.tolerance import EPS_BY_DTYPE, attention_magnitudes, max_abs_err

TENSORS = ("out", "dq", "dk", "dv")


def reference_run(case: AttentionCase, dtype: type) -> tuple[dict[str, np.ndarray], dict]:
    inputs, dout = case.arrays()
    cast = {n: (a.astype(dtype) if a is not None and a.dtype == np.float64 else a) for n, a in inputs.items()}
    out, cache = attention_forward(cast["q"], cast["k"], cast["v"], cast["attn_mask"],
                                   is_causal=case.mask_kind == "is_causal", scale=case.scale)
    return dict(zip(TENSORS, (out, *attention_backward(dout.astype(dtype), cache)), strict=True)), cache


def main(n_cases: int) -> None:
    rows: list[tuple[float, float, float]] = []  # (error, baseline error, max |logit|), errors in ulps at mu

    @settings(max_examples=n_cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=attention_cases())
    def measure(case: AttentionCase) -> None:
        oracle, cache = reference_run(case, np.float64)
        baseline, _ = reference_run(case, np.float32)
        inputs, dout = case.arrays()
        magnitudes = attention_magnitudes(dout, cache)
        for kernel in (scratch_sdpa, native_sdpa):
            actual = run_attention(kernel, inputs, dout, torch.float32, is_causal=case.mask_kind == "is_causal",
                                   scale=case.scale)
            for tensor in TENSORS:
                mu = max(magnitudes[tensor], float(np.max(np.abs(oracle[tensor]))))
                if mu == 0.0:
                    continue
                ulp = EPS_BY_DTYPE["float32"] * mu
                rows.append((max_abs_err(actual[tensor], oracle[tensor]) / ulp,
                             max_abs_err(baseline[tensor], oracle[tensor]) / ulp, magnitudes["logits"]))

    measure()
    data = np.array(rows)
    err, base, logits = data[:, 0], data[:, 1], data[:, 2]
    print(f"{len(data)} checks; max |logit| {logits.max():.3g}")
    print("error / (u mu) percentiles 50/90/99/max:", np.percentile(err, [50, 90, 99, 100]).round(2))
    print("factor  floor_ulps  logit_factor  violations")
    for factor in (1.0, 2.0, 3.0):
        for floor_ulps in (1.0, 2.0, 4.0):
            for logit_factor in (0.0, 1.0, 2.0):
                violations = int(np.sum(err > factor * base + floor_ulps + logit_factor * logits))
                print(f"{factor:6.0f}  {floor_ulps:10.0f}  {logit_factor:12.0f}  {violations:10d}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
