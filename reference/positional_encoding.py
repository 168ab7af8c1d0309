r"""Sinusoidal positional encoding (Vaswani et al. 2017, section 3.5), forward and backward.

The table, for position :math:`p` and pair index :math:`i = 0, 1, \dots`:

.. math::  PE_{p, 2i} = \sin\!\big(p / 10000^{2i/d}\big), \qquad PE_{p, 2i+1} = \cos\!\big(p / 10000^{2i/d}\big)

Both members of a pair use the *same* frequency :math:`10000^{-2i/d}` (the exponent is the pair index
:math:`2i`, not the column index). With an odd :math:`d` the last column is a sine without its cosine.

Forward on a batch-first ``x (B, L, D)``: the table is sliced by the *sequence* axis,
:math:`y_{b,l} = x_{b,l} + PE_l` (slicing by ``x.shape[0]`` would add PE by batch index).
Backward: the table is a constant, so :math:`dx = dy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.validate import check_positional_inputs


def sinusoidal_table(max_len: int, d_model: int, dtype: Any = np.float64) -> np.ndarray:
    """The (max_len, d_model) table PE, computed in float64 and then cast to ``dtype``."""
    if int(max_len) < 1:
        raise ValueError(f"max_len: expected a positive int, got {max_len}")
    if int(d_model) < 1:
        raise ValueError(f"d_model: expected a positive int, got {d_model}")
    position = np.arange(max_len, dtype=np.float64)[:, None]  # (max_len, 1)
    pair = np.arange((d_model + 1) // 2, dtype=np.float64)  # (ceil(d/2),) pair index i
    angle = position / 10000.0 ** (2.0 * pair / d_model)  # (max_len, ceil(d/2))
    table = np.zeros((max_len, d_model), dtype=np.float64)  # (max_len, D)
    table[:, 0::2] = np.sin(angle)  # even columns 2i
    table[:, 1::2] = np.cos(angle[:, : d_model // 2])  # odd columns 2i + 1 (one fewer when d is odd)
    return table.astype(dtype)


def positional_encoding_forward(x: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, None]:
    """x (B, L, D), table (max_len, D) -> y (B, L, D) = x + table[:L]; returns (y, cache)."""
    check_positional_inputs(x.shape, table.shape)
    L = x.shape[1]
    return x + table[:L], None  # (B, L, D); table[:L] (L, D) broadcast over the batch


def positional_encoding_backward(dy: np.ndarray, cache: None) -> np.ndarray:
    """dy (B, L, D) -> dx (B, L, D) = dy: the table is a constant."""
    return dy
