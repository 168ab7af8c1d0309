"""What one line of ``triad check`` holds, and how a component's results are compared."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triad.tolerance import max_rel_err, mismatch_lines


@dataclass
class ComponentResult:
    """One component, one implementation compared against the float64 reference, one dtype."""

    name: str
    implementations: str  # e.g. "scratch vs reference"
    dtype: str
    max_rel_err_out: float
    grad_errs: dict[str, float] = field(default_factory=dict)  # {"dq": 1e-16, ...}
    bound: float = 0.0
    # A float32 result's bound depends on each tensor (baseline error); per-tensor bounds go here.
    tensor_bounds: dict[str, float] | None = None
    # For each tensor over its bound: where (count over the bound, the worst index, both values).
    where: dict[str, str] = field(default_factory=dict)

    @property
    def max_rel_err_grad(self) -> float:
        return max(self.grad_errs.values(), default=0.0)

    @property
    def passed(self) -> bool:
        errors = {"out": self.max_rel_err_out, **self.grad_errs}
        bounds = self.tensor_bounds or dict.fromkeys(errors, self.bound)
        return all(np.isfinite(err) and err <= bounds[name] for name, err in errors.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "implementations": self.implementations,
            "dtype": self.dtype,
            "max_rel_err_out": self.max_rel_err_out,
            "max_rel_err_grad": self.max_rel_err_grad,
            "grads": self.grad_errs,
            "bound": self.bound,
            "passed": self.passed,
            "where": self.where,
        }


def compare(
    name: str,
    implementations: str,
    dtype: str,
    actual: Mapping[str, Any],
    expected: Mapping[str, np.ndarray],
    bound: float | Mapping[str, float],
    magnitudes: Mapping[str, float] | None = None,
) -> ComponentResult:
    """Compare tensors named alike ("out" plus any gradients) with one relative bound, or one per tensor."""
    magnitudes = magnitudes or {}
    arrays = {key: _to_numpy(value) for key, value in actual.items()}
    errs = {key: max_rel_err(arrays[key], expected[key], magnitudes.get(key, 0.0)) if key in arrays
            else float("inf") for key in expected}
    out_err = errs.pop("out")
    per_tensor = None if isinstance(bound, (int, float)) else dict(bound)
    result = ComponentResult(name, implementations, dtype, out_err, errs,
                             float(bound) if per_tensor is None else max(per_tensor.values()), per_tensor)
    result.where = mismatch_lines(arrays, expected, bound, magnitudes)
    return result


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)
