"""Encoder and decoder stacks through ``nn.TransformerEncoder`` / ``nn.TransformerDecoder``.

The wrappers hold the torch stack in ``stack`` and take keep-masks (converted by ``torch_masks``).
``norm`` is a final ``nn.LayerNorm`` when ``config.final_norm`` (``nn.Transformer`` always adds one;
the standalone torch stacks default to none). Torch builds the layers with ``_get_clones``, so
they start identical: load different weights (``torch_impl.convert.load_native``) before comparing.

The encoder keeps torch's default ``enable_nested_tensor=True``: in eval mode without gradients and
with a key-padding mask it runs the fast path, whose padded *query* rows are 0 before the final norm
(pytorch #86120); the tests compare only non-padded rows there.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from reference.config import TransformerConfig
from torch_impl.native.layers import decoder_layer, decoder_mask_kwargs, encoder_layer
from torch_impl.native.multi_head_attention import float_masks_off_fast_path, torch_masks


def final_norm(config: TransformerConfig) -> nn.LayerNorm | None:
    """The stack's final layer norm, or None when ``config.final_norm`` is off."""
    return nn.LayerNorm(config.d_model, config.layer_norm_eps, bias=config.bias) if config.final_norm else None


class TransformerEncoder(nn.TransformerEncoder):
    """``nn.TransformerEncoder`` that also runs with zero layers (torch's forward reads its first layer's
    settings and fails): then it is only its final norm, as in the reference and scratch."""

    def forward(self, src: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:  # type: ignore[override]
        if len(self.layers) == 0:
            return src if self.norm is None else self.norm(src)
        return super().forward(src, *args, **kwargs)  # type: ignore[arg-type]


class CausalDecoder(TransformerEncoder):
    """The decoder-only LM's stack: an ``nn.TransformerEncoder`` of ``config.n_decoder_layers`` layers run under a
    causal mask (query i sees keys 0..i); x (B, L, D) -> (B, L, D). Its keys are ``nn.TransformerEncoder``'s.

    No nested tensors, so every row is computed (the nested path zeroes padded rows: pytorch #86120)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(encoder_layer(config), config.n_decoder_layers, norm=final_norm(config),
                         enable_nested_tensor=False)
        self.n_heads = config.n_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        B, L, _ = x.shape
        keep = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()  # (L, L): key j <= query i
        blocked, _, is_causal = torch_masks(keep, B, self.n_heads, L, L)  # (B*H, L, L), True = blocked
        return super().forward(x, mask=blocked, is_causal=is_causal)  # (B, L, D)


class TransformerDecoder(nn.TransformerDecoder):
    """``nn.TransformerDecoder`` that also runs with zero layers: then it is only its final norm."""

    def forward(self, tgt: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:  # type: ignore[override]
        if len(self.layers) == 0:
            return tgt if self.norm is None else self.norm(tgt)
        return super().forward(tgt, *args, **kwargs)  # type: ignore[arg-type]


class Encoder(nn.Module):
    """x (B, L, D) -> (B, L, D) through ``config.n_encoder_layers`` layers."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        with warnings.catch_warnings():  # torch warns when a config (odd heads, pre-norm...) rules its fast path out
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            self.stack = TransformerEncoder(encoder_layer(config), config.n_encoder_layers, norm=final_norm(config))

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, _ = x.shape
        mask, padding, is_causal = torch_masks(src_mask, B, self.config.n_heads, L, L, "src_mask")
        with float_masks_off_fast_path(mask):
            return self.stack(x, mask=mask, src_key_padding_mask=padding, is_causal=is_causal)  # (B, L, D)


class Decoder(nn.Module):
    """x (B, Lt, D), memory (B, Ls, D) -> (B, Lt, D) through ``config.n_decoder_layers`` layers."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.stack = TransformerDecoder(decoder_layer(config), config.n_decoder_layers, norm=final_norm(config))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.stack(x, memory, **decoder_mask_kwargs(x, memory, tgt_mask, memory_mask,
                                                             self.config.n_heads))  # (B, Lt, D)
