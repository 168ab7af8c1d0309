"""Scaled dot-product attention from plain tensor ops; mirrors ``reference/attention.py`` line for line.

Autograd provides the backward. The maths, the mask convention and the fully-masked-row
rule are written down in the reference's docstring.
"""

from __future__ import annotations

import math

import torch

from torch_impl.scratch.score_mods import repeat_kv
from torch_impl.scratch.softmax import masked_softmax
from torch_impl.validate import check_attention_inputs


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    dropout_keep: torch.Tensor | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) -> out (..., Lq, Ev), with SDPA's signature.

    ``dropout_keep`` (boolean, broadcastable to ``(..., Lq, Lk)``) fixes the dropout pattern so
    that this function can be compared with the reference; without it one is drawn from torch's RNG.
    ``enable_gqa`` (as in SDPA): k, v have ``Hkv`` heads dividing ``H``; query head h reads K/V head
    ``h // (H // Hkv)`` (autograd sums each group's gradient).
    """
    n_rep = check_attention_inputs(q, k, v, attn_mask, dropout_p, scale, enable_gqa=enable_gqa)
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask: cannot be combined with is_causal=True (as in SDPA); fold causality into the mask")
    E, Lq, Lk = q.shape[-1], q.shape[-2], k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(E)
    k = repeat_kv(k, n_rep, dim=-3)  # (B, H, Lk, E): query head h reads K/V head h // n_rep
    v = repeat_kv(v, n_rep, dim=-3)  # (B, H, Lk, Ev)

    # Scale q before the product, not the product after: in fp16 a raw q.k above 65504 is inf.
    scores = (scale * q) @ k.transpose(-1, -2)  # (B, H, Lq, Lk)
    if is_causal:
        attn_mask = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).tril()  # (Lq, Lk), top-left
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))  # (B, H, Lq, Lk)
    elif attn_mask is not None:
        scores = scores + attn_mask.to(q.dtype)  # (B, H, Lq, Lk); additive, after scaling

    probs, _ = masked_softmax(scores)  # (B, H, Lq, Lk); 0 on a fully masked row

    if dropout_p > 0.0:
        if dropout_keep is None:
            dropout_keep = torch.rand_like(probs) >= dropout_p  # (B, H, Lq, Lk)
        probs = probs * dropout_keep.to(probs.dtype) / (1.0 - dropout_p)  # (B, H, Lq, Lk)
    elif dropout_keep is not None:
        raise ValueError("dropout_keep: given, but dropout_p is 0")
    return probs @ v  # (B, H, Lq, Ev)

