r"""Activations of the feed-forward block: ReLU, GELU (exact, erf) and GELU (tanh approximation).

.. math::

    \mathrm{relu}(x) = \max(x, 0), \qquad \mathrm{relu}'(x) = [x > 0]

    \mathrm{gelu}(x) = x\,\Phi(x) = \tfrac12 x \big(1 + \mathrm{erf}(x/\sqrt2)\big), \qquad
    \mathrm{gelu}'(x) = \Phi(x) + x\,\varphi(x), \quad \varphi(x) = e^{-x^2/2}/\sqrt{2\pi}

    \mathrm{gelu\_tanh}(x) = \tfrac12 x (1 + \tanh u), \quad u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)

    \mathrm{gelu\_tanh}'(x) = \tfrac12 (1 + \tanh u) + \tfrac12 x\,(1 - \tanh^2 u)\,u'(x), \quad
    u'(x) = \sqrt{2/\pi}\,(1 + 3\cdot 0.044715\,x^2)

(product rule; :math:`\Phi' = \varphi`, :math:`\tanh' = 1 - \tanh^2`). ``relu'(0)`` is taken as 0, as torch does.

``erf`` is ``math.erf`` applied element by element (NumPy has no erf and the reference needs no
SciPy): the C library's erf, accurate to about one unit in the last place of float64, far below
the 1e-10 agreement bound.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715
_erf = np.vectorize(math.erf, otypes=[np.float64])


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (...) -> y (...); returns (y, cache)."""
    return np.maximum(x, 0.0).astype(x.dtype, copy=False), x


def relu_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dy (...) -> dx (...) = dy * [x > 0]."""
    x = cache
    return dy * (x > 0.0)


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (...) -> y (...) = x * Phi(x) (exact, erf); returns (y, cache)."""
    cdf = (0.5 * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)  # (...) Phi(x)
    return x * cdf, x


def gelu_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dy (...) -> dx (...) = dy * (Phi(x) + x phi(x))."""
    x = cache
    cdf = (0.5 * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)  # (...) Phi(x)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # (...) phi(x)
    return dy * (cdf + x * pdf)


def gelu_tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (...) -> y (...) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); returns (y, cache)."""
    t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_CUBIC * x**3))  # (...)
    return 0.5 * x * (1.0 + t), x


def gelu_tanh_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dy (...) -> dx (...), the product rule on 0.5 x (1 + tanh u)."""
    x = cache
    t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_CUBIC * x**3))  # (...)
    du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * x * x)  # (...)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


_PAIRS = {
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_forward, gelu_backward),
    "gelu_tanh": (gelu_tanh_forward, gelu_tanh_backward),
}


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {name!r}")


def activation_forward(x: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, Any]]:
    """x (...) -> y (...) for ``name`` in ACTIVATIONS; returns (y, cache)."""
    check_activation(name)
    y, cache = _PAIRS[name][0](x)
    return y, (name, cache)


def activation_backward(dy: np.ndarray, cache: tuple[str, Any]) -> np.ndarray:
    """dy (...) -> dx (...)."""
    name, inner = cache
    return _PAIRS[name][1](dy, inner)
