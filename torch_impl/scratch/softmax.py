"""Softmax and log-softmax along the last axis from tensor ops (max-subtracted); mirrors ``reference/softmax.py``."""

from __future__ import annotations

import torch


def softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> y (..., N) = e^(x - m) / sum e^(x - m)."""
    e = torch.exp(x - x.amax(dim=-1, keepdim=True).detach())  # (..., N); the shift is a constant
    return e / e.sum(dim=-1, keepdim=True)  # (..., N)


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> z (..., N) = x - m - log sum e^(x - m)."""
    shifted = x - x.amax(dim=-1, keepdim=True).detach()  # (..., N); the shift is a constant
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))  # (..., N)
