r"""Central finite differences: the check every hand-written backward must pass.

For a function :math:`f` and an upstream gradient :math:`g` (``dout``) the backward
computes :math:`\nabla_x \langle f(x), g\rangle`. Here each element of ``x`` is moved
by :math:`\pm h` and

.. math::  \frac{\partial}{\partial x_i}\langle f, g\rangle \approx
           \frac{\langle f(x + h e_i), g\rangle - \langle f(x - h e_i), g\rangle}{2h}

with truncation error :math:`O(h^2)` and rounding error :math:`O(\epsilon/h)`; in float64
``h = 1e-6`` balances the two near 1e-10 relative (see ``triad.tolerance``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def numerical_gradient(
    f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray, h: float = 1e-6
) -> np.ndarray:
    """d<f(), dout>/dx by central differences. ``f`` reads ``x``, which is perturbed in place and restored."""
    if x.dtype != np.float64:
        raise TypeError(f"x: finite differences need float64, got {x.dtype}")
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        original = x[idx]
        x[idx] = original + h
        plus = np.sum(f() * dout)
        x[idx] = original - h
        minus = np.sum(f() * dout)
        x[idx] = original
        grad[idx] = (plus - minus) / (2.0 * h)
    return grad


def numerical_gradients(
    f: Callable[[], np.ndarray], inputs: Mapping[str, np.ndarray], dout: np.ndarray, h: float = 1e-6
) -> dict[str, np.ndarray]:
    """numerical_gradient for each named input (all read by ``f``); returns {name: grad}."""
    return {name: numerical_gradient(f, x, dout, h) for name, x in inputs.items()}
