"""Failure messages say where: every comparison reports the count over its bound, the worst index and both values."""

from __future__ import annotations

import numpy as np
import pytest

from equivalence_tests.component_helpers import assert_all_close
from triad.agreement.base import compare
from triad.tolerance import locate_mismatch, mismatch_lines
from triad.verify.judge import rowwise_rule_check


def test_locate_mismatch_counts_elements_and_names_the_worst_one() -> None:
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[0, 1], actual[1, 2] = 0.5, 2.0  # two over the bound; (1, 2) the worst
    found = locate_mismatch(actual, expected, 0.1)
    assert (found.count, found.total, found.index) == (2, 6, (1, 2))
    assert (found.actual, found.expected, found.error, found.allowed) == (2.0, 0.0, 2.0, 0.1)
    assert "mismatched elements: 2 / 6" in str(found) and "(1, 2)" in str(found)


def test_locate_mismatch_ranks_by_error_over_bound_and_counts_rows() -> None:
    expected = np.zeros((2, 2, 4))  # (B, L, d)
    actual = expected.copy()
    actual[0, 0, 0], actual[1, 1, 3] = 1.0, 0.3
    allowed = np.array([[[0.5], [0.5]], [[0.5], [0.01]]])  # (B, L, 1): row (1, 1) is tight
    found = locate_mismatch(actual, expected, allowed, rows=True)
    assert (found.unit, found.count, found.total, found.index) == ("rows", 2, 4, (1, 1, 3))


def test_locate_mismatch_nan_shape_and_pass() -> None:
    expected = np.ones(3)
    assert locate_mismatch(expected, expected, 0.0) is None
    found = locate_mismatch(np.array([1.0, np.nan, 1.0]), expected, 1e-3)
    assert found.index == (1,) and found.error == np.inf
    assert "shape (2,)" in locate_mismatch(np.ones(2), expected, 1.0)


def test_mismatch_lines_use_the_relative_measure_and_report_missing_tensors() -> None:
    expected = {"out": np.array([10.0, 0.0]), "dq": np.array([1.0])}
    actual = {"out": np.array([10.0, 0.5])}  # 0.5 / max|e| = 0.05 relative
    lines = mismatch_lines(actual, expected, 0.01)
    assert lines["dq"] == "missing" and "index (1,)" in lines["out"] and "up to 1.000e-01 allowed" in lines["out"]
    assert mismatch_lines(actual, {"out": expected["out"]}, 0.1) == {}


def test_triad_check_result_and_test_helper_say_where() -> None:
    expected = {"out": np.arange(6.0).reshape(2, 3), "dx": np.ones(4)}
    actual = {"out": expected["out"] + np.array([[0, 0, 0], [0, 1e-3, 0]]), "dx": np.ones(4)}
    result = compare("linear", "scratch vs reference", "float64", actual, expected, 1e-10)
    assert not result.passed and list(result.where) == ["out"] and "(1, 1)" in result.where["out"]
    assert result.to_json()["where"] == result.where
    with pytest.raises(AssertionError, match=r"out: mismatched elements: 1 / 6.*index \(1, 1\)"):
        assert_all_close(actual, expected, 1e-10, label="linear")


def test_verify_rowwise_check_reports_the_worst_row_and_element() -> None:
    expected = np.zeros((1, 1, 3, 2))  # (B, H, L, d)
    actual = expected.copy()
    actual[0, 0, 2, 1] = 1.0
    check = rowwise_rule_check("out", actual, expected, 0.0, 1.0, "float32", np.zeros((1, 1, 3)), 0.0)
    assert not check.passed
    assert "mismatched rows: 1 / 3" in check.where and "(0, 0, 2, 1)" in check.where
    assert check.where in check.describe() and check.to_json()["where"] == check.where
