"""FlashAttention's interface from tensor ops; mirrors ``reference/flash_attention.py`` (its dense path).

Autograd provides the backward. The maths (scores -> softcap -> ALiBi -> masks -> softmax -> PV, GQA's
K/V broadcast, the bottom-right alignments, the LSE) is written down in the reference's docstring.

Layouts (FlashAttention's): q ``(B, Lq, H, d)``, k/v ``(B, Lk, Hkv, d)`` -> out ``(B, Lq, H, dv)``,
lse ``(B, H, Lq)``; varlen: q ``(total_q, H, d)``, k/v ``(total_k, Hkv, d)`` -> out ``(total_q, H, dv)``,
lse ``(H, total_q)``. A query row with no visible key has output 0, gradient 0 and LSE ``-inf``
(log 0; FlashAttention 2 writes ``+inf`` there). The LSE is natural-log, in the input dtype, and
detached (as FlashAttention's: not differentiable).
"""

from __future__ import annotations

import math

import torch

from torch_impl.scratch.masks import sequence_ids, varlen_anchors, varlen_mask, window_mask
from torch_impl.scratch.score_mods import alibi_bias, alibi_row_bias, repeat_kv
from torch_impl.scratch.score_mods import softcap as apply_softcap
from torch_impl.scratch.softmax import masked_softmax
from torch_impl.validate import check_dense_scores_fit, check_flash_call


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor | None,
    scale: float, cap: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, H, Lq, d), k (B, H, Lk, d), v (B, H, Lk, dv), keep broadcastable to (B, H, Lq, Lk), bias
    likewise or None -> (out (B, H, Lq, dv), lse (B, H, Lq))."""
    scores = (scale * q) @ k.transpose(-1, -2)  # (B, H, Lq, Lk)
    scores = apply_softcap(scores, cap)  # (B, H, Lq, Lk); before the bias and the masks
    if bias is not None:
        scores = scores + bias  # (B, H, Lq, Lk)
    scores = scores.masked_fill(~keep, float("-inf"))  # (B, H, Lq, Lk)
    probs, lse = masked_softmax(scores)  # (B, H, Lq, Lk), (B, H, Lq)
    return probs @ v, lse  # (B, H, Lq, dv), (B, H, Lq)


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, softmax_scale: float | None = None,
    causal: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, Lq, H, d), k (B, Lk, Hkv, d), v (B, Lk, Hkv, dv) -> (out (B, Lq, H, dv), lse (B, H, Lq))."""
    n_rep, cap, (left, right) = check_flash_call(q, k, v, softmax_scale=softmax_scale, causal=causal,
                                                 window_size=window_size, softcap=softcap,
                                                 alibi_slopes=alibi_slopes)  # causal: right 0
    Lq, Lk, d = q.shape[1], k.shape[1], q.shape[-1]
    check_dense_scores_fit("scratch (dense)", q.shape[0], q.shape[2], Lq, Lk)
    scale = 1.0 / math.sqrt(d) if softmax_scale is None else float(softmax_scale)
    q_heads = q.transpose(1, 2)  # (B, H, Lq, d)
    k_heads = repeat_kv(k.transpose(1, 2), n_rep, dim=1)  # (B, H, Lk, d): query head h reads h // n_rep
    v_heads = repeat_kv(v.transpose(1, 2), n_rep, dim=1)  # (B, H, Lk, dv)
    keep = window_mask(Lq, Lk, left, right, device=q.device)  # (Lq, Lk)
    bias = None if alibi_slopes is None else alibi_bias(alibi_slopes.to(q.dtype), Lq, Lk)  # (1 or B, H, Lq, Lk)
    out, lse = attend(q_heads, k_heads, v_heads, keep, bias, scale, cap)  # (B, H, Lq, dv), (B, H, Lq)
    return out.transpose(1, 2), lse  # (B, Lq, H, dv), (B, H, Lq)


def varlen_alibi_bias(alibi_slopes: torch.Tensor, cu_seqlens_q: torch.Tensor,
                      cu_seqlens_k: torch.Tensor) -> torch.Tensor:
    """Packed ALiBi bias (1, H, total_q, total_k): -slope * |anchor_i - j|, each query with its sequence's
    slope when the slopes are (N, H); only the entries inside a sequence survive the document mask."""
    slopes = alibi_slopes.detach().reshape(-1, alibi_slopes.shape[-1])  # (1 or N, H)
    seq = sequence_ids(cu_seqlens_q) if slopes.shape[0] > 1 else torch.zeros(
        int(cu_seqlens_q[-1]), dtype=torch.int64, device=slopes.device)  # (total_q,)
    row_slopes = slopes[seq].T[None]  # (1, H, total_q)
    anchors = varlen_anchors(cu_seqlens_q, cu_seqlens_k)  # (total_q,)
    cols = torch.arange(int(cu_seqlens_k[-1]), device=slopes.device)  # (total_k,)
    return alibi_row_bias(row_slopes, anchors, cols)  # (1, H, total_q, total_k)


def flash_attention_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, *, softmax_scale: float | None = None,
    causal: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (total_q, H, d), k (total_k, Hkv, d), v (total_k, Hkv, dv), cu_seqlens_q/k (N+1,) int
    -> (out (total_q, H, dv), lse (H, total_q)); sequence n is rows cu[n]:cu[n+1] and sees only itself."""
    n_rep, cap, window = check_flash_call(q, k, v, softmax_scale=softmax_scale, causal=causal,
                                          window_size=window_size, softcap=softcap, alibi_slopes=alibi_slopes,
                                          cu_seqlens=(cu_seqlens_q, cu_seqlens_k),
                                          max_seqlens=(max_seqlen_q, max_seqlen_k))  # causal: right 0
    scale = 1.0 / math.sqrt(q.shape[-1]) if softmax_scale is None else float(softmax_scale)
    cu_q64, cu_k64 = (cu.to(device=q.device, dtype=torch.int64) for cu in (cu_seqlens_q, cu_seqlens_k))
    q_heads = q.transpose(0, 1)[None]  # (1, H, total_q, d)
    k_heads = repeat_kv(k.transpose(0, 1)[None], n_rep, dim=1)  # (1, H, total_k, d)
    v_heads = repeat_kv(v.transpose(0, 1)[None], n_rep, dim=1)  # (1, H, total_k, dv)
    keep = varlen_mask(cu_q64, cu_k64, window_size=window)  # (total_q, total_k)
    bias = None if alibi_slopes is None else varlen_alibi_bias(alibi_slopes.to(q.dtype), cu_q64, cu_k64)
    out, lse = attend(q_heads, k_heads, v_heads, keep, bias, scale, cap)  # (1, H, total_q, dv), (1, H, total_q)
    return out[0].transpose(0, 1), lse[0]  # (total_q, H, dv), (H, total_q)
