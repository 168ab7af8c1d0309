"""Sinusoidal positional encoding; mirrors ``reference/positional_encoding.py`` and uses its table (one
formula, computed once in float64), held as a non-persistent buffer: it is not a parameter and is not saved."""

from __future__ import annotations

import torch
from torch import nn

from reference.positional_encoding import sinusoidal_table
from reference.validate import check_positional_inputs


class PositionalEncoding(nn.Module):
    """x (B, L, D) -> x + PE[:L], sliced by the sequence axis (batch first)."""

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.register_buffer("table", torch.from_numpy(sinusoidal_table(max_len, d_model)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_positional_inputs(tuple(x.shape), tuple(self.table.shape))
        L = x.shape[1]
        return x + self.table[:L].to(x.dtype)  # (B, L, D); table[:L] (L, D) broadcast over the batch
