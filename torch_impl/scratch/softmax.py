"""Softmax and log-softmax along the last axis from tensor ops (max-subtracted); mirrors ``reference/softmax.py``."""

from __future__ import annotations

import torch

from reference.validate import check_softmax_input


def _row_shift(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> m (..., 1): the row's max, 0 on a row of -inf only; a constant (no gradient)."""
    m = x.amax(dim=-1, keepdim=True).detach()  # (..., 1)
    return torch.where(m == float("-inf"), torch.zeros_like(m), m)  # (..., 1)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> y (..., N) = e^(x - m) / sum e^(x - m); 0 on a row of -inf only."""
    check_softmax_input(x)
    e = torch.exp(x - _row_shift(x))  # (..., N)
    row_sum = e.sum(dim=-1, keepdim=True)  # (..., 1)
    return e / torch.where(row_sum == 0, torch.ones_like(row_sum), row_sum)  # (..., N)


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> z (..., N) = x - m - log sum e^(x - m); -inf on a row of -inf only."""
    check_softmax_input(x)
    shifted = x - _row_shift(x)  # (..., N)
    row_sum = torch.exp(shifted).sum(dim=-1, keepdim=True)  # (..., 1)
    return shifted - torch.log(torch.where(row_sum == 0, torch.ones_like(row_sum), row_sum))  # (..., N)
