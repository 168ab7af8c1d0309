"""ReLU, GELU (erf) and GELU (tanh), native: ``F.relu`` and ``F.gelu(approximate="none" | "tanh")``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.activations import check_activation


def activation(x: torch.Tensor, name: str) -> torch.Tensor:
    """x (...) -> y (...) for ``name`` in relu, gelu, gelu_tanh."""
    check_activation(name)
    if name == "relu":
        return F.relu(x)
    return F.gelu(x, approximate="tanh" if name == "gelu_tanh" else "none")
