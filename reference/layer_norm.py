r"""Layer norm over the last axis, forward and backward (biased variance, as torch).

Forward, over the :math:`D` features of one row:

.. math::

    \mu = \frac1D \sum_j x_j, \qquad \sigma^2 = \frac1D \sum_j (x_j - \mu)^2 \ \text{(biased: divide by } D
    \text{, not } D-1), \qquad
    \hat x_j = \frac{x_j - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y_j = \gamma_j \hat x_j + \beta_j

Backward. :math:`d\gamma = \sum_\text{rows} dy \circ \hat x`, :math:`d\beta = \sum_\text{rows} dy`,
:math:`d\hat x = dy \circ \gamma`. With :math:`r = (\sigma^2 + \epsilon)^{-1/2}`,
:math:`\partial \hat x_i / \partial x_j = r(\delta_{ij} - \frac1D) - r\,\hat x_i \hat x_j / D`
(because :math:`\partial \mu/\partial x_j = 1/D` and :math:`\partial r/\partial x_j = -r^3 (x_j - \mu)/D`), so

.. math::  dx = r \Big(d\hat x - \tfrac1D \textstyle\sum_i d\hat x_i - \hat x\, \tfrac1D \sum_i d\hat x_i \hat x_i\Big)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.validate import check_layer_norm_shapes


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None, eps: float = 1e-5
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., D), weight (D,) or None, bias (D,) or None -> y (..., D); returns (y, cache)."""
    check_layer_norm_shapes(x.shape, None if weight is None else weight.shape,
                            None if bias is None else bias.shape, eps)
    mean = np.mean(x, axis=-1, keepdims=True)  # (..., 1)
    centred = x - mean  # (..., D)
    var = np.mean(centred * centred, axis=-1, keepdims=True)  # (..., 1); biased
    rstd = 1.0 / np.sqrt(var + eps)  # (..., 1)
    x_hat = centred * rstd  # (..., D)
    y = x_hat if weight is None else x_hat * weight  # (..., D)
    if bias is not None:
        y = y + bias  # (..., D)
    return y, {"x_hat": x_hat, "rstd": rstd, "weight": weight, "has_bias": bias is not None}


def layer_norm_backward(
    dy: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dy (..., D) -> (dx (..., D), dweight (D,) or None, dbias (D,) or None)."""
    x_hat, rstd, weight = cache["x_hat"], cache["rstd"], cache["weight"]
    D = x_hat.shape[-1]
    dy_rows = dy.reshape(-1, D)  # (N, D)
    dweight = None if weight is None else np.sum(dy_rows * x_hat.reshape(-1, D), axis=0)  # (D,)
    dbias = np.sum(dy_rows, axis=0) if cache["has_bias"] else None  # (D,)
    dx_hat = dy if weight is None else dy * weight  # (..., D)
    mean_dx_hat = np.mean(dx_hat, axis=-1, keepdims=True)  # (..., 1)
    mean_dx_hat_x_hat = np.mean(dx_hat * x_hat, axis=-1, keepdims=True)  # (..., 1)
    dx = rstd * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)  # (..., D)
    return dx, dweight, dbias
