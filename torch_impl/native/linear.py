"""Linear map, native: ``torch.nn.Linear`` (same constructor ``Linear(in_features, out_features, bias)`` and
the same parameter names ``weight`` (out, in), ``bias`` (out,) as ``torch_impl/scratch/linear.py``), with the
reference's shape check, so a wrong input names the argument rather than torch's ``mat1 and mat2``."""

from __future__ import annotations

import torch
from torch import nn

from reference.linear import check_linear_shapes


class Linear(nn.Linear):
    """x (..., in) -> ``nn.Linear`` (..., out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_linear_shapes(tuple(x.shape), tuple(self.weight.shape),
                            None if self.bias is None else tuple(self.bias.shape))
        return super().forward(x)  # (..., out)
