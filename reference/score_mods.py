r"""Score modifiers of today's attention, each a forward/backward pair: softcap, ALiBi, GQA's K/V broadcast.

They act on the scores :math:`S = s\,QK^\top` before the masks and the softmax (FlashAttention's order):
softcap first, then the ALiBi bias, then the masks, so that a masked key stays masked.

**Softcap** (Gemma 2, Grok), for :math:`c > 0`:

.. math::  \tilde S = c \tanh(S / c), \qquad
           dS = d\tilde S \circ \big(1 - \tanh^2(S / c)\big)

since :math:`\frac{d}{dS} c\tanh(S/c) = 1 - \tanh^2(S/c)`. It bends scores near :math:`\pm c` and is the
identity for :math:`|S| \ll c`; :math:`c = 0` means off (FlashAttention's convention).

**ALiBi** (Press et al. 2022), bottom-right aligned as in FlashAttention: for query :math:`i`, key
:math:`j` and head :math:`h`

.. math::  \tilde S_{hij} = S_{hij} - m_h\, |i + L_k - L_q - j|

An additive bias: its gradient with respect to :math:`S` is the identity, and the slopes :math:`m_h`
get no gradient (FlashAttention computes none). The standard slopes for :math:`H` heads are the
geometric sequence :math:`m_h = 2^{-8(h+1)/H}`; for :math:`H` not a power of two the paper's code takes
the :math:`2^{\lfloor\log_2 H\rfloor}` slopes of the power of two below and then every other slope of
the power of two above.

**GQA / MQA**: :math:`H_{kv}` divides :math:`H`, and query head :math:`h` reads K/V head
:math:`\lfloor h / r \rfloor` with :math:`r = H / H_{kv}`. Forward: repeat each K/V head :math:`r` times
(interleaved: heads :math:`0,0,\dots,1,1,\dots`). Backward: the gradient of a K/V head is the **sum**
over its group, :math:`dK_g = \sum_{h:\,\lfloor h/r\rfloor = g} dK^{\text{rep}}_h`.
"""

from __future__ import annotations

import math

import numpy as np


def softcap_forward(scores: np.ndarray, softcap: float) -> tuple[np.ndarray, np.ndarray | None]:
    """scores (...) -> capped (...) = softcap * tanh(scores / softcap); softcap 0 = off (returned unchanged).

    Returns (capped, cache) with cache = tanh(scores / softcap) (None when off).
    """
    if softcap == 0.0:
        return scores, None
    softcap = scores.dtype.type(softcap)  # keep float32 work in float32
    tanh = np.tanh(scores / softcap)  # (...)
    return softcap * tanh, tanh


def softcap_backward(dcapped: np.ndarray, cache: np.ndarray | None) -> np.ndarray:
    """dcapped (...) -> dscores (...) = dcapped * (1 - tanh^2)."""
    if cache is None:
        return dcapped
    return dcapped * (1.0 - cache * cache)  # (...)


def alibi_row_bias(row_slopes: np.ndarray, anchors: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """-slope_r * |anchor_r - col_c|: row_slopes (..., R), anchors (R,), cols (C,) -> (..., R, C)."""
    distance = np.abs(anchors[:, None] - cols[None, :]).astype(row_slopes.dtype)  # (R, C)
    return -row_slopes[..., None] * distance  # (..., R, C)


def alibi_bias(alibi_slopes: np.ndarray, Lq: int, Lk: int) -> np.ndarray:
    """Additive bias -slope_h * |i + Lk - Lq - j|: slopes (H,) or (B, H) -> (1 or B, H, Lq, Lk).

    The bias is not differentiated with respect to the slopes (as in FlashAttention).
    """
    slopes = np.asarray(alibi_slopes)
    if slopes.ndim not in (1, 2):
        raise ValueError(f"alibi_slopes: expected shape (H,) or (B, H), got {slopes.shape}")
    slopes = slopes.reshape((-1, slopes.shape[-1]))  # (1 or B, H)
    anchors = np.arange(Lq) + (Lk - Lq)  # (Lq,)
    row_slopes = np.broadcast_to(slopes[:, :, None], (*slopes.shape, Lq))  # (1 or B, H, Lq)
    return alibi_row_bias(row_slopes, anchors, np.arange(Lk))  # (1 or B, H, Lq, Lk)


def alibi_slopes_geometric(n_heads: int) -> np.ndarray:
    """(H,) float64: the ALiBi paper's slopes 2^(-8 (h+1) / H), interleaved for H not a power of two."""
    if isinstance(n_heads, bool) or not isinstance(n_heads, (int, np.integer)) or n_heads < 1:
        raise ValueError(f"n_heads: expected an int >= 1, got {n_heads!r}")
    power = 2 ** math.floor(math.log2(n_heads))  # the largest power of two <= H
    slopes = 2.0 ** (-8.0 * np.arange(1, power + 1) / power)  # (power,)
    if power == n_heads:
        return slopes
    finer = 2.0 ** (-8.0 * np.arange(1, 2 * power + 1) / (2 * power))  # (2 power,): the slopes of 2 power heads
    return np.concatenate([slopes, finer[0::2][: n_heads - power]])  # (H,)


def repeat_kv_forward(x: np.ndarray, n_rep: int, axis: int) -> np.ndarray:
    """Repeat each K/V head ``n_rep`` times along ``axis`` (Hkv -> Hkv * n_rep), interleaved: h -> h // n_rep."""
    return np.repeat(x, n_rep, axis=axis)  # (..., Hkv * n_rep, ...)


def repeat_kv_backward(dx_rep: np.ndarray, n_rep: int, axis: int) -> np.ndarray:
    """The group sum: dx (..., Hkv, ...) = sum over the n_rep copies of each K/V head in dx_rep (..., H, ...)."""
    axis = axis % dx_rep.ndim
    H = dx_rep.shape[axis]
    grouped = dx_rep.reshape((*dx_rep.shape[:axis], H // n_rep, n_rep, *dx_rep.shape[axis + 1:]))  # (.., Hkv, r, ..)
    return grouped.sum(axis=axis + 1)  # (..., Hkv, ...)
