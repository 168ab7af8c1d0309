"""Known upstream bugs of the kernels the GPU tests check: reported as expected failures, never hidden.

A GPU test that finds one of these bugs is right, but the bug is the backend's, not ours: the test calls
``xfail_if_known`` with what it saw (the exception, or which gradients came back NaN/inf and on which
case), and the test is marked ``XFAIL`` with the upstream reference and the symptom in its reason (the
``-ra`` summary prints it: the report is kept). A symptom that matches no entry fails the test as before,
and a case that passes simply passes (the equivalent of ``xfail(strict=False)``).

Each entry names the kernel, the upstream issue and the exact pattern (seen with torch 2.11 on sm90):

- cuDNN refuses a graph: ``RuntimeError`` with "No execution plans support the graph" (small shapes).
- cuDNN's backward with an explicit ``attn_mask``: NaN/inf in ``dq`` on a case where some query row's
  log-sum-exp is below ln(FLT_MAX) ~ -88.7 (a fully masked row's is -inf): the padded part of the last key
  tile is scored 0 instead of -inf and ``exp(0 - LSE)`` overflows float32.
- cuDNN's backward: NaN/inf in ``dk``/``dv`` on a case where some query row's log-sum-exp is below -88.7.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from triad.verify.judge import FINITE_LINE, TENSORS
from triad.verify.report import Report

# ln(FLT_MAX): below it, exp(-LSE) overflows float32.
LSE_OVERFLOW = -88.72


@dataclass(frozen=True)
class Symptom:
    """What a GPU test saw: the kernel, an exception's message, the tensors with NaN/inf, the case."""

    kernel: str
    message: str = ""
    nonfinite: frozenset[str] = field(default_factory=frozenset)  # of "out", "dq", "dk", "dv"
    has_mask: bool = False  # an explicit attn_mask tensor was passed
    min_lse: float = float("inf")  # the smallest row log-sum-exp of the case (float64 oracle); -inf: a fully masked row


@dataclass(frozen=True)
class KnownFailure:
    kernel: str
    reference: str
    summary: str
    matches: Callable[[Symptom], bool]


KNOWN_FAILURES = (
    KnownFailure("sdpa-cudnn", "https://github.com/pytorch/pytorch/issues/140930",
                 "cuDNN finds no execution plan for the graph",
                 lambda s: "No execution plans support the graph" in s.message),
    KnownFailure("sdpa-cudnn", "https://github.com/pytorch/pytorch/issues/196678",
                 "cuDNN backward with attn_mask: NaN dq where a row's log-sum-exp is below ln(FLT_MAX)",
                 lambda s: s.has_mask and "dq" in s.nonfinite and s.min_lse < LSE_OVERFLOW),
    KnownFailure("sdpa-cudnn", "https://github.com/NVIDIA/cudnn-frontend/issues/1072",
                 "cuDNN backward: NaN dk/dv where a row's log-sum-exp is strongly negative",
                 lambda s: bool({"dk", "dv"} & s.nonfinite) and s.min_lse < LSE_OVERFLOW),
)


def known_failure(symptom: Symptom) -> KnownFailure | None:
    """The entry of ``KNOWN_FAILURES`` that explains ``symptom``, or None."""
    return next((k for k in KNOWN_FAILURES if k.kernel == symptom.kernel and k.matches(symptom)), None)


def xfail_if_known(symptom: Symptom, detail: str = "") -> None:
    """Mark the running test as an expected failure when ``symptom`` is a known upstream bug; else return."""
    known = known_failure(symptom)
    if known is not None:
        pytest.xfail(f"known {known.kernel} bug ({known.reference}): {known.summary}. Seen: "
                     f"{symptom.message or 'NaN/inf in ' + ', '.join(sorted(symptom.nonfinite))}"
                     + (f"; {detail}" if detail else ""))


def min_row_lse(q: np.ndarray, k: np.ndarray, attn_mask: np.ndarray | None, is_causal: bool,
                scale: float | None) -> float:
    """The smallest log-sum-exp over the query rows of float64 attention (-inf when a row sees no key).

    ``q`` (B, H, Lq, E), ``k`` (B, H, Lk, E); ``attn_mask`` a boolean keep-mask or additive, broadcastable.
    """
    s = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    logits = s * (q @ np.swapaxes(k, -1, -2))  # (B, H, Lq, Lk)
    if is_causal:
        logits = np.where(np.tril(np.ones(logits.shape[-2:], dtype=bool)), logits, -np.inf)
    if attn_mask is not None:
        logits = np.where(attn_mask, logits, -np.inf) if attn_mask.dtype == np.bool_ else logits + attn_mask
    peak = np.max(logits, axis=-1, keepdims=True)  # (B, H, Lq, 1)
    finite_peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.log(np.sum(np.exp(logits - finite_peak), axis=-1)) + finite_peak[..., 0]  # (B, H, Lq)
    return float(np.min(lse)) if lse.size else float("inf")


def report_symptom(kernel: str, report: Report) -> Symptom:
    """The symptom of a failed ``verify_attention`` report: its minimal case's messages and NaN/inf tensors."""
    outcome = report.failure
    if outcome is None:
        return Symptom(kernel, message=report.message)
    failed = outcome.failures()
    nonfinite = frozenset(name for c in failed if c.line == FINITE_LINE for name in TENSORS
                          if c.message.startswith(f"{name}:"))
    arrays = outcome.case.arrays(report.dtype)
    return Symptom(kernel, message="; ".join(c.message for c in failed if c.message and c.line != FINITE_LINE),
                   nonfinite=nonfinite, has_mask=arrays["attn_mask"] is not None,
                   min_lse=min_row_lse(arrays["q"], arrays["k"], arrays["attn_mask"], outcome.case.is_causal,
                                       outcome.case.effective_scale))
