"""Encoder and decoder layers through ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``.

Each wrapper holds the torch layer in ``layer`` (``batch_first=True``, ``norm_first`` and ``bias``
from the config) and takes our keep-masks, converted to torch's arguments by ``torch_masks`` at
this edge. Torch's layer names its sites exactly as ``reference/layers.py`` does (``norm1..3``,
``dropout1..3``, the FFN's inner ``dropout``); ``torch_impl.convert`` maps the parameter names
(``multihead_attn`` for our ``cross_attn``, ``linear1/2`` for our ``ffn.linear1/2``).

Torch's fused attention draws its dropout differently from ``F.dropout``, so the native layers
are compared at dropout 0 (train mode, or eval with the fast path off or on).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference.config import TransformerConfig
from torch_impl.native.multi_head_attention import float_masks_off_fast_path, torch_masks


def native_activation(name: str) -> str | Callable[[torch.Tensor], torch.Tensor]:
    """The ``activation`` argument of the torch layers: "relu", "gelu" (exact erf), or tanh-GELU as a callable.

    Not ``nn.GELU(approximate="tanh")``: torch's eval fast path recognises any ``nn.GELU`` and computes
    it as *exact* GELU (PITFALLS.md); a plain callable keeps that fast path away.
    """
    return functools.partial(F.gelu, approximate="tanh") if name == "gelu_tanh" else name


def encoder_layer(config: TransformerConfig) -> nn.TransformerEncoderLayer:
    """The torch encoder layer of ``config``."""
    return nn.TransformerEncoderLayer(
        config.d_model, config.n_heads, config.d_ff, config.dropout, native_activation(config.activation),
        config.layer_norm_eps, batch_first=True, norm_first=config.norm_first, bias=config.bias,
    )


def decoder_layer(config: TransformerConfig) -> nn.TransformerDecoderLayer:
    """The torch decoder layer of ``config``."""
    return nn.TransformerDecoderLayer(
        config.d_model, config.n_heads, config.d_ff, config.dropout, native_activation(config.activation),
        config.layer_norm_eps, batch_first=True, norm_first=config.norm_first, bias=config.bias,
    )


def decoder_mask_kwargs(
    x: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None, memory_mask: torch.Tensor | None, H: int
) -> dict[str, Any]:
    """Our two keep-masks -> the six mask arguments of ``nn.TransformerDecoder(Layer).forward``."""
    (B, Lt, _), Ls = x.shape, memory.shape[1]
    tgt, tgt_padding, tgt_causal = torch_masks(tgt_mask, B, H, Lt, Lt, "tgt_mask")
    mem, mem_padding, mem_causal = torch_masks(memory_mask, B, H, Lt, Ls, "memory_mask")
    return {"tgt_mask": tgt, "memory_mask": mem, "tgt_key_padding_mask": tgt_padding,
            "memory_key_padding_mask": mem_padding, "tgt_is_causal": tgt_causal, "memory_is_causal": mem_causal}


class EncoderLayer(nn.Module):
    """x (B, L, D) -> (B, L, D); ``src_mask`` a keep-mask (or additive mask) broadcastable to (B, H, L, L)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = encoder_layer(config)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, _ = x.shape
        mask, padding, is_causal = torch_masks(src_mask, B, self.config.n_heads, L, L, "src_mask")
        with float_masks_off_fast_path(mask):
            return self.layer(x, src_mask=mask, src_key_padding_mask=padding, is_causal=is_causal)  # (B, L, D)


class DecoderLayer(nn.Module):
    """x (B, Lt, D), memory (B, Ls, D) -> (B, Lt, D); ``tgt_mask`` (B, H, Lt, Lt), ``memory_mask`` (B, H, Lt, Ls)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = decoder_layer(config)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.layer(x, memory, **decoder_mask_kwargs(x, memory, tgt_mask, memory_mask,
                                                             self.config.n_heads))  # (B, Lt, D)
