"""Position-wise feed-forward block ``linear2(dropout(act(linear1(x))))``; mirrors ``reference/feed_forward.py``."""

from __future__ import annotations

import torch
from torch import nn

from reference.activations import check_activation
from torch_impl.scratch.activations import activation
from torch_impl.scratch.dropout import Dropout
from torch_impl.scratch.linear import Linear


class FeedForward(nn.Module):
    """x (..., D) -> y (..., D); parameters ``linear1.{weight,bias}`` (D_ff, D), ``linear2.{weight,bias}`` (D, D_ff)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        check_activation(activation)
        self.activation = activation
        self.linear1 = Linear(d_model, d_ff, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor, dropout_keep: torch.Tensor | None = None) -> torch.Tensor:
        """``dropout_keep`` (..., D_ff) fixes the inner dropout pattern (training mode only)."""
        h = activation(self.linear1(x), self.activation)  # (..., D_ff)
        return self.linear2(self.dropout(h, dropout_keep))  # (..., D)
