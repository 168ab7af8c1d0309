"""From-scratch PyTorch: tensor ops only, autograd for the backward, mirrors ``reference/``."""

from torch_impl.scratch.activations import activation
from torch_impl.scratch.attention import scaled_dot_product_attention
from torch_impl.scratch.dropout import Dropout
from torch_impl.scratch.embedding import Embedding
from torch_impl.scratch.feed_forward import FeedForward
from torch_impl.scratch.layer_norm import LayerNorm
from torch_impl.scratch.linear import Linear
from torch_impl.scratch.losses import cross_entropy, paper_label_smoothing_loss
from torch_impl.scratch.positional_encoding import PositionalEncoding
from torch_impl.scratch.softmax import log_softmax

__all__ = [
    "Dropout",
    "Embedding",
    "FeedForward",
    "LayerNorm",
    "Linear",
    "PositionalEncoding",
    "activation",
    "cross_entropy",
    "log_softmax",
    "paper_label_smoothing_loss",
    "scaled_dot_product_attention",
]
