r"""The three model kinds from the scratch components (tensor ops only; autograd does the backward).

Line for line the models of ``reference/models.py`` (the equations are in its docstring); the
parameter names of these modules' ``state_dict()`` *are* the flat dictionary's keys:

- ``EncoderDecoder``: ``src_embed``, ``tgt_embed``, ``encoder``, ``decoder``, ``generator``
- ``EncoderClassifier``: ``embed``, ``encoder``, ``head`` (mean pooling over non-pad positions)
- ``DecoderLM``: ``embed``, ``decoder`` (a ``CausalDecoder``: self-attention layers under a causal mask), ``lm_head``

Tied weights (``config.tie_weights``): the projection reads the target embedding's parameter
and owns only its bias, so ``state_dict()`` has no ``generator.weight`` / ``lm_head.weight`` and
autograd sums the two uses of the embedding into its one ``.grad``.

Masks are keep-masks (``True`` = may attend), broadcastable to ``(B, H, Lq, Lk)``.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.config import TransformerConfig
from reference.models import embedding_scale
from reference.validate import check_classifier_tokens, check_tokens
from torch_impl.scratch.dropout import Dropout
from torch_impl.scratch.embedding import Embedding
from torch_impl.scratch.linear import Linear
from torch_impl.scratch.positional_encoding import PositionalEncoding
from torch_impl.scratch.stacks import CausalDecoder, Decoder, Encoder


class TiedProjection(nn.Module):
    """h (..., D) -> h @ W.T + b (..., V) with W another module's parameter (the tied embedding)."""

    def __init__(self, n_out: int, bias: bool) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        y = h @ weight.T  # (..., V)
        return y if self.bias is None else y + self.bias


class TokenInput(nn.Module):
    """tokens (B, L) -> drop(embedding(tokens) + PE[:L]) (B, L, D). Holds no parameters, so the embeddings stay
    the model's own attributes and keep their keys (``src_embed.weight``)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.positional_encoding = PositionalEncoding(config.d_model, config.max_len)
        self.dropout = Dropout(config.dropout)

    def forward(self, tokens: torch.Tensor, embedding: Embedding) -> torch.Tensor:
        x = embedding(tokens)  # (B, L, D), scaled by sqrt(D) when config.scale_embedding
        return self.dropout(self.positional_encoding(x))  # (B, L, D)


def _project(head: nn.Module, h: torch.Tensor, tied_weight: torch.Tensor | None) -> torch.Tensor:
    return head(h) if tied_weight is None else head(h, tied_weight)


class EncoderDecoder(nn.Module):
    """src (B, Ls), tgt (B, Lt) -> logits (B, Lt, V_tgt)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = TokenInput(config)
        self.src_embed = Embedding(config.src_vocab_size, config.d_model, embedding_scale(config))
        self.tgt_embed = Embedding(config.tgt_vocab_size, config.d_model, embedding_scale(config))
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        V, D = config.tgt_vocab_size, config.d_model
        self.generator = TiedProjection(V, config.bias) if config.tie_weights else Linear(D, V, bias=config.bias)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_tokens("src", src.cpu(), self.config.src_vocab_size, self.config.max_len)
        check_tokens("tgt", tgt.cpu(), self.config.tgt_vocab_size, self.config.max_len)
        memory = self.encoder(self.inputs(src, self.src_embed), src_mask=src_mask)  # (B, Ls, D)
        y = self.inputs(tgt, self.tgt_embed)  # (B, Lt, D)
        h = self.decoder(y, memory, tgt_mask=tgt_mask, memory_mask=memory_mask)  # (B, Lt, D)
        tied = self.tgt_embed.weight if self.config.tie_weights else None
        return _project(self.generator, h, tied)  # (B, Lt, V_tgt)


class EncoderClassifier(nn.Module):
    """tokens (B, L) -> out (B, n_outputs): class logits, or a regression value when n_outputs == 1."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = TokenInput(config)
        self.embed = Embedding(config.src_vocab_size, config.d_model, embedding_scale(config))
        self.encoder = Encoder(config)
        self.head = Linear(config.d_model, config.n_outputs, bias=config.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_classifier_tokens(tokens.cpu(), self.config)
        keep = tokens != self.config.pad_id  # (B, L)
        counts = keep.sum(dim=1)  # (B,), >= 1
        h = self.encoder(self.inputs(tokens, self.embed), src_mask=keep[:, None, None, :])  # (B, L, D)
        weights = keep.to(h.dtype) / counts[:, None].to(h.dtype)  # (B, L): m_bl / n_b
        pooled = (weights[:, :, None] * h).sum(dim=1)  # (B, D)
        return self.head(pooled)  # (B, n_outputs)


class DecoderLM(nn.Module):
    """tokens (B, L) -> next-token logits (B, L, V_tgt) under a causal mask."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = TokenInput(config)
        self.embed = Embedding(config.tgt_vocab_size, config.d_model, embedding_scale(config))
        self.decoder = CausalDecoder(config)
        V, D = config.tgt_vocab_size, config.d_model
        self.lm_head = TiedProjection(V, config.bias) if config.tie_weights else Linear(D, V, bias=config.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_tokens("tokens", tokens.cpu(), self.config.tgt_vocab_size, self.config.max_len)
        h = self.decoder(self.inputs(tokens, self.embed))  # (B, L, D)
        tied = self.embed.weight if self.config.tie_weights else None
        return _project(self.lm_head, h, tied)  # (B, L, V_tgt)
