"""``verify_attention(kernel, interface="kvcache")``: the search over FlashAttention's ``flash_attn_with_kvcache``.

The search of ``triad.verify.search``: one small coverage case per feature (``kvcache_coverage_cases``), then
hypothesis over ``kvcache_cases``. Each case is judged as its equivalent varlen case (``KvcacheCase.varlen``):
out, the LSE when returned and dq when the output carries a gradient (FlashAttention's own kvcache function
has none: the gradient lines then say "forward only"), plus the cache update, the relations of
``triad.verify.kvcache_relations`` and, on a failure, the named diagnoses of ``triad.verify.kvcache_diagnoses``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from torch_impl.flash_kernels import FLASH_BUILTINS
from triad.verify.flash_api import tally_outcome
from triad.verify.flash_cases import flash_features
from triad.verify.flash_judge import (
    LSE_LINE,
    FlashOutcome,
    dtype_of_eps,
    flash_oracle,
    kernel_keywords,
    lse_check,
    lse_expected,
)
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
from triad.verify.kvcache_cases import KvcacheCase, kvcache_cases, kvcache_coverage_cases
from triad.verify.kvcache_diagnoses import diagnose_kvcache
from triad.verify.kvcache_judge import (
    CACHE_LINE,
    KVCACHE_FEATURE_KEYWORDS,
    cache_update_check,
    case_inputs,
    run_kvcache_kernel,
    to_varlen,
)
from triad.verify.kvcache_relations import KVCACHE_RELATION_LINES, kvcache_relation_checks
from triad.verify.report import Report
from triad.verify.search import Search
from triad.verify.support import KernelSupport

BASELINE = FLASH_BUILTINS["kvcache"]["scratch"]
FORWARD_ONLY = "forward only where the output carries no gradient (skipped cases)"


@dataclasses.dataclass
class KvcacheOutcome(FlashOutcome):
    forward_only: bool = False  # the output carried no gradient: dq not checked


def kvcache_support(kernel: Kernel, support: KernelSupport) -> KernelSupport:
    """The declared support less the features whose keyword the kernel does not take (no ``block_table``
    keyword: a contiguous cache only)."""
    names = kernel_keywords(kernel)
    features = tuple(f for f in flash_features(support) if names is None or f not in KVCACHE_FEATURE_KEYWORDS
                     or KVCACHE_FEATURE_KEYWORDS[f] in names)
    paged = names is None or "block_table" in names
    return dataclasses.replace(support, features=features, page_sizes=support.page_sizes if paged else ())


def check_kvcache_case(kernel: Kernel, case: KvcacheCase, *, device: str = "cpu", dtype: str = "float32",
                       supports: KernelSupport | None = None) -> KvcacheOutcome:
    """Every check of one case: the cache update, agreement (out, lse, dq) with the varlen oracle,
    shape/NaN/mutation/autograd, determinism, the relations; a failure is matched against the diagnoses."""
    support = kvcache_support(kernel, supports or KernelSupport())
    arrays, varlen = case.arrays(dtype), case.varlen()
    expected, magnitudes, row_logits = flash_oracle(varlen, arrays["varlen"])
    outcome = KvcacheOutcome(case, logits=magnitudes["logits"])
    inputs, want_lse = case_inputs(case, arrays), "lse" in support.features
    with judged(outcome):
        run = run_kvcache_kernel(kernel, inputs, dtype, device, support.backward, want_lse)
        base = to_varlen(case, run_kvcache_kernel(BASELINE, inputs, dtype, device, not run.forward_only,
                                                  True).result)
        outcome.actual, outcome.forward_only = to_varlen(case, run.result), run.forward_only
        outcome.checks.append(cache_update_check(case, inputs, run))
        outcome.checks += agreement_checks({n: outcome.actual[n] for n in ("out", "dq") if n in outcome.actual},
                                           base, expected, magnitudes, row_logits, dtype)
        if "lse" in outcome.actual:
            wanted = lse_expected(varlen, arrays["varlen"], expected["lse"], support.alibi_lse)
            outcome.checks += lse_check(outcome.actual["lse"], wanted, base["lse"], row_logits["lse"],
                                        dtype_of_eps(float(outcome.actual["lse_eps"])), varlen.Lk, case.d)
        again = run_kvcache_kernel(kernel, inputs, dtype, device, support.backward, want_lse)
        outcome.nondeterministic = not same_bits(run.result, again.result)
        outcome.checks += kvcache_relation_checks(kernel, BASELINE, case, arrays, dtype, device, magnitudes)
    if outcome.failed and outcome.actual is not None:
        outcome.diagnosis = diagnose_kvcache(case, arrays, outcome.actual, expected, dtype,
                                             {c.line for c in outcome.failures()})
    return outcome


def _feature_conditions(case: KvcacheCase) -> dict[str, bool]:
    left, right = case.window
    return {
        "contiguous cache": case.page_size == 0,
        f"paged: page size {case.page_size}": case.page_size > 0,
        "append (Lnew > 0)": case.Lnew > 0,
        "decode Lq = 1": case.Lq == 1,
        "Lq > 1": case.Lq > 1,
        "an empty cache (cache_seqlens = 0)": 0 in case.cache_seqlens,
        "GQA (H/Hkv in 2..8, Hkv >= 2)": 1 < case.Hkv < case.H,
        "MQA (Hkv = 1)": case.Hkv == 1 and case.H > 1,
        "causal (bottom-right)": case.causal,
        "window": (left, right) != (-1, -1),
        "softcap": case.softcap > 0,
        "ALiBi": case.alibi,
        "a cache of 1000 tokens or more": max(case.cache_seqlens, default=0) >= 1000,
        "tile boundary (Lk a multiple of 16, or one off)": any(n > 12 and n % 16 in (0, 1, 15)
                                                               for n in case.seqlens_k),
    }


def kvcache_case_features(case: KvcacheCase) -> list[str]:
    """The report lines (features searched) a case counts towards."""
    return [line for line, holds in _feature_conditions(case).items() if holds]


def _tally(report: Report, outcome: KvcacheOutcome) -> None:
    tally_outcome(report, outcome, kvcache_case_features)
    if outcome.forward_only and not outcome.declined:  # counted as a skipped gradient check
        for name in (AUTOGRAD_LINE, "dq"):
            report.line(name).skipped += 1
            report.line(name).note = FORWARD_ONLY


# the family feature (KernelSupport.features) each line needs
_LINE_NEEDS = {"GQA (H/Hkv in 2..8, Hkv >= 2)": "gqa", "MQA (Hkv = 1)": "gqa", "window": "window",
               "softcap": "softcap", "ALiBi": "alibi"}


def _empty_lines(report: Report, support: KernelSupport) -> None:
    for name in (RAISES_LINE, SHAPE_LINE, FINITE_LINE, MUTATION_LINE, CACHE_LINE, AUTOGRAD_LINE, DETERMINISM_LINE,
                 "out", LSE_LINE, "dq", *KVCACHE_RELATION_LINES.values()):
        report.line(name)
    example = KvcacheCase(1, 1, 1, (1,), 0, 0, 0, 8, False, (-1, -1), 0.0, False, None, "gaussian", 1.0, 0)
    for name in _feature_conditions(example):
        if not name.startswith("paged"):
            report.line(name)
        if name in _LINE_NEEDS and _LINE_NEEDS[name] not in support.features:
            report.line(name).note = "not searched: declared unsupported, or its keyword is not in the signature"
    for page_size in support.page_sizes:
        report.line(f"paged: page size {page_size}")
    if not support.backward:
        for name in (AUTOGRAD_LINE, "dq"):
            report.line(name).note = "forward only: the kernel declares no backward"
    if "lse" not in support.features:
        report.line(LSE_LINE).note = "kernel declares no LSE (or takes no return_softmax_lse)"


def run_kvcache_search(kernel: Kernel, support: KernelSupport, device: str, dtype: str, report: Report,
                       max_examples: int, seed: int, on_example: Callable[[int], None] | None) -> KvcacheOutcome | None:
    """Fill ``report``; return the minimal failure, if any."""
    support = kvcache_support(kernel, support)
    _empty_lines(report, support)
    check = functools.partial(check_kvcache_case, kernel, device=device, dtype=dtype, supports=support)
    run = Search(check, _tally, report, "flash", device, on_example)
    # the first coverage case that fails is the failure (already small): no search then
    run.run(kvcache_coverage_cases(support), lambda failed: None if failed is not None else kvcache_cases(support),
            max_examples, seed)
    return run.failures[-1] if run.failures else None  # type: ignore[return-value]
