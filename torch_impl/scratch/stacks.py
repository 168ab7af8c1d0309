"""Encoder and decoder stacks from the scratch layers; mirror ``reference/stacks.py`` (maths in its docstring).

``layers`` is a ModuleList (keys ``layers.{i}.*``) and ``norm`` the final layer norm when
``config.final_norm``. ``dropout_keeps`` is keyed ``layers.{i}.<site>`` as in the reference.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from reference.config import TransformerConfig
from reference.params import sub_params
from torch_impl.scratch.layer_norm import LayerNorm
from torch_impl.scratch.layers import DecoderLayer, EncoderLayer


def _final_norm(config: TransformerConfig) -> LayerNorm | None:
    return LayerNorm(config.d_model, config.layer_norm_eps, bias=config.bias) if config.final_norm else None


def _layer_keeps(dropout_keeps: Mapping[str, torch.Tensor] | None, i: int) -> dict[str, torch.Tensor] | None:
    return None if dropout_keeps is None else sub_params(dropout_keeps, f"layers.{i}")


class Encoder(nn.Module):
    """x (B, L, D) -> (B, L, D) through ``n_layers`` self-attention layers (default ``config.n_encoder_layers``)
    and ``norm``."""

    def __init__(self, config: TransformerConfig, n_layers: int | None = None) -> None:
        super().__init__()
        n_layers = config.n_encoder_layers if n_layers is None else n_layers
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(n_layers))
        self.norm = _final_norm(config)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor | None = None,
                dropout_keeps: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, src_mask, _layer_keeps(dropout_keeps, i))  # (B, L, D)
        return x if self.norm is None else self.norm(x)  # (B, L, D)


class CausalDecoder(Encoder):
    """The decoder-only LM's stack: x (B, L, D) -> (B, L, D) through ``config.n_decoder_layers`` self-attention
    layers under a causal mask (query i sees keys 0..i), and ``norm``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config, config.n_decoder_layers)

    def forward(self, x: torch.Tensor, dropout_keeps: Mapping[str, torch.Tensor] | None = None  # type: ignore[override]
                ) -> torch.Tensor:
        L = x.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()  # (L, L): key j <= query i
        return super().forward(x, causal, dropout_keeps)  # (B, L, D)


class Decoder(nn.Module):
    """x (B, Lt, D), memory (B, Ls, D) -> (B, Lt, D) through ``config.n_decoder_layers`` layers (and ``norm``)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layers))
        self.norm = _final_norm(config)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        dropout_keeps: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask, memory_mask, _layer_keeps(dropout_keeps, i))  # (B, Lt, D)
        return x if self.norm is None else self.norm(x)  # (B, Lt, D)
