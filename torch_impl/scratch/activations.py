"""ReLU, GELU (erf) and GELU (tanh) from tensor ops; mirrors ``reference/activations.py``."""

from __future__ import annotations

import math

import torch

from reference.activations import check_activation

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715


def relu(x: torch.Tensor) -> torch.Tensor:
    """max(x, 0) (gradient 0 at x = 0, as the reference)."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def gelu(x: torch.Tensor) -> torch.Tensor:
    """x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_CUBIC * x**3)))


_FUNCTIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh}


def activation(x: torch.Tensor, name: str) -> torch.Tensor:
    """x (...) -> y (...) for ``name`` in relu, gelu, gelu_tanh."""
    check_activation(name)
    return _FUNCTIONS[name](x)
