"""Metamorphic relations of the KV-cache interface: exact in real arithmetic, checked on the kernel alone.

- ``paged_contiguous``: a paged cache equals the same keys in a contiguous cache (the same case with
  ``page_size = 0``).
- ``decode_rows``: under causal attention, the Lq rows of a decode step equal each row alone (Lq = 1) against
  the cache truncated to the keys it sees: row i of element b alone, its cache holding the step's Lk_b keys
  with ``cache_seqlens = Lk_b - (Lq - 1 - i)`` -- decode is the last rows of full causal attention. The last
  ``DECODE_ROWS`` rows are checked so (each is one more call).

Each side is a forward of the kernel; the difference is judged by the tolerance rule against the baseline's
difference on the same two sides (as the flash relations are, ``triad.verify.flash_relations``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from triad.verify.flash_relations import judge_relations
from triad.verify.judge import CheckResult, Kernel
from triad.verify.kvcache_cases import KvcacheCase
from triad.verify.kvcache_judge import case_inputs, run_kvcache_kernel

DECODE_ROWS = 4  # rows checked alone by decode_rows (the last ones: a call each)
KVCACHE_RELATION_LINES = {
    "paged_contiguous": "relation: paged = the same cache contiguous",
    "decode_rows": "relation: decode = the last rows of full causal attention",
}


def applicable_kvcache_relations(case: KvcacheCase) -> list[str]:
    return (["paged_contiguous"] if case.page_size else []) + (["decode_rows"] if case.causal and case.Lq > 1 else [])


def _row_alone(case: KvcacheCase, arrays: dict[str, Any], row: int) -> dict[str, Any]:
    """Query row ``row`` alone against a contiguous cache of every element's Lk_b keys, truncated to those it
    sees under causal attention (bottom-right: Lk_b - (Lq - 1 - row) of them)."""
    packed, cu_k = arrays["varlen"], arrays["varlen"]["cu_seqlens_k"]
    B, Hkv, d = case.B, case.Hkv, case.d
    k_cache, v_cache = np.zeros((B, case.Lk + 1, Hkv, d)), np.zeros((B, case.Lk + 1, Hkv, d))  # (B, Lk + 1, Hkv, d)
    for b in range(B):
        n = cu_k[b + 1] - cu_k[b]
        k_cache[b, :n], v_cache[b, :n] = packed["k"][cu_k[b]:cu_k[b + 1]], packed["v"][cu_k[b]:cu_k[b + 1]]
    seen = np.maximum(np.array(case.seqlens_k) - (case.Lq - 1 - row), 0).astype(np.int32)  # (B,)
    return case_inputs(case, arrays) | {"q": arrays["q"][:, row:row + 1], "dout": arrays["dout"][:, row:row + 1],
                                        "k_cache": k_cache, "v_cache": v_cache, "k": None, "v": None,
                                        "cache_seqlens": seen, "block_table": None}


def relation_sides(kernel: Kernel, relation: str, case: KvcacheCase, arrays: dict[str, Any], dtype: str,
                   device: str) -> tuple[np.ndarray, np.ndarray]:
    """(lhs, rhs) outputs of ``relation``, equal in exact arithmetic."""
    def forward(inputs: dict[str, Any]) -> np.ndarray:
        return run_kvcache_kernel(kernel, inputs, dtype, device, False, False).result["out"]

    together = forward(case_inputs(case, arrays))
    if relation == "paged_contiguous":
        contiguous = dataclasses.replace(case, page_size=0)
        return together, forward(case_inputs(contiguous, contiguous.arrays(dtype)))
    if relation == "decode_rows":  # the last DECODE_ROWS rows, each alone
        rows = range(max(0, case.Lq - DECODE_ROWS), case.Lq)
        return together[:, rows.start:], np.concatenate([forward(_row_alone(case, arrays, i)) for i in rows], axis=1)
    raise ValueError(f"relation: expected one of {tuple(KVCACHE_RELATION_LINES)}, got {relation!r}")


def kvcache_relation_checks(kernel: Kernel, baseline: Kernel, case: KvcacheCase, arrays: dict[str, Any], dtype: str,
                            device: str, magnitudes: dict[str, float]) -> list[CheckResult]:
    """The rule on |lhs - rhs| of the kernel against the baseline's, for every relation that applies."""
    return judge_relations(applicable_kvcache_relations(case), KVCACHE_RELATION_LINES,
                           lambda fn, relation: relation_sides(fn, relation, case, arrays, dtype, device),
                           kernel, baseline, magnitudes, dtype)
