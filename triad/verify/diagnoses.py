r"""Named diagnoses: when a failure matches a known bug, say which, in one line beside the numbers.

Each diagnosis re-runs the float64 reference *with the bug* (``buggy_attention``: the reference's own pieces --
``band_keep``, ``alibi_row_bias``, ``softcap_forward``, ``masked_softmax_forward`` -- composed with one
step done wrong, or ``reference.flash_attention`` itself with a wrong option) and fits when the kernel
matches the buggy result much better than the correct one: its error against the buggy version is at
most ``FIT_RATIO`` of its error against the oracle and at most ``FIT_ABS`` of the magnitude. A diagnosis
that does not fit says nothing; the first that fits is reported.

The patterns: fully masked rows filled with the mean of V (a finite fill such as -1e9) or NaN (-inf with
no guard) where the contract is 0; causal/window aligned top-left instead of bottom-right; softmax in
float32 under float64 inputs; scale 1/d instead of 1/sqrt(d); the LSE in base 2; GQA heads mapped
``h % Hkv`` instead of ``h // (H / Hkv)``; softcap applied after the masks (a masked key gets
:math:`-c`, not :math:`-\infty`); a window bound off by one; a varlen sequence attending across its
boundary (the pack as one sequence); an LSE shifted by exactly :math:`m_h (i + L_k - L_q)` under causal
ALiBi (FlashAttention 2's convention, which a kernel declares with ``KernelSupport(alibi_lse="fa2")``);
``window_size=(left, -1)`` read as ``(left, Lk)`` (FlashAttention 2's issue 895: early rows lose keys
when :math:`L_q > L_k + 1`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from reference.masks import band_keep
from reference.score_mods import alibi_row_bias, softcap_forward
from reference.softmax import masked_softmax_forward
from triad.verify.flash_cases import FlashCase
from triad.verify.flash_judge import alibi_lse_shift, reference_forward

FIT_RATIO = 0.05
FIT_ABS = 1e-2


@dataclasses.dataclass(frozen=True)
class Bug:
    """One wrong step of ``buggy_attention`` (all False/"zero": the reference itself)."""

    top_left: bool = False  # causal / window anchored at query i instead of i + Lk - Lq
    gqa_modulo: bool = False  # query head h reads K/V head h % Hkv
    softcap_after_mask: bool = False  # tanh over the masked scores: a masked key scores -c
    fill: str = "zero"  # an empty row's output: "zero", "mean" (of V) or "nan"
    whole_pack: bool = False  # varlen: the pack attended as one sequence


def _one_sequence(q: np.ndarray, k: np.ndarray, v: np.ndarray, slopes: np.ndarray | None, case: FlashCase,
                  bug: Bug) -> tuple[np.ndarray, np.ndarray]:
    """q (Lq, H, d), k (Lk, Hkv, d), v (Lk, Hkv, dv) -> out (Lq, H, dv), lse (H, Lq), with ``bug``."""
    Lq, H, Lk = q.shape[0], q.shape[1], k.shape[0]
    heads = np.arange(H) % case.Hkv if bug.gqa_modulo else np.arange(H) // case.n_rep  # (H,)
    qh, kh, vh = np.swapaxes(q, 0, 1), np.swapaxes(k, 0, 1)[heads], np.swapaxes(v, 0, 1)[heads]  # (H, L, .)
    scores = case.effective_scale * (qh @ np.swapaxes(kh, -1, -2))  # (H, Lq, Lk)
    if not bug.softcap_after_mask:
        scores, _ = softcap_forward(scores, case.softcap)
    anchors = np.arange(Lq) + (0 if bug.top_left else Lk - Lq)  # (Lq,)
    cols = np.arange(Lk)  # (Lk,)
    if slopes is not None:
        scores = scores + alibi_row_bias(np.broadcast_to(slopes[:, None], (H, Lq)), anchors, cols)  # (H, Lq, Lk)
    left, right = case.window[0], 0 if case.causal else case.window[1]
    scores = np.where(band_keep(anchors, cols, left, right), scores, -np.inf)  # (H, Lq, Lk)
    if bug.softcap_after_mask and case.softcap:
        scores = case.softcap * np.tanh(scores / case.softcap)  # (H, Lq, Lk); -inf -> -c
    probs, lse = masked_softmax_forward(scores)  # (H, Lq, Lk), (H, Lq)
    out = probs @ vh  # (H, Lq, dv)
    empty = np.isneginf(lse)  # (H, Lq)
    if bug.fill == "mean" and Lk > 0:
        out = np.where(empty[..., None], vh.mean(axis=1, keepdims=True), out)  # (H, Lq, dv)
    elif bug.fill == "nan":
        out = np.where(empty[..., None], np.nan, out)
    return np.swapaxes(out, 0, 1), lse  # (Lq, H, dv), (H, Lq)


def buggy_attention(case: FlashCase, arrays: dict[str, Any], bug: Bug) -> dict[str, np.ndarray]:
    """out and lse of the case (float64, the kernel's layouts) computed with ``bug``."""
    q, k, v, slopes = arrays["q"], arrays["k"], arrays["v"], arrays["alibi_slopes"]
    if case.interface == "flash":
        parts = [_one_sequence(q[b], k[b], v[b], slopes, case, bug) for b in range(case.B)]
        return {"out": np.stack([o for o, _ in parts]), "lse": np.stack([lse for _, lse in parts])}
    cu_q, cu_k = arrays["cu_seqlens_q"], arrays["cu_seqlens_k"]
    bounds = [(0, len(q), 0, len(k))] if bug.whole_pack else [
        (cu_q[n], cu_q[n + 1], cu_k[n], cu_k[n + 1]) for n in range(case.B)]
    parts = [_one_sequence(q[a:b], k[c:e], v[c:e], slopes, case, bug) for a, b, c, e in bounds]
    return {"out": np.concatenate([o for o, _ in parts]), "lse": np.concatenate([lse for _, lse in parts], axis=1)}


def _off_by_one_windows(case: FlashCase) -> list[tuple[bool, tuple[int, int]]]:
    """(causal, window) one step wider or narrower on one bounded side."""
    left, right = case.window[0], 0 if case.causal else case.window[1]
    variants = []
    for side, bound in ((0, left), (1, right)):
        for step in (-1, 1):
            if bound >= 0 and bound + step >= 0:
                window = [left, right]
                window[side] = bound + step
                variants.append((False, (window[0], window[1])))
    return variants


Variant = Callable[[FlashCase, dict[str, Any]], list[dict[str, np.ndarray]]]


def _reference(case: FlashCase, arrays: dict[str, Any], **options: Any) -> dict[str, np.ndarray]:
    out, lse, _ = reference_forward(case, arrays, **options)
    return {"out": out, "lse": lse}


def _float32_reference(case: FlashCase, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    as32 = arrays | {n: arrays[n].astype(np.float32) for n in ("q", "k", "v")}
    as32["alibi_slopes"] = None if arrays["alibi_slopes"] is None else arrays["alibi_slopes"].astype(np.float32)
    return {n: x.astype(np.float64) for n, x in _reference(case, as32).items()}


# name -> (message, applies to the case, variants (each {"out"?, "lse"?}), which tensors it explains)
DIAGNOSES: dict[str, tuple[str, Callable[[FlashCase], bool], Variant]] = {
    "mean_of_v": ("fully masked rows give the mean of V (a finite fill such as -1e9 or finfo.min), the contract "
                  "is 0", lambda c: True, lambda c, a: [{"out": buggy_attention(c, a, Bug(fill="mean"))["out"]}]),
    "nan_rows": ("fully masked rows give NaN (-inf with no guard), the contract is 0", lambda c: True,
                 lambda c, a: [{"out": buggy_attention(c, a, Bug(fill="nan"))["out"]}]),
    "top_left": ("causal/window aligned top-left instead of bottom-right (FlashAttention aligns the last query "
                 "with the last key)", lambda c: (c.causal or c.window != (-1, -1) or c.alibi)
                 and c.seqlens_q != c.seqlens_k,
                 lambda c, a: [buggy_attention(c, a, Bug(top_left=True))]),
    "scale_1_over_d": ("scale 1/d instead of 1/sqrt(d)", lambda c: c.scale is None and c.d > 1,
                       lambda c, a: [_reference(c, a, softmax_scale=1.0 / c.d)]),
    "gqa_modulo": ("GQA heads mapped h % Hkv instead of h // (H / Hkv)", lambda c: 1 < c.Hkv < c.H,
                   lambda c, a: [buggy_attention(c, a, Bug(gqa_modulo=True))]),
    "softcap_after_mask": ("softcap applied after masking (a masked key scores -softcap, not -inf)",
                           lambda c: c.softcap > 0,
                           lambda c, a: [{"out": buggy_attention(c, a, Bug(softcap_after_mask=True))["out"]}]),
    "window_off_by_one": ("window bounds off by one", lambda c: c.window != (-1, -1) or c.causal,
                          lambda c, a: [_reference(c, a, causal=causal, window_size=w)
                                        for causal, w in _off_by_one_windows(c)]),
    "open_right_is_lk": ("window_size (left, -1) treated as (left, Lk): early rows lose keys when Lq > Lk + 1 "
                         "(FlashAttention 2's issue 895)",
                         lambda c: c.window[0] >= 0 and c.window[1] == -1 and not c.causal and c.Lq > c.Lk + 1,
                         lambda c, a: [_reference(c, a, window_size=(c.window[0], c.Lk))]),
    "varlen_crossing": ("a varlen sequence attends across its boundary (the pack seen as one sequence)",
                        lambda c: c.interface == "varlen" and c.B > 1,
                        lambda c, a: [{"out": buggy_attention(c, a, Bug(whole_pack=True))["out"]}]),
    "lse_base2": ("LSE in base 2 (log2 sum 2^x, or log2 sum e^x) instead of the natural log", lambda c: True,
                  lambda c, a: [{"lse": _reference(c, a)["lse"] / np.log(2.0)},
                                {"lse": _reference(c, a)["lse"] * np.log2(np.e)}]),
    "alibi_lse_shift": ("LSE shifted by exactly slope_h * (i + Lk - Lq) under causal ALiBi: FlashAttention 2's "
                        "convention (declare it with KernelSupport(alibi_lse='fa2'))",
                        lambda c: c.alibi and c.causal,
                        lambda c, a: [{"lse": _reference(c, a)["lse"] + alibi_lse_shift(c, a)}]),
}


def _error(actual: np.ndarray, wanted: np.ndarray) -> float:
    """max |actual - wanted| where both are finite, inf where exactly one is NaN; +-inf rows (empty LSE) agree."""
    both_inf = np.isinf(actual) & np.isinf(wanted)
    nan_mismatch = np.isnan(actual) != np.isnan(wanted)
    if np.any(nan_mismatch):
        return float("inf")
    finite = np.isfinite(actual) & np.isfinite(wanted)
    if np.any(~finite & ~both_inf & ~np.isnan(actual)):
        return float("inf")
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite, left out below
        return float(np.max(np.abs(actual - wanted)[finite], initial=0.0))


def fits(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], variant: dict[str, np.ndarray],
         failed: set[str]) -> bool:
    """The variant explains every failing tensor it computes (and it computes at least one of them)."""
    names = [n for n in variant if n in actual and n in failed]
    if not names:
        return False
    for name in names:
        scale = max(1.0, float(np.max(np.abs(np.where(np.isfinite(expected[name]), expected[name], 0.0)),
                                      initial=0.0)))
        to_bug, to_oracle = _error(actual[name], variant[name]), _error(actual[name], expected[name])
        if not (to_bug <= FIT_ABS * scale and to_bug <= FIT_RATIO * to_oracle):
            return False
    return True


def _float32_fits(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], case: FlashCase,
                  arrays: dict[str, Any]) -> bool:
    """float64 inputs, an error as large as a float32 computation's (0.05x to 20x) and far above float64's."""
    f32 = _float32_reference(case, arrays)["out"]
    reference_err, kernel_err = _error(f32, expected["out"]), _error(actual["out"], expected["out"])
    return reference_err > 1e-12 and 0.05 * reference_err <= kernel_err <= 20.0 * reference_err


def diagnose(case: FlashCase, arrays: dict[str, Any], actual: dict[str, np.ndarray],
             expected: dict[str, np.ndarray], dtype: str, failed: set[str]) -> str:
    """The first named diagnosis that fits the kernel's failing tensors (``failed``: out, lse, ...), or "".

    Only failing tensors are fitted: a tensor that passed matches a bug that changes nothing on the case as
    well as it matches the oracle (bit for bit, when the kernel composes the same steps), which proves nothing.
    """
    for message, applies, variants in DIAGNOSES.values():
        if applies(case) and any(fits(actual, expected, v, failed) for v in variants(case, arrays)):
            return message
    if dtype == "float64" and "out" in failed and _float32_fits(actual, expected, case, arrays):
        return "softmax computed in float32 under float64 inputs (an error of float32's size)"
    return ""
