r"""Dropout: inverted dropout is unbiased, so many runs average to the output without dropout.

A fused kernel draws its random numbers its own way, so its dropout can never be matched element
by element. What every correct one satisfies: with keep-mask :math:`Z` (each entry 1 with
probability :math:`1 - p`) the output :math:`(P \circ Z / (1 - p)) V` has expectation :math:`P V`.
With the keep-mask drawn independently for every entry of :math:`P` (as SDPA and FlashAttention
do) the variance of one output element is known exactly from the oracle's probabilities,

.. math::  \mathrm{Var}(O_{id}) = \frac{p}{1-p} \sum_j P_{ij}^2 V_{jd}^2,

so over ``RUNS`` runs with ``dropout_p = P_DROP`` the mean :math:`\bar O` of each element must be
within ``Z_BOUND`` standard errors of the oracle (plus the usual floor for rounding):

.. math::  |\bar O - O| \le 6 \sqrt{\mathrm{Var}(O) / n} + u\,\mu\,(2 + 4\max s|q||k|^\top)

The exact variance matters: a sample standard deviation underestimates it exactly when few entries
happen to be dropped, which made correct kernels fail (scratch: 3 of 6 runs of 200 cases). The
mean of 64 independent draws is a binomial-like sum; 6 standard deviations below (the only side a
keep-fraction of 0.75 can reach that far) has a probability far below 1e-9. A kernel that ignores
``dropout_p`` (every run equal), forgets the :math:`1/(1-p)` rescaling (mean :math:`(1-p) O`) or
drops whole rows fails.

**The baseline allowance.** In a low-precision dtype the mean also carries what rounding does the
same way in every run (the inputs, the rescaling :math:`1/(1-p)`, the probabilities, the random
numbers themselves are rounded alike each time), which no number of runs averages away. As in every
other check (``triad.tolerance``), the plain implementation in the same dtype measures it: the
baseline (``scratch``) runs the same ``RUNS`` times, and its *excess*, the largest amount by which its
mean misses the oracle beyond its own statistical allowance, is what that dtype's rounding costs:

.. math::  e_\text{base} = \max_i \max(0,\ |\bar O^\text{base}_i - O_i| - 6\,\sigma_i / \sqrt n - \text{floor}_i),
           \qquad |\bar O - O| \le 6\,\sigma / \sqrt n + 2\,e_\text{base} + \text{floor}

For a correct baseline in float64 or float32 the excess is 0 (the rule is then the one above); a
planted bug is judged against the baseline's excess, not its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reference.attention import attention_forward
from torch_impl.kernels import TORCH_DTYPES
from torch_impl.scratch.attention import scaled_dot_product_attention as baseline_sdpa
from triad.tolerance import KERNEL_LOGIT_FLOOR_FACTOR, LOW_PRECISION_FACTOR, low_precision_bound
from triad.verify.cases import VerifyCase
from triad.verify.judge import CheckResult, Kernel, call_kernel, mask_tensor

DROPOUT_LINE = "dropout: the mean of many runs is the output without dropout"
P_DROP = 0.25
RUNS = 64
Z_BOUND = 6.0


def _runs(kernel: Kernel, case: VerifyCase, arrays: dict[str, Any], dtype: str, device: str) -> np.ndarray:
    """RUNS outputs of ``kernel`` with dropout_p = P_DROP, torch seeded from the case: (RUNS, B, H, Lq, Ev)."""
    q, k, v = (torch.tensor(np.ascontiguousarray(arrays[n]), dtype=TORCH_DTYPES[dtype], device=device)
               for n in ("q", "k", "v"))
    attn_mask = mask_tensor(arrays["attn_mask"], dtype, device)
    torch.manual_seed(case.seed)
    with torch.no_grad():
        return np.stack([
            call_kernel(kernel, q, k, v, attn_mask, case.is_causal, case.effective_scale, P_DROP).double().cpu().numpy()
            for _ in range(RUNS)
        ])  # (RUNS, B, H, Lq, Ev)


def baseline_excess(baseline_runs: np.ndarray, expected: np.ndarray, statistical: np.ndarray) -> float:
    """How far the baseline's mean misses ``expected`` beyond ``statistical`` (its allowance), at worst; 0 if never.

    All in the same units; a baseline with NaN/inf gives 0 (no allowance from a broken baseline).
    """
    if not np.all(np.isfinite(baseline_runs)) or expected.size == 0:
        return 0.0
    return float(np.max(np.maximum(np.abs(baseline_runs.mean(axis=0) - expected) - statistical, 0.0)))


def dropout_check(kernel: Kernel, case: VerifyCase, arrays: dict[str, Any], expected_out: np.ndarray,
                  magnitudes: dict[str, float], row_logits: np.ndarray, dtype: str, device: str) -> CheckResult:
    """Run the kernel and the baseline RUNS times with dropout_p = P_DROP (torch seeded from the case) and test
    the kernel's mean against the oracle, with the baseline's excess as the dtype's allowance."""
    runs = _runs(kernel, case, arrays, dtype, device)  # (RUNS, B, H, Lq, Ev)
    if not np.all(np.isfinite(runs)):
        return CheckResult(DROPOUT_LINE, False, message=f"NaN/inf in an output with dropout_p={P_DROP}")
    if np.any(expected_out != 0.0) and np.all(runs == runs[0]):
        return CheckResult(DROPOUT_LINE, False, message=f"dropout_p={P_DROP} ignored: {RUNS} runs gave the same bits")
    mu = magnitudes["out"] / (1.0 - P_DROP)  # a kept probability is rescaled by 1/(1-p)
    unit = mu if mu > 0.0 else 1.0  # statistics in units of mu: squares of near-subnormal outputs underflow
    runs, expected = runs / unit, expected_out / unit  # (RUNS, B, H, Lq, Ev), (B, H, Lq, Ev)
    _, cache = attention_forward(arrays["q"], arrays["k"], arrays["v"], arrays["attn_mask"],
                                 is_causal=case.is_causal, scale=case.effective_scale)
    variance = P_DROP / (1.0 - P_DROP) * (cache["probs"] ** 2 @ (arrays["v"] / unit) ** 2)  # (B, H, Lq, Ev)
    standard_error = np.sqrt(variance / RUNS)  # (B, H, Lq, Ev)
    floor = low_precision_bound(0.0, mu / unit, dtype, row_logits[..., None], KERNEL_LOGIT_FLOOR_FACTOR,
                                magnitudes["out_underflow"] / unit,
                                magnitudes["out_reduction"])  # (B, H, Lq, 1): each row its own logits
    statistical = Z_BOUND * standard_error + floor  # (B, H, Lq, Ev)
    excess = baseline_excess(_runs(baseline_sdpa, case, arrays, dtype, device) / unit, expected, statistical)
    allowed = statistical + LOW_PRECISION_FACTOR * excess  # (B, H, Lq, Ev)
    diff = np.abs(runs.mean(axis=0) - expected)  # (B, H, Lq, Ev)
    worst = np.unravel_index(int(np.argmax(diff - allowed)), diff.shape) if diff.size else ()
    err, bound = (float(diff[worst]), float(allowed[worst])) if diff.size else (0.0, 0.0)
    return CheckResult(DROPOUT_LINE, err <= bound, err, excess, bound, "mean of runs")
