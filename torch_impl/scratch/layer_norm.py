"""Layer norm from tensor ops (biased variance); mirrors ``reference/layer_norm.py``."""

from __future__ import annotations

import torch
from torch import nn

from reference.validate import check_eps, check_layer_norm_shapes


class LayerNorm(nn.Module):
    """x (..., D) -> y (..., D); parameters ``weight`` (D,) and ``bias`` (D,) when affine (ones and zeros)."""

    def __init__(self, d: int, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        check_eps(eps)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(d)) if elementwise_affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_layer_norm_shapes(tuple(x.shape), None if self.weight is None else tuple(self.weight.shape),
                                None if self.bias is None else tuple(self.bias.shape), self.eps)
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        centred = x - mean  # (..., D)
        var = (centred * centred).mean(dim=-1, keepdim=True)  # (..., 1); biased, NOT torch.var's default
        x_hat = centred * torch.rsqrt(var + self.eps)  # (..., D)
        y = x_hat if self.weight is None else x_hat * self.weight  # (..., D)
        return y if self.bias is None else y + self.bias  # (..., D)
