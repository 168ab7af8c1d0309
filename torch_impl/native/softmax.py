"""Softmax and log-softmax, native: ``torch.softmax`` and ``torch.log_softmax`` along the last axis.

Both return NaN on a row of -inf only; the convention here (and in the reference) is softmax 0 and
log-softmax -inf there, so such rows are fed to torch as zeros and replaced afterwards (no device sync, and
a gradient of 0 rather than NaN through the replaced rows).
"""

from __future__ import annotations

import torch

from reference.validate import check_softmax_input


def _empty_rows(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> (..., 1) bool: True on a row of -inf only."""
    return x.amax(dim=-1, keepdim=True) == float("-inf")  # (..., 1)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> y (..., N); 0 on a row of -inf only."""
    check_softmax_input(x)
    empty = _empty_rows(x)  # (..., 1)
    y = torch.softmax(torch.where(empty, torch.zeros_like(x), x), dim=-1)  # (..., N)
    return torch.where(empty, torch.zeros_like(y), y)  # (..., N)


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> z (..., N); -inf on a row of -inf only."""
    check_softmax_input(x)
    empty = _empty_rows(x)  # (..., 1)
    z = torch.log_softmax(torch.where(empty, torch.zeros_like(x), x), dim=-1)  # (..., N)
    return torch.where(empty, x, z)  # (..., N)
