"""The dropout check's baseline allowance: the dtype's rounding is allowed for, a dropout bug is still caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import triad.verify.dropout as dropout_module
from equivalence_tests.planted_kernels import PLANTED
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from triad.verify.cases import VerifyCase
from triad.verify.dropout import baseline_excess, dropout_check
from triad.verify.judge import oracle

# Small cases of the kinds a search draws: spread and peaky probabilities, a mask, one key.
CASES = (
    VerifyCase(2, 2, 9, 12, 8, 8, "none", "gaussian", 1.0, None, False, 3),
    VerifyCase(1, 3, 10, 10, 1, 8, "none", "ties", 10.0, None, False, 3),
    VerifyCase(1, 2, 7, 15, 4, 4, "bool_shared", "peaky", 10.0, None, True, 5),
    VerifyCase(1, 1, 15, 1, 1, 1, "none", "gaussian", 1.0, None, False, 0),
)


def check(kernel, case: VerifyCase, dtype: str):  # type: ignore[no-untyped-def]
    arrays = case.arrays(dtype)
    expected, magnitudes, row_logits = oracle(case, arrays)
    return dropout_check(kernel, case, arrays, expected["out"], magnitudes, row_logits["out"], dtype, "cpu")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.family}-{c.mask}-Lk{c.Lk}")
def test_plain_dropout_passes_in_every_dtype(case: VerifyCase, dtype: str) -> None:
    result = check(scratch_sdpa, case, dtype)
    assert result.passed, result.describe()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["dropout_not_rescaled", "dropout_ignored"])
@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: f"{c.family}-{c.mask}-Lk{c.Lk}")
def test_planted_dropout_bugs_still_fail_with_the_allowance(case: VerifyCase, name: str, dtype: str) -> None:
    """(In float16 and bfloat16 the rounding floor, 2**-10 or 2**-8 per unit of logit, is as large as a forgotten
    1/(1-p) on some of these cases, with or without the allowance, whose excess is 0 on them.)"""
    result = check(PLANTED[name], case, dtype)
    assert not result.passed, result.describe()


def test_baseline_excess_is_what_the_baseline_misses_beyond_statistics() -> None:
    expected = np.zeros((1, 1, 2, 2))
    statistical = np.full((1, 1, 2, 2), 0.1)
    runs = np.zeros((4, 1, 1, 2, 2))
    runs[:, 0, 0, 1, 1] = 0.35  # the mean misses one element by 0.35, 0.25 beyond its allowance
    assert baseline_excess(runs, expected, statistical) == pytest.approx(0.25)
    assert baseline_excess(np.zeros((4, 1, 1, 2, 2)) + 0.05, expected, statistical) == 0.0
    runs[0, 0, 0, 0, 0] = np.nan
    assert baseline_excess(runs, expected, statistical) == 0.0  # a broken baseline allows nothing


def _biased(factor: float):  # type: ignore[no-untyped-def]
    """Plain attention whose output is ``factor`` times too large with dropout on: a systematic error."""
    def kernel(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
        out = scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale)
        return out * factor if dropout_p > 0 else out
    return kernel


def test_a_bias_the_baseline_shares_is_allowed_and_one_it_lacks_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[0]
    assert not check(_biased(1.2), case, "float32").passed  # the plain baseline has no such bias
    monkeypatch.setattr(dropout_module, "baseline_sdpa", _biased(1.2))  # a dtype whose plain implementation has it
    shared = check(_biased(1.2), case, "float32")
    assert shared.passed and shared.baseline_err > 0.0, shared.describe()
    assert not check(_biased(1.8), case, "float32").passed  # four times the baseline's excess still fails


def test_the_check_is_seeded_by_the_case() -> None:
    first, second = (check(scratch_sdpa, CASES[0], "bfloat16") for _ in range(2))
    assert first.err == second.err and torch.initial_seed() == CASES[0].seed
