"""Attention masks, one convention: a boolean **keep-mask**, ``True`` = may attend.

A keep-mask broadcasts to the scores ``(B, H, Lq, Lk)``; it is the convention of
``F.scaled_dot_product_attention``. ``nn.Transformer`` uses the opposite one
(``True`` = blocked); ``torch_impl.native`` converts at its edge and nowhere else.

Float masks are *additive*: they are added to the scaled scores, ``-inf`` blocks.

Causal alignment when ``Lq != Lk`` (query i, key j):

- ``top_left``     keep ``j <= i``            (``is_causal=True`` in PyTorch's SDPA)
- ``bottom_right`` keep ``j <= i + Lk - Lq``  (FlashAttention; the last query sees every key,
  which is what decoding with a key/value cache needs)

With ``bottom_right`` and ``Lq > Lk`` the first ``Lq - Lk`` query rows see no key at all;
such fully masked rows have output 0 and gradient 0 (see ``attention.py``).

**Sliding window** (FlashAttention's ``window_size = (left, right)``, ``-1`` = unbounded), bottom-right
aligned like its causal mask: query ``i`` sees key ``j`` iff

    i + Lk - Lq - left  <=  j  <=  i + Lk - Lq + right

``causal`` is the window ``(left, 0)``. The *anchor* ``a_i = i + Lk - Lq`` is the key aligned with query
``i``; every builder below is the band ``a_i - left <= j <= a_i + right`` over some anchors.

**Packed sequences** (varlen): ``cu_seqlens_q``, ``cu_seqlens_k`` ``(N+1,)`` hold the offsets of N
sequences in the packed rows; sequence ``n`` is rows ``cu[n]:cu[n+1]``. A query attends only to keys of
its own sequence (``document_mask``), and the band is aligned per sequence: the anchor of packed query
``i`` of sequence ``n`` is the packed key index ``i + cu_seqlens_k[n+1] - cu_seqlens_q[n+1]`` (the two
sequences' ends aligned).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from reference.validate import check_cu_seqlens, check_cu_seqlens_pair, check_window_size

CausalAlign = Literal["top_left", "bottom_right"]


def causal_mask(Lq: int, Lk: int, align: CausalAlign = "top_left") -> np.ndarray:
    """Keep-mask (Lq, Lk): query i may attend key j iff j <= i (+ Lk - Lq for bottom_right)."""
    for name, n in (("Lq", Lq), ("Lk", Lk)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {n!r}")
    if align == "top_left":
        offset = 0
    elif align == "bottom_right":
        offset = Lk - Lq
    else:
        raise ValueError(f"align: expected 'top_left' or 'bottom_right', got {align!r}")
    i = np.arange(Lq)[:, None]  # (Lq, 1)
    j = np.arange(Lk)[None, :]  # (1, Lk)
    return j <= i + offset  # (Lq, Lk)


def padding_mask(tokens: np.ndarray, pad_id: int) -> np.ndarray:
    """Keep-mask (B, 1, 1, L) from token ids (B, L): ``True`` where the *key* is a real token.

    The common tutorial bug returns ``tokens == pad_id`` (True at pads) and then blocks
    with ``mask == 0``, which blocks every real token instead. Here True means keep.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"tokens: expected integer token ids of shape (B, L), got dtype {tokens.dtype} shape {tokens.shape}"
        )
    return (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, L)


