"""The three model kinds from ``torch.nn``: ``nn.Transformer``, ``nn.TransformerEncoder`` and friends.

- ``EncoderDecoder`` *is* an ``nn.Transformer(batch_first=True)`` (a subclass) that also holds two
  embeddings (``nn.Embedding``), the sinusoidal buffer and an ``nn.Linear`` generator.
- ``EncoderClassifier``: ``nn.TransformerEncoder`` (attribute ``encoder``), masked mean pooling, ``nn.Linear`` head.
- ``DecoderLM``: ``nn.TransformerEncoder`` (attribute ``decoder``: GPT's decoder-only stack has no cross-attention,
  so it is an encoder stack) run with a causal mask, and an ``nn.Linear`` LM head.

Torch has no positional-encoding module: the native models reuse the scratch ``PositionalEncoding`` buffer;
``native.embedding.Embedding`` is ``nn.Embedding`` times the optional scale.
The equations are in ``reference/models.py``. The attribute names make these modules' ``state_dict()`` keys
the flat dictionary's keys up to ``torch_impl/convert.py``'s renames (``in_proj_weight``, ``linear1``, ...).

Masks in: keep-masks (``True`` = may attend), broadcastable to ``(B, H, Lq, Lk)``. ``nn.Transformer`` reads
``True`` as *blocked*; ``torch_masks`` (``native/multi_head_attention.py``) converts at this edge. ``nn.Transformer``
always builds a final norm on each stack; ``config.final_norm=False`` removes it (``norm = None``).

Tied weights: ``generator.weight`` *is* ``tgt_embed.weight`` (one ``nn.Parameter``), so ``parameters()``
counts it once and autograd sums both uses into its ``.grad``; ``state_dict()`` lists it under both names.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.config import TransformerConfig
from reference.models import embedding_scale
from reference.validate import check_classifier_tokens, check_tokens
from torch_impl.native.embedding import Embedding
from torch_impl.native.layers import decoder_layer, encoder_layer, native_activation
from torch_impl.native.multi_head_attention import float_masks_off_fast_path, torch_masks
from torch_impl.native.positional_encoding import PositionalEncoding
from torch_impl.native.stacks import CausalDecoder, TransformerDecoder, TransformerEncoder, final_norm


def _encoder_stack(config: TransformerConfig, n_layers: int) -> TransformerEncoder:
    """An ``nn.TransformerEncoder`` of ``n_layers`` (0 too) layers; no nested tensors, so every row is computed.

    The nested-tensor path would zero padded memory rows in eval without grad (#86120), and without a
    ``memory_key_padding_mask`` every decoder output would then differ (#132136)."""
    return TransformerEncoder(encoder_layer(config), n_layers, norm=final_norm(config), enable_nested_tensor=False)


class EncoderDecoder(nn.Transformer):
    """src (B, Ls), tgt (B, Lt) -> logits (B, Lt, V_tgt). An ``nn.Transformer`` (so its ``encoder`` and ``decoder``
    keep torch's keys) that also owns the embeddings and the generator."""

    def __init__(self, config: TransformerConfig) -> None:
        # Our own stacks (torch's, taking zero layers too, with the final norms only when config.final_norm:
        # nn.Transformer's own always have them) through nn.Transformer's custom_encoder/custom_decoder.
        decoder = TransformerDecoder(decoder_layer(config), config.n_decoder_layers, norm=final_norm(config))
        super().__init__(
            config.d_model, config.n_heads, config.n_encoder_layers, config.n_decoder_layers, config.d_ff,
            config.dropout, native_activation(config.activation), layer_norm_eps=config.layer_norm_eps,
            batch_first=True, norm_first=config.norm_first, bias=config.bias,
            custom_encoder=_encoder_stack(config, config.n_encoder_layers), custom_decoder=decoder,
        )
        self.config = config
        D, V = config.d_model, config.tgt_vocab_size
        self.src_embed = Embedding(config.src_vocab_size, D, embedding_scale(config))
        self.tgt_embed = Embedding(V, D, embedding_scale(config))
        self.positional_encoding = PositionalEncoding(D, config.max_len)  # torch has none: the scratch buffer
        self.dropout = nn.Dropout(config.dropout)
        self.generator = nn.Linear(D, V, bias=config.bias)
        if config.tie_weights:
            self.generator.weight = self.tgt_embed.weight

    def forward(  # type: ignore[override]  # tokens in, logits out
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        config = self.config
        check_tokens("src", src.cpu(), config.src_vocab_size, config.max_len)
        check_tokens("tgt", tgt.cpu(), config.tgt_vocab_size, config.max_len)
        (B, Ls), Lt, H = src.shape, tgt.shape[1], config.n_heads
        x = self.dropout(self.positional_encoding(self.src_embed(src)))  # (B, Ls, D)
        y = self.dropout(self.positional_encoding(self.tgt_embed(tgt)))  # (B, Lt, D)
        src_attn, src_padding, src_causal = torch_masks(src_mask, B, H, Ls, Ls, "src_mask")
        tgt_attn, tgt_padding, tgt_causal = torch_masks(tgt_mask, B, H, Lt, Lt, "tgt_mask")
        memory_attn, memory_padding, _ = torch_masks(memory_mask, B, H, Lt, Ls, "memory_mask")
        with float_masks_off_fast_path(src_attn):
            h = super().forward(
                x, y, src_mask=src_attn, tgt_mask=tgt_attn, memory_mask=memory_attn,
                src_key_padding_mask=src_padding, tgt_key_padding_mask=tgt_padding,
                memory_key_padding_mask=memory_padding, src_is_causal=src_causal, tgt_is_causal=tgt_causal,
            )  # (B, Lt, D)
        return self.generator(h)  # (B, Lt, V_tgt)


class EncoderClassifier(nn.Module):
    """tokens (B, L) -> out (B, n_outputs): class logits, or a regression value when n_outputs == 1."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = Embedding(config.src_vocab_size, config.d_model, embedding_scale(config))
        self.positional_encoding = PositionalEncoding(config.d_model, config.max_len)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = _encoder_stack(config, config.n_encoder_layers)
        self.head = nn.Linear(config.d_model, config.n_outputs, bias=config.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        config = self.config
        check_classifier_tokens(tokens.cpu(), config)
        keep = tokens != config.pad_id  # (B, L)
        counts = keep.sum(dim=1)  # (B,), >= 1
        x = self.dropout(self.positional_encoding(self.embed(tokens)))  # (B, L, D)
        B, L = tokens.shape
        _, padding, _ = torch_masks(keep[:, None, None, :], B, config.n_heads, L, L)  # padding (B, L), True = blocked
        h = self.encoder(x, src_key_padding_mask=padding)  # (B, L, D)
        weights = keep.to(h.dtype) / counts[:, None].to(h.dtype)  # (B, L): m_bl / n_b
        pooled = (weights[:, :, None] * h).sum(dim=1)  # (B, D); padded rows (0 on the fast path) weigh 0
        return self.head(pooled)  # (B, n_outputs)


class DecoderLM(nn.Module):
    """tokens (B, L) -> next-token logits (B, L, V_tgt) under a causal mask."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        D, V = config.d_model, config.tgt_vocab_size
        self.embed = Embedding(V, D, embedding_scale(config))
        self.positional_encoding = PositionalEncoding(D, config.max_len)
        self.dropout = nn.Dropout(config.dropout)
        self.decoder = CausalDecoder(config)
        self.lm_head = nn.Linear(D, V, bias=config.bias)
        if config.tie_weights:
            self.lm_head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        config = self.config
        check_tokens("tokens", tokens.cpu(), config.tgt_vocab_size, config.max_len)
        x = self.dropout(self.positional_encoding(self.embed(tokens)))  # (B, L, D)
        h = self.decoder(x)  # (B, L, D)
        return self.lm_head(h)  # (B, L, V_tgt)
