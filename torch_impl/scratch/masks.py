"""Keep-masks (``True`` = may attend) of the FlashAttention interface; mirrors ``reference/masks.py``.

Sliding window ``(left, right)`` (``-1`` unbounded), bottom-right aligned: query ``i`` sees key ``j`` iff
``a_i - left <= j <= a_i + right`` with the anchor ``a_i = i + Lk - Lq``; ``causal`` is ``right = 0``.
Packed sequences: a query sees only keys of its own sequence, and the anchor of packed query ``i`` of
sequence ``n`` is ``i + cu_seqlens_k[n+1] - cu_seqlens_q[n+1]`` (the two sequences' ends aligned).
The definitions and pictures are in the reference's docstring.
"""

from __future__ import annotations

import torch

from reference.validate import check_cu_seqlens_pair, check_window_size
from torch_impl.validate import checked_cu_seqlens


def effective_window(causal: bool, window_size: tuple[int, int]) -> tuple[int, int]:
    """(left, right) after ``causal``, which sets ``right = 0`` (as FlashAttention does); -1 = unbounded."""
    left, right = check_window_size(window_size)
    return (left, 0) if causal else (left, right)


def band_keep(anchors: torch.Tensor, cols: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Keep-mask (R, C): key ``cols[c]`` visible to the row anchored at ``anchors[r]`` iff
    ``anchor - left <= col <= anchor + right`` (a bound of -1 is unbounded)."""
    offset = cols[None, :] - anchors[:, None]  # (R, C): j - a_i
    keep = torch.ones(offset.shape, dtype=torch.bool, device=offset.device)  # (R, C)
    if left >= 0:
        keep &= offset >= -left
    if right >= 0:
        keep &= offset <= right
    return keep


def window_mask(Lq: int, Lk: int, left: int, right: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Keep-mask (Lq, Lk) of the sliding window ``(left, right)``, bottom-right aligned; -1 = unbounded."""
    for name, n in (("Lq", Lq), ("Lk", Lk)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {n!r}")
    left, right = check_window_size((left, right))
    anchors = torch.arange(Lq, device=device) + (Lk - Lq)  # (Lq,)
    return band_keep(anchors, torch.arange(Lk, device=device), left, right)  # (Lq, Lk)


def sequence_ids(cu_seqlens: torch.Tensor) -> torch.Tensor:
    """(total,) the sequence index of each packed row; an empty sequence owns no row."""
    lengths = cu_seqlens.diff()  # (N,)
    return torch.repeat_interleave(torch.arange(len(lengths), device=cu_seqlens.device), lengths)  # (total,)


def varlen_anchors(cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor) -> torch.Tensor:
    """(total_q,) the packed key index aligned with each packed query (the sequences' ends aligned)."""
    seq = sequence_ids(cu_seqlens_q)  # (total_q,)
    return torch.arange(len(seq), device=seq.device) + (cu_seqlens_k[1:] - cu_seqlens_q[1:])[seq]  # (total_q,)


def document_mask(cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor) -> torch.Tensor:
    """Keep-mask (total_q, total_k): True iff query and key belong to the same packed sequence."""
    cu_q = checked_cu_seqlens("cu_seqlens_q", cu_seqlens_q)
    cu_k = checked_cu_seqlens("cu_seqlens_k", cu_seqlens_k)
    check_cu_seqlens_pair(len(cu_q), len(cu_k))
    return sequence_ids(cu_q)[:, None] == sequence_ids(cu_k)[None, :]  # (total_q, total_k)


def varlen_mask(
    cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, *, causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
) -> torch.Tensor:
    """Keep-mask (total_q, total_k) of packed sequences: the document mask, and inside each sequence the
    causal/window band aligned bottom-right with that sequence's own Lq, Lk."""
    left, right = effective_window(causal, window_size)
    same_sequence = document_mask(cu_seqlens_q, cu_seqlens_k)  # (total_q, total_k)
    anchors = varlen_anchors(cu_seqlens_q.to(torch.int64), cu_seqlens_k.to(torch.int64))  # (total_q,)
    cols = torch.arange(same_sequence.shape[1], device=same_sequence.device)  # (total_k,)
    return same_sequence & band_keep(anchors, cols, left, right)  # (total_q, total_k)
