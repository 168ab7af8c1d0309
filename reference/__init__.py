"""The NumPy reference: the oracle. Every component is a ``*_forward`` / ``*_backward`` pair.

This package never imports torch.
"""

from reference.activations import activation_backward, activation_forward
from reference.attention import attention_backward, attention_forward
from reference.config import TransformerConfig
from reference.dropout import dropout_backward, dropout_forward
from reference.embedding import embedding_backward, embedding_forward
from reference.feed_forward import feed_forward_backward, feed_forward_forward
from reference.flash_attention import (
    flash_attention_backward,
    flash_attention_forward,
    flash_attention_varlen_backward,
    flash_attention_varlen_forward,
)
from reference.gradcheck import numerical_gradient, numerical_gradients
from reference.layer_norm import layer_norm_backward, layer_norm_forward
from reference.linear import linear_backward, linear_forward
from reference.losses import (
    cross_entropy_backward,
    cross_entropy_forward,
    paper_label_smoothing_backward,
    paper_label_smoothing_forward,
)
from reference.masks import causal_mask, document_mask, padding_mask, to_additive, varlen_mask, window_mask
from reference.positional_encoding import positional_encoding_backward, positional_encoding_forward, sinusoidal_table
from reference.score_mods import (
    alibi_bias,
    alibi_slopes_geometric,
    repeat_kv_backward,
    repeat_kv_forward,
    softcap_backward,
    softcap_forward,
)
from reference.softmax import (
    log_softmax_backward,
    log_softmax_forward,
    masked_softmax_forward,
    softmax_backward,
    softmax_forward,
)

__all__ = [
    "TransformerConfig",
    "activation_backward",
    "activation_forward",
    "alibi_bias",
    "alibi_slopes_geometric",
    "attention_backward",
    "attention_forward",
    "causal_mask",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "document_mask",
    "dropout_backward",
    "dropout_forward",
    "embedding_backward",
    "embedding_forward",
    "feed_forward_backward",
    "feed_forward_forward",
    "flash_attention_backward",
    "flash_attention_forward",
    "flash_attention_varlen_backward",
    "flash_attention_varlen_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "linear_backward",
    "linear_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "masked_softmax_forward",
    "numerical_gradient",
    "numerical_gradients",
    "padding_mask",
    "paper_label_smoothing_backward",
    "paper_label_smoothing_forward",
    "positional_encoding_backward",
    "positional_encoding_forward",
    "repeat_kv_backward",
    "repeat_kv_forward",
    "sinusoidal_table",
    "softcap_backward",
    "softcap_forward",
    "softmax_backward",
    "softmax_forward",
    "to_additive",
    "varlen_mask",
    "window_mask",
]
