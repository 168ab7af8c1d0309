r"""Linear (affine) map, forward and backward.

Forward, with ``weight`` of shape ``(out, in)`` as in torch:

.. math::  y = x W^\top + b

Backward. Flatten the leading dims of ``x`` into rows :math:`n`; then
:math:`y_{no} = \sum_i x_{ni} W_{oi} + b_o`, so

.. math::

    dx_{ni} = \sum_o dy_{no} W_{oi} \ \Rightarrow\ dx = dy\, W, \qquad
    dW_{oi} = \sum_n dy_{no} x_{ni} \ \Rightarrow\ dW = dy^\top x, \qquad
    db_o = \sum_n dy_{no}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.validate import check_linear_shapes


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., in), weight (out, in), bias (out,) or None -> y (..., out); returns (y, cache)."""
    check_linear_shapes(x.shape, weight.shape, None if bias is None else bias.shape)
    y = x @ weight.T  # (..., out)
    if bias is not None:
        y = y + bias  # (..., out)
    return y, {"x": x, "weight": weight, "has_bias": bias is not None}


def linear_backward(
    dy: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """dy (..., out) -> (dx (..., in), dweight (out, in), dbias (out,) or None)."""
    x, weight = cache["x"], cache["weight"]
    dx = dy @ weight  # (..., in)
    dy_rows = dy.reshape(-1, dy.shape[-1])  # (N, out)
    x_rows = x.reshape(-1, x.shape[-1])  # (N, in)
    dweight = dy_rows.T @ x_rows  # (out, in)
    dbias = dy_rows.sum(axis=0) if cache["has_bias"] else None  # (out,)
    return dx, dweight, dbias
