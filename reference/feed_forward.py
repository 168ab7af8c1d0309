r"""Position-wise feed-forward block: ``linear2(dropout(act(linear1(x))))``, forward and backward.

.. math::  h = x W_1^\top + b_1, \qquad a = \mathrm{act}(h), \qquad \tilde a = a \circ Z/(1-p), \qquad
           y = \tilde a W_2^\top + b_2

with ``act`` one of relu, gelu (erf), gelu_tanh and the inner dropout of ``nn.TransformerEncoderLayer``.
Backward is the chain rule through the pieces, each derived in its own file:

.. math::  d\tilde a = dy\, W_2, \quad da = d\tilde a \circ Z/(1-p), \quad dh = da \circ \mathrm{act}'(h), \quad
           dx = dh\, W_1

with :math:`dW_2 = dy^\top \tilde a`, :math:`db_2 = \sum dy`, :math:`dW_1 = dh^\top x`, :math:`db_1 = \sum dh`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.activations import activation_backward, activation_forward, check_activation
from reference.dropout import dropout_backward, dropout_forward
from reference.linear import linear_backward, linear_forward


def feed_forward_forward(
    x: np.ndarray,
    params: dict[str, np.ndarray],
    activation: str = "relu",
    dropout_p: float = 0.0,
    dropout_keep: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., D), params {linear1.weight (D_ff, D), linear1.bias, linear2.weight (D, D_ff), linear2.bias}
    (biases optional) -> y (..., D); returns (y, cache). ``dropout_keep`` has the shape (..., D_ff)."""
    check_activation(activation)
    for key in ("linear1.weight", "linear2.weight"):
        if key not in params:
            raise ValueError(f"params: missing key {key!r}, got keys {sorted(params)}")
    h, cache1 = linear_forward(x, params["linear1.weight"], params.get("linear1.bias"))  # (..., D_ff)
    a, act_cache = activation_forward(h, activation)  # (..., D_ff)
    a, drop_cache = dropout_forward(a, dropout_p, keep=dropout_keep, rng=rng)  # (..., D_ff)
    y, cache2 = linear_forward(a, params["linear2.weight"], params.get("linear2.bias"))  # (..., D)
    return y, {"linear1": cache1, "act": act_cache, "drop": drop_cache, "linear2": cache2}


def feed_forward_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dy (..., D) -> (dx (..., D), grads keyed like params)."""
    grads: dict[str, np.ndarray] = {}
    da, grads["linear2.weight"], dbias2 = linear_backward(dy, cache["linear2"])  # (..., D_ff)
    da = dropout_backward(da, cache["drop"])  # (..., D_ff)
    dh = activation_backward(da, cache["act"])  # (..., D_ff)
    dx, grads["linear1.weight"], dbias1 = linear_backward(dh, cache["linear1"])  # (..., D)
    for key, dbias in (("linear1.bias", dbias1), ("linear2.bias", dbias2)):
        if dbias is not None:
            grads[key] = dbias
    return dx, grads
