"""Score modifiers from tensor ops: softcap, ALiBi, GQA's K/V broadcast; mirrors ``reference/score_mods.py``.

Autograd provides the backward (softcap's ``1 - tanh^2``, the group sum of the repeat). The equations,
and the order softcap -> bias -> masks, are written down in the reference's docstring.
"""

from __future__ import annotations

import torch


def softcap(scores: torch.Tensor, cap: float) -> torch.Tensor:
    """scores (...) -> cap * tanh(scores / cap) (...); cap 0 = off (returned unchanged)."""
    if cap == 0.0:
        return scores
    return cap * torch.tanh(scores / cap)  # (...)


def alibi_row_bias(row_slopes: torch.Tensor, anchors: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """-slope_r * |anchor_r - col_c|: row_slopes (..., R), anchors (R,), cols (C,) -> (..., R, C)."""
    distance = (anchors[:, None] - cols[None, :]).abs().to(row_slopes.dtype)  # (R, C)
    return -row_slopes[..., None] * distance  # (..., R, C)


def alibi_bias(alibi_slopes: torch.Tensor, Lq: int, Lk: int) -> torch.Tensor:
    """Additive bias -slope_h * |i + Lk - Lq - j|: slopes (H,) or (B, H) -> (1 or B, H, Lq, Lk).

    The slopes are constants (no gradient reaches them, as in FlashAttention).
    """
    slopes = alibi_slopes.detach().reshape(-1, alibi_slopes.shape[-1])  # (1 or B, H)
    anchors = torch.arange(Lq, device=slopes.device) + (Lk - Lq)  # (Lq,)
    row_slopes = slopes[:, :, None].expand(*slopes.shape, Lq)  # (1 or B, H, Lq)
    return alibi_row_bias(row_slopes, anchors, torch.arange(Lk, device=slopes.device))  # (1 or B, H, Lq, Lk)


def repeat_kv(x: torch.Tensor, n_rep: int, dim: int) -> torch.Tensor:
    """Repeat each K/V head ``n_rep`` times along ``dim`` (Hkv -> Hkv * n_rep), interleaved: h -> h // n_rep.

    Autograd's backward is the group sum ``dK_g = sum over h // n_rep = g of dK_h``.
    """
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=dim)  # (..., Hkv * n_rep, ...)
