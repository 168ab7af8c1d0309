"""``verify_attention(kernel, interface="flash" | "varlen")``: the search over FlashAttention's interfaces.

The search of ``triad.verify.search`` (as the SDPA interface's): one small coverage case per feature
(``flash_coverage_cases``), then hypothesis over ``flash_cases``; the first failure is shrunk, run once
more on its own, and matched against the named diagnoses (``triad.verify.diagnoses``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from torch_impl.flash_kernels import FLASH_BUILTINS
from triad.verify.diagnoses import diagnose
from triad.verify.flash_cases import FlashCase, flash_cases, flash_coverage_cases, flash_features
from triad.verify.flash_judge import (
    LSE_LINE,
    FlashOutcome,
    dtype_of_eps,
    flash_oracle,
    lse_check,
    lse_expected,
    run_flash_kernel,
    signature_features,
)
from triad.verify.flash_relations import FLASH_RELATION_LINES, relation_checks
from triad.verify.judge import (
    AUTOGRAD_LINE,
    DETERMINISM_LINE,
    FINITE_LINE,
    MUTATION_LINE,
    RAISES_LINE,
    SHAPE_LINE,
    Kernel,
    agreement_checks,
    judged,
    same_bits,
)
from triad.verify.report import Report
from triad.verify.search import Search
from triad.verify.support import KernelSupport

BASELINES = {interface: kernels["scratch"] for interface, kernels in FLASH_BUILTINS.items()}
FLASH_TENSORS = ("out", LSE_LINE, "dq", "dk", "dv")


def effective_support(kernel: Kernel, support: KernelSupport) -> KernelSupport:
    """The declared support with the features searched made explicit: declared (all if none), less those whose
    keyword the kernel's signature lacks."""
    return dataclasses.replace(support, features=signature_features(kernel, flash_features(support)))


def check_flash_case(kernel: Kernel, case: FlashCase, *, device: str = "cpu", dtype: str = "float32",
                     supports: KernelSupport | None = None) -> FlashOutcome:
    """Every check of one case: agreement (out, lse, dq, dk, dv), shape/NaN/mutation/autograd, determinism,
    the relations; a failure is matched against the named diagnoses."""
    support = effective_support(kernel, supports or KernelSupport())
    case = case if isinstance(case.seqlens_q, tuple) else dataclasses.replace(
        case, seqlens_q=tuple(case.seqlens_q), seqlens_k=tuple(case.seqlens_k), window=tuple(case.window))
    backward, want_lse = support.backward, "lse" in support.features
    baseline = BASELINES[case.interface]
    arrays = case.arrays(dtype)
    expected, magnitudes, row_logits = flash_oracle(case, arrays)
    outcome = FlashOutcome(case, logits=magnitudes["logits"])
    with judged(outcome):
        actual = run_flash_kernel(kernel, case, arrays, dtype, device, backward, want_lse)
        base = run_flash_kernel(baseline, case, arrays, dtype, device, backward, True)
        outcome.actual = actual
        tensors = [n for n in ("out", "dq", "dk", "dv") if n in actual]
        outcome.checks += agreement_checks({n: actual[n] for n in tensors}, base, expected, magnitudes,
                                           row_logits, dtype)
        if "lse" in actual:
            wanted = lse_expected(case, arrays, expected["lse"], support.alibi_lse)
            outcome.checks += lse_check(actual["lse"], wanted, base["lse"], row_logits["lse"],
                                        dtype_of_eps(float(actual["lse_eps"])), case.Lk, case.d)
        again = run_flash_kernel(kernel, case, arrays, dtype, device, backward, want_lse)
        outcome.nondeterministic = not same_bits(actual, again)
        outcome.checks += relation_checks(kernel, baseline, case, arrays, dtype, device,
                                          "window" in support.features, magnitudes)
    if outcome.failed and outcome.actual is not None:
        outcome.diagnosis = diagnose(case, arrays, outcome.actual, expected, dtype,
                                     {c.line for c in outcome.failures()})
    return outcome


