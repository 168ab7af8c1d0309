"""Multi-head attention from tensor ops; mirrors ``reference/multi_head_attention.py`` line for line.

Autograd provides the backward; the maths is in the reference's docstring. Heads are split
with each tensor's own length (``Lq`` for queries, ``Lk`` for keys and values).
"""

from __future__ import annotations

import torch
from torch import nn

from reference.validate import check_heads, check_mha_inputs
from torch_impl.scratch.attention import scaled_dot_product_attention
from torch_impl.scratch.linear import Linear


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, H, L, d_head), with x's own length L."""
    B, L, D = x.shape
    return x.reshape(B, L, n_heads, D // n_heads).transpose(1, 2)  # (B, H, L, d_head)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, d_head) -> (B, L, H * d_head), the inverse of ``split_heads``."""
    B, H, L, d_head = x.shape
    return x.transpose(1, 2).reshape(B, L, H * d_head)  # (B, L, D)


class MultiHeadAttention(nn.Module):
    """x_q (B, Lq, D), x_kv (B, Lk, D) -> (B, Lq, D); parameters ``{q,k,v,out}_proj.{weight,bias}``."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_proj = Linear(d_model, d_model, bias=bias)
        self.k_proj = Linear(d_model, d_model, bias=bias)
        self.v_proj = Linear(d_model, d_model, bias=bias)
        self.out_proj = Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x_q: torch.Tensor,
        x_kv: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``attn_mask``: keep-mask or additive mask broadcastable to (B, H, Lq, Lk); ``dropout_keep``
        (B, H, Lq, Lk) fixes the attention-dropout pattern (used only in training mode)."""
        check_mha_inputs(tuple(x_q.shape), tuple(x_kv.shape), self.n_heads)
        q = split_heads(self.q_proj(x_q), self.n_heads)  # (B, H, Lq, d_head)
        k = split_heads(self.k_proj(x_kv), self.n_heads)  # (B, H, Lk, d_head)
        v = split_heads(self.v_proj(x_kv), self.n_heads)  # (B, H, Lk, d_head)
        dropout_p = self.dropout if self.training else 0.0
        out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p,
                                           dropout_keep=dropout_keep)  # (B, H, Lq, d_head)
        return self.out_proj(merge_heads(out))  # (B, Lq, D)
