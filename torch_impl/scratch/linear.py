"""Linear (affine) map from tensor ops; mirrors ``reference/linear.py`` (the maths is in its docstring)."""

from __future__ import annotations

import math

import torch
from torch import nn

from reference.validate import check_linear_shapes


class Linear(nn.Module):
    """x (..., in) -> y (..., out) = x W^T + b; parameters ``weight`` (out, in) and ``bias`` (out,) or None.

    Initialised uniform in +-1/sqrt(in), the range torch's nn.Linear ends up with.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_linear_shapes(tuple(x.shape), tuple(self.weight.shape),
                            None if self.bias is None else tuple(self.bias.shape))
        y = x @ self.weight.T  # (..., out)
        return y if self.bias is None else y + self.bias  # (..., out)
