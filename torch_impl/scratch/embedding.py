"""Token embedding from tensor ops (indexing); mirrors ``reference/embedding.py``. Autograd's backward of
indexing is the scatter-add the reference writes out by hand."""

from __future__ import annotations

import torch
from torch import nn

from reference.validate import check_embedding_inputs


class Embedding(nn.Module):
    """tokens (B, L) -> scale * weight[tokens] (B, L, D); parameter ``weight`` (V, D) ~ N(0, 1) like nn.Embedding."""

    def __init__(self, vocab_size: int, d_model: int, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_embedding_inputs(tokens, tuple(self.weight.shape))
        return self.weight[tokens] * self.scale  # (B, L, D)
