"""Encoder and decoder layers from the scratch modules; mirror ``reference/layers.py`` (maths in its docstring).

Autograd provides the backward. Sites and names are torch's: ``self_attn``, ``cross_attn``, ``ffn``,
``norm1..3``, ``dropout1..3``. ``dropout_keeps`` (``{site: bool tensor}``, shapes from
``reference.layers.dropout_site_shapes``) drives every dropout in training mode with given masks,
so that these layers can be compared with the reference with dropout on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from reference.config import TransformerConfig
from reference.layers import dropout_site_shapes
from reference.validate import check_layer_input, check_mask_shape, check_param_shapes
from torch_impl.scratch.dropout import Dropout
from torch_impl.scratch.feed_forward import FeedForward
from torch_impl.scratch.layer_norm import LayerNorm
from torch_impl.scratch.multi_head_attention import MultiHeadAttention


def residual(
    x: torch.Tensor,
    sublayer: Callable[[torch.Tensor], torch.Tensor],
    norm: LayerNorm,
    dropout: Dropout,
    keep: torch.Tensor | None,
    norm_first: bool,
) -> torch.Tensor:
    """Pre-norm ``x + drop(F(N(x)))`` or post-norm ``N(x + drop(F(x)))``; (B, L, D) -> (B, L, D)."""
    if norm_first:
        return x + dropout(sublayer(norm(x)), keep)
    return norm(x + dropout(sublayer(x), keep))


def checked_keeps(dropout_keeps: Mapping[str, torch.Tensor] | None, shapes: Mapping[str, tuple[int, ...]],
                  module: nn.Module) -> Mapping[str, torch.Tensor]:
    """The given keep-masks after checking their sites and shapes ({} when none: dropout draws its own)."""
    if dropout_keeps is None:
        return {}
    if not module.training:
        raise ValueError("dropout_keeps: given, but the module is in eval mode (no dropout)")
    check_param_shapes(dropout_keeps, shapes, "dropout_keeps")
    return dropout_keeps


class EncoderLayer(nn.Module):
    """x (B, L, D) -> (B, L, D); ``src_mask`` a keep-mask (or additive mask) broadcastable to (B, H, L, L)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        D, p, eps = config.d_model, config.dropout, config.layer_norm_eps
        self.self_attn = MultiHeadAttention(D, config.n_heads, p, config.bias)
        self.norm1 = LayerNorm(D, eps, bias=config.bias)
        self.norm2 = LayerNorm(D, eps, bias=config.bias)
        self.ffn = FeedForward(D, config.d_ff, config.activation, p, config.bias)
        self.dropout1 = Dropout(p)
        self.dropout2 = Dropout(p)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor | None = None,
                dropout_keeps: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        config = self.config
        check_layer_input(tuple(x.shape), config.d_model, "x")
        B, L, _ = x.shape
        check_mask_shape(src_mask, (B, config.n_heads, L, L), "src_mask")
        keep = checked_keeps(dropout_keeps, dropout_site_shapes(config, B, L), self)
        x = residual(x, lambda h: self.self_attn(h, h, src_mask, keep.get("self_attn")), self.norm1, self.dropout1,
                     keep.get("dropout1"), config.norm_first)  # (B, L, D)
        return residual(x, lambda h: self.ffn(h, keep.get("ffn")), self.norm2, self.dropout2, keep.get("dropout2"),
                        config.norm_first)  # (B, L, D)


class DecoderLayer(nn.Module):
    """x (B, Lt, D), memory (B, Ls, D) -> (B, Lt, D); ``tgt_mask`` (B, H, Lt, Lt), ``memory_mask`` (B, H, Lt, Ls)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        D, p, eps = config.d_model, config.dropout, config.layer_norm_eps
        self.self_attn = MultiHeadAttention(D, config.n_heads, p, config.bias)
        self.cross_attn = MultiHeadAttention(D, config.n_heads, p, config.bias)
        self.norm1 = LayerNorm(D, eps, bias=config.bias)
        self.norm2 = LayerNorm(D, eps, bias=config.bias)
        self.norm3 = LayerNorm(D, eps, bias=config.bias)
        self.ffn = FeedForward(D, config.d_ff, config.activation, p, config.bias)
        self.dropout1 = Dropout(p)
        self.dropout2 = Dropout(p)
        self.dropout3 = Dropout(p)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        dropout_keeps: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        config = self.config
        check_layer_input(tuple(x.shape), config.d_model, "x")
        check_layer_input(tuple(memory.shape), config.d_model, "memory")
        (B, Lt, _), Ls, H = x.shape, memory.shape[1], config.n_heads
        check_mask_shape(tgt_mask, (B, H, Lt, Lt), "tgt_mask")
        check_mask_shape(memory_mask, (B, H, Lt, Ls), "memory_mask")
        keep = checked_keeps(dropout_keeps, dropout_site_shapes(config, B, Lt, Ls), self)
        x = residual(x, lambda h: self.self_attn(h, h, tgt_mask, keep.get("self_attn")), self.norm1, self.dropout1,
                     keep.get("dropout1"), config.norm_first)  # (B, Lt, D)
        x = residual(x, lambda h: self.cross_attn(h, memory, memory_mask, keep.get("cross_attn")), self.norm2,
                     self.dropout2, keep.get("dropout2"), config.norm_first)  # (B, Lt, D); keys from (B, Ls, D)
        return residual(x, lambda h: self.ffn(h, keep.get("ffn")), self.norm3, self.dropout3, keep.get("dropout3"),
                        config.norm_first)  # (B, Lt, D)
