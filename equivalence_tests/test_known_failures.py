"""The known-failure table of the GPU tests matches exactly its upstream bugs' patterns, and keeps the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equivalence_tests.known_failures import (
    LSE_OVERFLOW,
    Symptom,
    known_failure,
    min_row_lse,
    report_symptom,
    xfail_if_known,
)
from equivalence_tests.planted_kernels import correct_attention
from triad.verify import verify_attention
from triad.verify.report import FAILED

CUDNN = "sdpa-cudnn"
VERY_NEGATIVE = LSE_OVERFLOW - 1.0


@pytest.mark.parametrize(("symptom", "reference"), [
    (Symptom(CUDNN, message="cuDNN Frontend error: [cudnn_frontend] Error: No execution plans support the graph."),
     "pytorch/issues/140930"),
    (Symptom(CUDNN, nonfinite=frozenset({"dq"}), has_mask=True, min_lse=VERY_NEGATIVE), "pytorch/issues/196678"),
    (Symptom(CUDNN, nonfinite=frozenset({"dq"}), has_mask=True, min_lse=-np.inf), "pytorch/issues/196678"),
    (Symptom(CUDNN, nonfinite=frozenset({"dk", "dv"}), min_lse=VERY_NEGATIVE), "cudnn-frontend/issues/1072"),
])
def test_each_known_cudnn_bug_is_recognised_by_its_pattern(symptom: Symptom, reference: str) -> None:
    known = known_failure(symptom)
    assert known is not None and known.reference.endswith(reference)
    with pytest.raises(pytest.xfail.Exception, match=reference):
        xfail_if_known(symptom)


@pytest.mark.parametrize("symptom", [
    Symptom("sdpa-flash", message="No execution plans support the graph"),  # another backend: its own bug
    Symptom(CUDNN, message="CUDA error: an illegal memory access was encountered"),
    Symptom(CUDNN, nonfinite=frozenset({"dq"}), has_mask=True, min_lse=-3.0),  # LSE fine: a new bug
    Symptom(CUDNN, nonfinite=frozenset({"dq"}), has_mask=False, min_lse=VERY_NEGATIVE),  # no mask tensor
    Symptom(CUDNN, nonfinite=frozenset({"out"}), has_mask=True, min_lse=VERY_NEGATIVE),  # the forward
    Symptom(CUDNN, nonfinite=frozenset({"dk"}), min_lse=-1.0),
])
def test_a_symptom_outside_the_known_patterns_is_not_excused(symptom: Symptom) -> None:
    assert known_failure(symptom) is None
    xfail_if_known(symptom)  # returns: the test goes on to fail as it would have


def test_min_row_lse_is_the_log_sum_exp_of_the_visible_logits() -> None:
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((1, 2, 5, 4))
    keep = np.ones((3, 5), dtype=bool)
    keep[1, 2:] = False
    logits = 0.5 * q @ np.swapaxes(k, -1, -2)  # (1, 2, 3, 5)
    expected = np.log(np.sum(np.where(keep, np.exp(logits), 0.0), axis=-1)).min()
    assert min_row_lse(q, k, keep, False, 0.5) == pytest.approx(expected, rel=1e-12)
    causal = np.log(np.sum(np.where(np.tril(np.ones((3, 5), dtype=bool)), np.exp(logits), 0.0), axis=-1)).min()
    assert min_row_lse(q, k, None, True, 0.5) == pytest.approx(causal, rel=1e-12)
    keep[2] = False
    assert min_row_lse(q, k, keep, False, 0.5) == -np.inf  # a fully masked row


def _nan_dq_on_masked_rows(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Right forward; dq NaN when a query row sees no key (the shape of pytorch#196678)."""
    out = correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)
    if attn_mask is None or attn_mask.dtype != torch.bool or attn_mask.any(-1).all():
        return out
    return _PoisonDq.apply(q).sum() * 0.0 + out if q.requires_grad else out


class _PoisonDq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q):  # type: ignore[no-untyped-def]
        return q.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        return torch.full_like(grad, float("nan"))


def test_a_verify_report_with_the_cudnn_mask_bug_becomes_the_known_symptom() -> None:
    report = verify_attention(_nan_dq_on_masked_rows, dtype="float32", max_examples=5, seed=0)
    assert report.verdict == FAILED, report.summary()
    symptom = report_symptom(CUDNN, report)
    assert "dq" in symptom.nonfinite and symptom.has_mask and symptom.min_lse == -np.inf
    assert known_failure(symptom).reference.endswith("pytorch/issues/196678")
    assert known_failure(report_symptom("sdpa-flash", report)) is None
