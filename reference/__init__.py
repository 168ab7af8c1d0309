"""The NumPy reference: the oracle. Every component is a ``*_forward`` / ``*_backward`` pair.

This package never imports torch.
"""

from reference.attention import attention_backward, attention_forward
from reference.config import TransformerConfig
from reference.gradcheck import numerical_gradient, numerical_gradients
from reference.masks import causal_mask, padding_mask, to_additive
from reference.softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

__all__ = [
    "TransformerConfig",
    "attention_backward",
    "attention_forward",
    "causal_mask",
    "log_softmax_backward",
    "log_softmax_forward",
    "numerical_gradient",
    "numerical_gradients",
    "padding_mask",
    "softmax_backward",
    "softmax_forward",
    "to_additive",
]