def _feature_conditions(case: FlashCase) -> dict[str, bool]:
    left, right = case.window
    return {
        "GQA (H/Hkv in 2..8, Hkv >= 2)": 1 < case.Hkv < case.H,
        "MQA (Hkv = 1)": case.Hkv == 1 and case.H > 1,
        "causal (bottom-right)": case.causal,
        "window: one side": (left >= 0) != (right >= 0) and case.window != (0, 0),
        "window: both sides": left >= 0 and right >= 0 and case.window != (0, 0),
        "window: 0": case.window == (0, 0),
        "window >= L": min(left, right) >= max(case.Lq, case.Lk),
        "softcap": case.softcap > 0,
        "ALiBi": case.alibi,
        "Lq > Lk": any(a > b for a, b in zip(case.seqlens_q, case.seqlens_k, strict=True)),
        "Lq < Lk": any(a < b for a, b in zip(case.seqlens_q, case.seqlens_k, strict=True)),
        "tile boundary (a multiple of 16, or one off)": any(n > 12 and n % 16 in (0, 1, 15)
                                                            for n in (*case.seqlens_q, *case.seqlens_k)),
        "varlen: an empty sequence": case.interface == "varlen" and 0 in (*case.seqlens_q, *case.seqlens_k),
        "varlen: a sequence of length 1": case.interface == "varlen" and 1 in case.seqlens_q,
    }


FEATURE_LINES = tuple(_feature_conditions(FlashCase("flash", 1, 1, (1,), (1,), 1, 1, False, (-1, -1), 0.0, False,
                                                    None, "gaussian", 1.0, 0)))
# the family feature (KernelSupport.features) each line needs
_LINE_NEEDS = {"GQA (H/Hkv in 2..8, Hkv >= 2)": "gqa", "MQA (Hkv = 1)": "gqa", "window: one side": "window",
               "window: both sides": "window", "window: 0": "window", "window >= L": "window", "softcap": "softcap",
               "ALiBi": "alibi"}


def flash_case_features(case: FlashCase) -> list[str]:
    """The report lines (features searched) a case counts towards."""
    return [line for line, holds in _feature_conditions(case).items() if holds]


def _empty_lines(report: Report, support: KernelSupport, interface: str) -> None:
    for name in (RAISES_LINE, SHAPE_LINE, FINITE_LINE, MUTATION_LINE, AUTOGRAD_LINE, DETERMINISM_LINE,
                 *FLASH_TENSORS, *FLASH_RELATION_LINES.values()):
        report.line(name)
    for name in FEATURE_LINES:
        if interface == "flash" and name.startswith("varlen"):
            continue
        report.line(name)
        if name in _LINE_NEEDS and _LINE_NEEDS[name] not in support.features:
            report.line(name).note = "not searched: declared unsupported, or its keyword is not in the signature"
    if not support.backward:
        for name in (AUTOGRAD_LINE, "dq", "dk", "dv"):
            report.line(name).note = "kernel declares no backward"
    if "lse" not in support.features:
        report.line(LSE_LINE).note = "kernel declares no LSE (or takes no return_attn_probs)"
    report.line(FLASH_RELATION_LINES["varlen_split" if interface == "flash" else "batch_split"]).note = (
        f"not a relation of the {interface} interface")


def tally_outcome(report: Report, outcome: FlashOutcome,
                  case_features: Callable[[Any], list[str]] = flash_case_features) -> None:
    """Count one case into the report: its feature lines (``case_features``) and its checks' lines."""
    report.tally(outcome, case_features(outcome.case), FLASH_TENSORS)


def run_flash_search(kernel: Kernel, support: KernelSupport, interface: str, device: str, dtype: str,
                     report: Report, max_examples: int, seed: int,
                     on_example: Callable[[int], None] | None) -> FlashOutcome | None:
    """Fill ``report``; return the minimal failure, if any."""
    support = effective_support(kernel, support)
    _empty_lines(report, support, interface)
    check = functools.partial(check_flash_case, kernel, device=device, dtype=dtype, supports=support)
    run = Search(check, tally_outcome, report, "flash", device, on_example)
    # the first coverage case that fails is the failure (already small): no search then
    run.run(flash_coverage_cases(support, interface),
            lambda failed: None if failed is not None else flash_cases(support, interface), max_examples, seed)
    return run.failures[-1] if run.failures else None
