"""Position-wise feed-forward block from ``nn.Linear``, ``F.relu`` / ``F.gelu`` and ``nn.Dropout``, the pieces
``nn.TransformerEncoderLayer`` uses (``linear1``, ``dropout``, ``linear2``), with the scratch parameter names."""

from __future__ import annotations

import torch
from torch import nn

from reference.activations import check_activation
from torch_impl.native.activations import activation
from torch_impl.native.dropout import Dropout
from torch_impl.native.linear import Linear


class FeedForward(nn.Module):
    """x (..., D) -> linear2(dropout(act(linear1(x)))) (..., D)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        check_activation(activation)
        self.activation = activation
        self.linear1 = Linear(d_model, d_ff, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = activation(self.linear1(x), self.activation)  # (..., D_ff)
        return self.linear2(self.dropout(h))  # (..., D)