def to_additive(keep: np.ndarray, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Keep-mask -> additive float mask: 0 where kept, -inf where blocked.

    ``-inf`` (not ``-1e9``): ``-1e9`` overflows to ``-inf`` in fp16 anyway and, worse, in
    fp32 leaves a fully masked row as a uniform average instead of the defined 0.
    """
    keep = np.asarray(keep)
    if keep.dtype != np.bool_:
        raise TypeError(f"keep: expected a boolean keep-mask, got dtype {keep.dtype}")
    return np.where(keep, 0.0, -np.inf).astype(dtype)


def effective_window(causal: bool, window_size: tuple[int, int]) -> tuple[int, int]:
    """(left, right) after ``causal``, which sets ``right = 0`` (as FlashAttention does); -1 = unbounded."""
    left, right = check_window_size(window_size)
    return (left, 0) if causal else (left, right)


def band_keep(anchors: np.ndarray, cols: np.ndarray, left: int, right: int) -> np.ndarray:
    """Keep-mask (R, C): key ``cols[c]`` visible to the row anchored at ``anchors[r]`` iff
    ``anchor - left <= col <= anchor + right`` (a bound of -1 is unbounded)."""
    offset = cols[None, :] - anchors[:, None]  # (R, C): j - a_i
    keep = np.ones(offset.shape, dtype=bool)  # (R, C)
    if left >= 0:
        keep &= offset >= -left
    if right >= 0:
        keep &= offset <= right
    return keep


def window_mask(Lq: int, Lk: int, left: int, right: int) -> np.ndarray:
    """Keep-mask (Lq, Lk) of the sliding window ``(left, right)``, bottom-right aligned; -1 = unbounded.

    ``window_mask(Lq, Lk, -1, 0)`` is ``causal_mask(Lq, Lk, "bottom_right")``.
    """
    causal_mask(Lq, Lk)  # validates the lengths
    left, right = check_window_size((left, right))
    anchors = np.arange(Lq) + (Lk - Lq)  # (Lq,)
    return band_keep(anchors, np.arange(Lk), left, right)  # (Lq, Lk)


def checked_cu_seqlens(name: str, cu_seqlens: np.ndarray, total: int | None = None) -> np.ndarray:
    """cu_seqlens (N+1,) of an int dtype, from 0, non-decreasing, ending at ``total`` (if given) -> int64."""
    cu = np.asarray(cu_seqlens)
    values = cu.tolist() if cu.ndim == 1 and cu.size else [None]
    check_cu_seqlens(name, str(cu.dtype), cu.shape, values, values[-1] if total is None else total)
    return cu.astype(np.int64)


def sequence_ids(cu_seqlens: np.ndarray) -> np.ndarray:
    """(total,) the sequence index of each packed row; an empty sequence owns no row."""
    lengths = np.diff(cu_seqlens)  # (N,)
    return np.repeat(np.arange(len(lengths)), lengths)  # (total,)


def varlen_anchors(cu_seqlens_q: np.ndarray, cu_seqlens_k: np.ndarray) -> np.ndarray:
    """(total_q,) the packed key index aligned with each packed query (the sequences' ends aligned)."""
    seq = sequence_ids(cu_seqlens_q)  # (total_q,)
    return np.arange(len(seq)) + (cu_seqlens_k[1:] - cu_seqlens_q[1:])[seq]  # (total_q,)


def document_mask(cu_seqlens_q: np.ndarray, cu_seqlens_k: np.ndarray) -> np.ndarray:
    """Keep-mask (total_q, total_k): True iff query and key belong to the same packed sequence."""
    cu_q = checked_cu_seqlens("cu_seqlens_q", cu_seqlens_q)
    cu_k = checked_cu_seqlens("cu_seqlens_k", cu_seqlens_k)
    check_cu_seqlens_pair(len(cu_q), len(cu_k))
    return sequence_ids(cu_q)[:, None] == sequence_ids(cu_k)[None, :]  # (total_q, total_k)


def varlen_mask(
    cu_seqlens_q: np.ndarray, cu_seqlens_k: np.ndarray, *, causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
) -> np.ndarray:
    """Keep-mask (total_q, total_k) of packed sequences: the document mask, and inside each sequence the
    causal/window band aligned bottom-right with that sequence's own Lq, Lk."""
    left, right = effective_window(causal, window_size)
    same_sequence = document_mask(cu_seqlens_q, cu_seqlens_k)  # (total_q, total_k)
    anchors = varlen_anchors(np.asarray(cu_seqlens_q, np.int64), np.asarray(cu_seqlens_k, np.int64))  # (total_q,)
    return same_sequence & band_keep(anchors, np.arange(same_sequence.shape[1]), left, right)  # (total_q, total_k)
