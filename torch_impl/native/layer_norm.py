"""Layer norm, native: ``torch.nn.LayerNorm`` (same constructor ``LayerNorm(d, eps, elementwise_affine, bias)``
and parameter names as ``torch_impl/scratch/layer_norm.py``; it uses the biased variance), with the shared
argument checks: ``eps`` finite and positive (``eps=inf`` would return zeros), shapes as in the reference."""

from __future__ import annotations

import torch
from torch import nn

from reference.validate import check_eps, check_layer_norm_shapes


class LayerNorm(nn.LayerNorm):
    """x (..., D) -> ``nn.LayerNorm`` (..., D), with the reference's checks of eps and of the shapes."""

    def __init__(self, d: int, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True) -> None:
        check_eps(eps)
        super().__init__(d, eps=eps, elementwise_affine=elementwise_affine, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_layer_norm_shapes(tuple(x.shape), None if self.weight is None else tuple(self.weight.shape),
                                None if self.bias is None else tuple(self.bias.shape), self.eps)
        return super().forward(x)  # (..., D)
