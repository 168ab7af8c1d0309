"""Token embedding, native: ``torch.nn.Embedding`` (parameter ``weight`` (V, D)), times the optional scale,
which nn.Embedding does not have (``nn.Transformer`` leaves it to the caller)."""

from __future__ import annotations

import torch
from torch import nn

from reference.embedding import check_embedding_inputs


class Embedding(nn.Embedding):
    """tokens (B, L) -> scale * nn.Embedding(tokens) (B, L, D)."""

    def __init__(self, vocab_size: int, d_model: int, scale: float = 1.0) -> None:
        super().__init__(vocab_size, d_model)
        self.scale = scale

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_embedding_inputs(tokens, tuple(self.weight.shape))  # torch would fail with an index error
        return super().forward(tokens) * self.scale  # (B, L, D)
