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


def masked_softmax(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., N) with -inf at hidden entries -> (y (..., N), lse (...)); a row of only -inf: y = 0, lse = -inf.

    Mirrors ``reference.softmax.masked_softmax_forward``. The LSE is returned detached: it is an output
    to compare (as in FlashAttention, whose autograd function marks it non-differentiable), and on an
    empty row its derivative would be 0/0.
    """
    if x.shape[-1] == 0:  # no entries at all (no keys): every row is empty
        return x, x.new_full(x.shape[:-1], float("-inf")).detach()  # (..., 0), (...)
    row_max = x.amax(dim=-1, keepdim=True).detach()  # (..., 1); a constant shift, no gradient
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))  # empty row: -inf -> 0
    e = torch.exp(x - row_max)  # (..., N); exp(-inf) = 0
    row_sum = e.sum(dim=-1, keepdim=True)  # (..., 1); 0 on an empty row
    y = e / torch.where(row_sum > 0, row_sum, torch.ones_like(row_sum))  # (..., N); 0 on an empty row
    lse = (row_max + torch.log(row_sum.detach()))[..., 0]  # (...); log 0 = -inf on an empty row
    return y, lse
