"""PyTorch's own modules: ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``, ``nn.Transformer``."""

from torch_impl.native.activations import activation
from torch_impl.native.attention import BACKENDS, scaled_dot_product_attention
from torch_impl.native.dropout import Dropout
from torch_impl.native.embedding import Embedding
from torch_impl.native.feed_forward import FeedForward
from torch_impl.native.layer_norm import LayerNorm
from torch_impl.native.linear import Linear
from torch_impl.native.losses import cross_entropy, paper_label_smoothing_loss
from torch_impl.native.positional_encoding import PositionalEncoding
from torch_impl.native.softmax import log_softmax

__all__ = [
    "BACKENDS",
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
