r"""Softmax and log-softmax along the last axis, forward and backward.

Forward (max-subtracted, so logits of +-1e3 stay finite):

.. math::  y_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \quad m = \max_j x_j

Backward. The Jacobian is :math:`\partial y_i / \partial x_j = y_i(\delta_{ij} - y_j)`, so

.. math::  dx_j = \sum_i dy_i\, y_i(\delta_{ij} - y_j) = y_j \big(dy_j - \textstyle\sum_i dy_i y_i\big)

Log-softmax: :math:`z = x - m - \log\sum_j e^{x_j - m}` and
:math:`dx = dz - \mathrm{softmax}(x) \sum_i dz_i`.
"""

from __future__ import annotations

import numpy as np


def softmax_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (..., N) -> y (..., N); returns (y, cache) with cache = y."""
    m = np.max(x, axis=-1, keepdims=True)  # (..., 1)
    e = np.exp(x - m)  # (..., N)
    y = e / np.sum(e, axis=-1, keepdims=True)  # (..., N)
    return y, y


def softmax_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dy (..., N) -> dx (..., N), using dx = y * (dy - sum(dy * y))."""
    y = cache
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))  # (..., N)


def log_softmax_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (..., N) -> z (..., N) = log softmax(x); returns (z, cache) with cache = softmax(x)."""
    m = np.max(x, axis=-1, keepdims=True)  # (..., 1)
    shifted = x - m  # (..., N)
    log_sum = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))  # (..., 1)
    z = shifted - log_sum  # (..., N)
    return z, np.exp(z)


def log_softmax_backward(dz: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dz (..., N) -> dx (..., N), using dx = dz - softmax(x) * sum(dz)."""
    y = cache
    return dz - y * np.sum(dz, axis=-1, keepdims=True)  # (..., N)
