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
"""

from __future__ import annotations

from typing import Literal

import numpy as np

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
