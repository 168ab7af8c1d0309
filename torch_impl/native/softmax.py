"""Softmax and log-softmax, native: ``torch.softmax`` and ``torch.log_softmax`` along the last axis."""

from __future__ import annotations

import torch


def softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> y (..., N)."""
    return torch.softmax(x, dim=-1)


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """x (..., N) -> z (..., N)."""
    return torch.log_softmax(x, dim=-1)
