"""Assertions shared by the ``test_components_*`` files: three-way agreement and finite differences."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from reference.gradcheck import numerical_gradients
from triad.tolerance import F64_REL_BOUND, FD_REL_BOUND, max_rel_err


def assert_agree(actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], label: str,
                 magnitudes: Mapping[str, float] | None = None) -> None:
    """Every tensor of ``expected`` (output, input gradients, every parameter gradient) is in ``actual`` and
    within F64_REL_BOUND relative of it (scale: ``magnitudes[key]`` where the result is small through
    cancellation, see ``triad.tolerance``); no gradient is missing or extra."""
    assert set(actual) == set(expected), f"{label}: tensors {sorted(actual)} != reference {sorted(expected)}"
    bound = F64_REL_BOUND
    for key, want in expected.items():
        err = max_rel_err(actual[key], want, (magnitudes or {}).get(key, 0.0))
        assert err <= bound, f"{label} {key}: max rel err {err:.3e} > {bound:.0e}"


def assert_matches_finite_differences(
    f: Callable[[], np.ndarray], inputs: Mapping[str, np.ndarray], dout: np.ndarray,
    analytic: Mapping[str, np.ndarray],
) -> None:
    """The hand-written gradients ``analytic`` equal central differences of <f(), dout> in every input."""
    numeric = numerical_gradients(f, inputs, dout)
    for key, grad in numeric.items():
        err = max_rel_err(analytic[key], grad)
        assert err <= FD_REL_BOUND, f"finite differences {key}: max rel err {err:.3e} > {FD_REL_BOUND:.0e}"


def layer_norm_dx_magnitude(dy: np.ndarray, cache: dict) -> float:
    """The scale mu of layer norm's dx: its formula on absolute values. With few features (D = 2 gives
    x_hat = +-1) the three terms of dx cancel almost exactly and dx itself is tiny."""
    x_hat, rstd, weight = np.abs(cache["x_hat"]), cache["rstd"], cache["weight"]
    dx_hat = np.abs(dy) if weight is None else np.abs(dy * weight)  # (..., D)
    terms = dx_hat + dx_hat.mean(-1, keepdims=True) + x_hat * (dx_hat * x_hat).mean(-1, keepdims=True)  # (..., D)
    return float(np.max(rstd * terms))
