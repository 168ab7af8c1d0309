"""Assertions shared by the ``test_components_*`` files: three-way agreement and finite differences."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from reference.gradcheck import numerical_gradients
from triad.tolerance import F64_REL_BOUND, FD_REL_BOUND, mismatch_lines


def assert_all_close(actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], bound: float,
                     magnitudes: Mapping[str, float] | None = None, label: str = "") -> None:
    """Every tensor of ``expected`` is in ``actual`` and within ``bound`` relative (``max_rel_err``'s measure, scale
    ``magnitudes[key]`` where a result is small through cancellation); a failure says, for every tensor over its
    bound, how many elements are over, the worst one's index, both values, the error and the bound."""
    lines = mismatch_lines(actual, expected, bound, magnitudes)
    assert not lines, f"{label}:\n" + "\n".join(f"  {key}: {where}" for key, where in lines.items())


def assert_agree(actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], label: str,
                 magnitudes: Mapping[str, float] | None = None) -> None:
    """Every tensor of ``expected`` (output, input gradients, every parameter gradient) is in ``actual`` and
    within F64_REL_BOUND relative of it (scale: ``magnitudes[key]`` where the result is small through
    cancellation, see ``triad.tolerance``); no gradient is missing or extra."""
    assert set(actual) == set(expected), f"{label}: tensors {sorted(actual)} != reference {sorted(expected)}"
    assert_all_close(actual, expected, F64_REL_BOUND, magnitudes, label)


def assert_matches_finite_differences(
    f: Callable[[], np.ndarray], inputs: Mapping[str, np.ndarray], dout: np.ndarray,
    analytic: Mapping[str, np.ndarray],
) -> None:
    """The hand-written gradients ``analytic`` equal central differences of <f(), dout> in every input."""
    numeric = numerical_gradients(f, inputs, dout)
    assert_all_close(analytic, numeric, FD_REL_BOUND, label="finite differences")


def layer_norm_dx_magnitude(dy: np.ndarray, cache: dict) -> float:
    """The scale mu of layer norm's dx: its formula on absolute values. With few features (D = 2 gives
    x_hat = +-1) the three terms of dx cancel almost exactly and dx itself is tiny."""
    x_hat, rstd, weight = np.abs(cache["x_hat"]), cache["rstd"], cache["weight"]
    dx_hat = np.abs(dy) if weight is None else np.abs(dy * weight)  # (..., D)
    terms = dx_hat + dx_hat.mean(-1, keepdims=True) + x_hat * (dx_hat * x_hat).mean(-1, keepdims=True)  # (..., D)
    return float(np.max(rstd * terms))
