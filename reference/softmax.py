r"""Softmax and log-softmax along the last axis, forward and backward.

Forward (max-subtracted, so logits of +-1e3 stay finite):

.. math::  y_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \quad m = \max_j x_j

Backward. The Jacobian is :math:`\partial y_i / \partial x_j = y_i(\delta_{ij} - y_j)`, so

.. math::  dx_j = \sum_i dy_i\, y_i(\delta_{ij} - y_j) = y_j \big(dy_j - \textstyle\sum_i dy_i y_i\big)

Log-softmax: :math:`z = x - m - \log\sum_j e^{x_j - m}` and
:math:`dx = dz - \mathrm{softmax}(x) \sum_i dz_i`.

**A row of -inf only** (a row that may attend to nothing) has softmax 0 and log-softmax -inf, in all three
implementations, as attention's fully masked rows: the shift uses ``m = 0`` there and the empty sum is
divided by (or the log taken of) 1. NaN in a row gives NaN in that row.

Masked rows (attention): ``masked_softmax_forward`` takes scores with ``-inf`` at hidden keys and also
returns the log-sum-exp :math:`\mathrm{LSE} = m + \log\sum_j e^{x_j - m}`. A row with no visible key
(all ``-inf``) would be ``0/0``: its probabilities are defined as 0 (so its output and gradient are 0)
and its LSE as :math:`\log 0 = -\infty`. Its backward is ``softmax_backward``: :math:`y = 0` gives
:math:`dx = 0` on such a row.
"""

from __future__ import annotations

import numpy as np

from reference.validate import check_softmax_input


def _row_shift(x: np.ndarray) -> np.ndarray:
    """x (..., N) -> m (..., 1): the row's max, 0 on a row of -inf only (so that x - m stays -inf, not NaN)."""
    m = np.max(x, axis=-1, keepdims=True)  # (..., 1)
    return np.where(m == -np.inf, 0.0, m).astype(x.dtype)  # (..., 1)


def softmax_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (..., N) -> y (..., N); returns (y, cache) with cache = y."""
    check_softmax_input(x)
    e = np.exp(x - _row_shift(x))  # (..., N)
    row_sum = np.sum(e, axis=-1, keepdims=True)  # (..., 1); 0 on a row of -inf only
    y = e / np.where(row_sum == 0, 1.0, row_sum).astype(x.dtype)  # (..., N)
    return y, y


def softmax_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dy (..., N) -> dx (..., N), using dx = y * (dy - sum(dy * y))."""
    y = cache
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))  # (..., N)


def masked_softmax_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (..., N) with -inf at hidden entries -> (y (..., N), lse (...)); a row of only -inf gives y = 0, lse = -inf.

    The backward is ``softmax_backward(dy, y)``.
    """
    row_max = np.max(x, axis=-1, keepdims=True, initial=-np.inf)  # (..., 1)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # empty row: -inf -> 0, so exp(-inf - 0) = 0
    e = np.exp(x - row_max)  # (..., N)
    row_sum = np.sum(e, axis=-1, keepdims=True)  # (..., 1); 0 on an empty row
    y = e / np.where(row_sum > 0, row_sum, 1.0)  # (..., N); 0 on an empty row
    with np.errstate(divide="ignore"):
        lse = (row_max + np.log(row_sum))[..., 0]  # (...); log 0 = -inf on an empty row
    return y, lse


def log_softmax_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (..., N) -> z (..., N) = log softmax(x); returns (z, cache) with cache = softmax(x)."""
    check_softmax_input(x)
    shifted = x - _row_shift(x)  # (..., N)
    row_sum = np.sum(np.exp(shifted), axis=-1, keepdims=True)  # (..., 1); 0 on a row of -inf only
    log_sum = np.log(np.where(row_sum == 0, 1.0, row_sum)).astype(x.dtype)  # (..., 1)
    z = shifted - log_sum  # (..., N); -inf on a row of -inf only
    return z, np.exp(z)


def log_softmax_backward(dz: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dz (..., N) -> dx (..., N), using dx = dz - softmax(x) * sum(dz)."""
    y = cache
    return dz - y * np.sum(dz, axis=-1, keepdims=True)  # (..., N)
