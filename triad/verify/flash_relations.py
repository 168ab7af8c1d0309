"""Metamorphic relations of FlashAttention's interface: exact in real arithmetic, checked on the kernel alone.

- ``gqa_repeat``: GQA with K/V heads ``g`` serving query heads ``g r .. g r + r - 1`` equals attention with
  each K/V head repeated ``r`` times by hand (``Hkv = H``).
- ``window_wide``: a window at least as wide as the keys (``(Lq + Lk, Lq + Lk)``) equals no window.
- ``batch_split``: a batch of B equals its elements run one at a time (flash); ``varlen_split``: packed
  sequences equal each sequence run alone (varlen).

Each side is a forward of the kernel; the difference is judged by the tolerance rule against the
baseline's difference on the same two sides (as the SDPA interface's relations are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from triad.tolerance import max_abs_err
from triad.verify.flash_cases import FlashCase
from triad.verify.flash_judge import run_flash_kernel
from triad.verify.judge import CheckResult, Kernel, KernelDeclinedError, rule_check

FLASH_RELATION_LINES = {
    "gqa_repeat": "relation: GQA = K/V heads repeated by hand",
    "window_wide": "relation: window >= L = no window",
    "batch_split": "relation: splitting the batch changes nothing",
    "varlen_split": "relation: varlen = each sequence alone",
}


def applicable_flash_relations(case: FlashCase, window_supported: bool) -> list[str]:
    relations = []
    if case.Hkv < case.H:
        relations.append("gqa_repeat")
    if window_supported and case.window == (-1, -1):
        relations.append("window_wide")
    if case.interface == "flash" and case.B > 1:
        relations.append("batch_split")
    if case.interface == "varlen" and case.B > 1:
        relations.append("varlen_split")
    return relations


def _sequence(case: FlashCase, arrays: dict[str, Any], n: int) -> tuple[FlashCase, dict[str, Any]]:
    """Sequence (varlen) or batch element (flash) ``n`` alone."""
    one = dataclasses.replace(case, seqlens_q=(case.seqlens_q[n],), seqlens_k=(case.seqlens_k[n],))
    if case.interface == "flash":
        return one, arrays | {name: arrays[name][n:n + 1] for name in ("q", "k", "v", "dout")}
    cu_q, cu_k = arrays["cu_seqlens_q"], arrays["cu_seqlens_k"]
    rows, keys = slice(cu_q[n], cu_q[n + 1]), slice(cu_k[n], cu_k[n + 1])
    return one, arrays | {"q": arrays["q"][rows], "k": arrays["k"][keys], "v": arrays["v"][keys],
                          "dout": arrays["dout"][rows],
                          "cu_seqlens_q": np.array([0, case.seqlens_q[n]], dtype=np.int32),
                          "cu_seqlens_k": np.array([0, case.seqlens_k[n]], dtype=np.int32)}


def relation_sides(kernel: Kernel, relation: str, case: FlashCase, arrays: dict[str, Any], dtype: str,
                   device: str) -> tuple[np.ndarray, np.ndarray]:
    """(lhs, rhs) outputs of ``relation``, equal in exact arithmetic."""
    def forward(c: FlashCase, a: dict[str, Any], **overrides: Any) -> np.ndarray:
        return run_flash_kernel(kernel, c, a, dtype, device, False, False, **overrides)["out"]

    if relation == "gqa_repeat":
        repeated = {n: np.repeat(arrays[n], case.n_rep, axis=-2) for n in ("k", "v")}  # (..., H, d): head h // r
        return forward(case, arrays), forward(dataclasses.replace(case, Hkv=case.H), arrays | repeated)
    if relation == "window_wide":
        wide = case.Lq + case.Lk
        return forward(case, arrays, window_size=(wide, wide)), forward(case, arrays)
    if relation in ("batch_split", "varlen_split"):
        parts = [forward(*_sequence(case, arrays, n)) for n in range(case.B)]
        together = forward(case, arrays)
        return together, np.concatenate(parts, axis=0)
    raise ValueError(f"relation: expected one of {tuple(FLASH_RELATION_LINES)}, got {relation!r}")


def relation_checks(kernel: Kernel, baseline: Kernel, case: FlashCase, arrays: dict[str, Any], dtype: str,
                    device: str, window_supported: bool, magnitudes: dict[str, float]) -> list[CheckResult]:
    """The rule on |lhs - rhs| of the kernel against the baseline's, for every relation that applies."""
    return judge_relations(applicable_flash_relations(case, window_supported), FLASH_RELATION_LINES,
                           lambda fn, relation: relation_sides(fn, relation, case, arrays, dtype, device),
                           kernel, baseline, magnitudes, dtype)


Sides = Callable[[Kernel, str], tuple[np.ndarray, np.ndarray]]


def judge_relations(relations: list[str], lines: dict[str, str], sides: Sides, kernel: Kernel, baseline: Kernel,
                    magnitudes: dict[str, float], dtype: str) -> list[CheckResult]:
    """For each relation, the rule on the kernel's |lhs - rhs| (``sides(kernel, relation)``) against the
    baseline's on the same two sides. A relation whose runs the kernel declines (an option it refuses) is left
    out."""
    checks = []
    for relation in relations:
        try:
            lhs, rhs = sides(kernel, relation)
        except KernelDeclinedError:
            continue
        base_lhs, base_rhs = sides(baseline, relation)
        # two sides, each an output: twice the underflow, twice sqrt(n) for the sums
        checks.append(rule_check(lines[relation], "max", max_abs_err(lhs, rhs), max_abs_err(base_lhs, base_rhs),
                                 magnitudes["out"], dtype, magnitudes["logit_magnitude"],
                                 2.0 * magnitudes["out_underflow"], 4.0 * magnitudes["out_reduction"]))
    return checks
