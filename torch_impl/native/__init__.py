"""PyTorch's own modules: ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``, ``nn.Transformer``."""

from torch_impl.native.attention import BACKENDS, scaled_dot_product_attention

__all__ = ["BACKENDS", "scaled_dot_product_attention"]
