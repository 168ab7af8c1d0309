"""Inverted dropout from tensor ops; mirrors ``reference/dropout.py`` (y = x * keep / (1 - p))."""

from __future__ import annotations

import torch
from torch import nn

from reference.validate import check_keep


def dropout(x: torch.Tensor, p: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """x (...) -> y (...); ``keep`` (boolean, x's shape) fixes the pattern, else it is drawn with torch.rand."""
    check_keep(keep, tuple(x.shape), p)
    if p == 0.0:
        return x
    if keep is None:
        keep = torch.rand_like(x) >= p  # (...)
    return x * keep.to(x.dtype) / (1.0 - p)  # (...)


class Dropout(nn.Module):
    """Inverted dropout while training, identity in eval mode. ``forward(x, keep=None)``: an explicit
    keep-mask is only meaningful in training mode (in eval mode p is 0 and a mask is an error)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        check_keep(None, (), p)
        self.p = p

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return dropout(x, self.p if self.training else 0.0, keep)
