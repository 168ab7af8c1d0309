r"""Token embedding (a table lookup, optionally scaled), forward and backward.

Forward, with a table :math:`W` of shape ``(V, D)`` and a scale :math:`s` (``sqrt(d_model)`` when the
model scales its embeddings, as the 2017 paper does; 1 otherwise):

.. math::  y_{b,l} = s\, W_{t_{b,l}}

Backward. :math:`y_{b,l,d}` depends on :math:`W_{v,d}` only where :math:`t_{b,l} = v`, so

.. math::  dW_v = s \sum_{(b, l):\ t_{b,l} = v} dy_{b,l}

a scatter-*add*: a token that occurs several times collects the sum of its gradients (``np.add.at``;
plain fancy-index assignment would keep only the last one). Tokens are integers: they have no gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.validate import check_embedding_inputs


def embedding_forward(
    tokens: np.ndarray, weight: np.ndarray, scale: float = 1.0
) -> tuple[np.ndarray, dict[str, Any]]:
    """tokens (B, L) int, weight (V, D) -> y (B, L, D) = scale * weight[tokens]; returns (y, cache)."""
    check_embedding_inputs(tokens, weight.shape)
    y = weight[tokens] * scale  # (B, L, D)
    return y, {"tokens": tokens, "vocab_size": weight.shape[0], "scale": scale}


def embedding_backward(dy: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
    """dy (B, L, D) -> dweight (V, D), a scatter-add over repeated tokens."""
    tokens, scale = cache["tokens"], cache["scale"]
    dweight = np.zeros((cache["vocab_size"], dy.shape[-1]), dtype=dy.dtype)  # (V, D)
    np.add.at(dweight, tokens.reshape(-1), dy.reshape(-1, dy.shape[-1]) * scale)  # (V, D)
    return dweight
