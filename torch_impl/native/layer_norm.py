"""Layer norm, native: ``torch.nn.LayerNorm`` itself (same constructor ``LayerNorm(d, eps, elementwise_affine,
bias)`` and parameter names as ``torch_impl/scratch/layer_norm.py``; it uses the biased variance)."""

from torch.nn import LayerNorm

__all__ = ["LayerNorm"]
