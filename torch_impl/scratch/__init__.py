"""From-scratch PyTorch: tensor ops only, autograd for the backward, mirrors ``reference/``."""

from torch_impl.scratch.attention import scaled_dot_product_attention

__all__ = ["scaled_dot_product_attention"]
