"""FlashAttention's interface on PyTorch's own kernels: ``F.scaled_dot_product_attention`` and FlexAttention.

- **GQA**: SDPA's ``enable_gqa=True`` (torch >= 2.5; refused with ``NotImplementedError`` before).
- **causal, sliding window, packed sequences**: materialised as one SDPA boolean keep-mask by
  ``torch.nn.attention.flex_attention.create_mask`` from the ``mask_mod`` of
  ``torch_impl.native.flex_attention`` (one definition of each mask for both native paths).
- **ALiBi**: an additive SDPA mask, the same module's ``score_mod`` evaluated on a zero score over the
  (b, h, i, j) grid (``create_mask`` would turn a ``score_mod`` into a boolean mask, not its values).
- **softcap**: SDPA has no score modification, so the whole call goes to FlexAttention
  (``flex_flash_attention``): on CPU forward only (see ``torch_impl/native/flex_attention.py``).
- **LSE**: SDPA does not return it. It comes from FlexAttention's ``return_aux=AuxRequest(lse=True)``
  (PyTorch's own log-sum-exp, natural log, ``-inf`` on an empty row) run on the detached inputs with
  the same mods: an output, not differentiated (as in FlashAttention). Nothing here recomputes it.

The layout converts at the edge: FlashAttention's ``(B, L, H, d)`` to SDPA's ``(B, H, L, d)`` and back;
varlen packs into one batch row ``(1, H, total, d)`` whose mask is block-diagonal by sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_mask

from torch_impl.native.attention import SDPA_HAS_GQA
from torch_impl.native.flex_attention import (
    ScoreLayout,
    band_mask_mod,
    dense_layout,
    empty_result,
    flex_flash_attention,
    flex_flash_attention_varlen,
    run_flex,
    softcap_alibi_score_mod,
    varlen_layout,
)
from torch_impl.validate import check_dense_scores_fit, check_flash_call

# From this many scores per (batch, head) on (2048^2) the CPU path is SDPA's flash kernel with its own LSE (O(L)
# memory), where it applies; below it, one definition for every case (masks as SDPA masks, the LSE from Flex).
CPU_FLASH_MIN_SCORES = 2**22


def sdpa_mask(layout: ScoreLayout, B: int, H: int, Lq: int, Lk: int, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor | None:
    """The layout as an SDPA mask: boolean keep-mask (1, 1, Lq, Lk), or additive (B, H, Lq, Lk) with ALiBi."""
    keep = create_mask(band_mask_mod(layout), None, None, Lq, Lk, device=device) if layout.has_mask else None
    if layout.slopes is None:
        return keep  # (1, 1, Lq, Lk) or None
    b, h, i, j = (torch.arange(n, device=device).reshape([n if a == axis else 1 for a in range(4)])
                  for axis, n in enumerate((B, H, Lq, Lk)))  # (B,1,1,1), (1,H,1,1), (1,1,Lq,1), (1,1,1,Lk)
    bias = softcap_alibi_score_mod(layout)(torch.zeros((), dtype=dtype, device=device), b, h, i, j)
    bias = bias.expand(B, H, Lq, Lk)  # (B, H, Lq, Lk): -slope |anchor_i - j|
    return bias if keep is None else bias.masked_fill(~keep, float("-inf"))  # (B, H, Lq, Lk)


def sdpa_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: ScoreLayout,
                  scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, H, Lq, d), k/v (B, Hkv, Lk, d|dv) -> (out (B, H, Lq, dv) from SDPA, lse (B, H, Lq) from Flex)."""
    B, H, Lq, Lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    if (empty := empty_result(q, v)) is not None:
        return empty
    gqa = k.shape[1] != H
    if gqa and not SDPA_HAS_GQA:
        raise NotImplementedError(f"GQA: F.scaled_dot_product_attention has enable_gqa from torch 2.5, "
                                  f"this is torch {torch.__version__}")
    attn_mask = sdpa_mask(layout, B, H, Lq, Lk, q.dtype, q.device)  # (1 or B, 1 or H, Lq, Lk) or None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask, scale=scale, **({"enable_gqa": True} if gqa else {}))
    _, lse = run_flex(q.detach(), k.detach(), v.detach(), layout, scale)  # (B, H, Lq)
    return out, lse  # (B, H, Lq, dv), (B, H, Lq)


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, softmax_scale: float | None = None,
    causal: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, Lq, H, d), k (B, Lk, Hkv, d), v (B, Lk, Hkv, dv) -> (out (B, Lq, H, dv), lse (B, H, Lq))."""
    _, cap, window = check_flash_call(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                      softcap=softcap, alibi_slopes=alibi_slopes)  # causal: right 0
    if cap > 0.0:  # a score_mod: FlexAttention only
        return flex_flash_attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                    softcap=cap, alibi_slopes=alibi_slopes)
    if _cpu_flash_applies(q, k, v, window, alibi_slopes):
        return cpu_flash_attention(q, k, v, window == (-1, 0), softmax_scale)
    layout = dense_layout(q.shape[1], k.shape[1], q.shape[0], window, cap, alibi_slopes,
                          q.device, q.dtype)
    check_dense_scores_fit("native (mask or ALiBi as an SDPA mask, FlexAttention's LSE)", q.shape[0], q.shape[2],
                           q.shape[1], k.shape[1])
    out, lse = sdpa_with_lse(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout, softmax_scale)
    return out.transpose(1, 2), lse  # (B, Lq, H, dv), (B, H, Lq)


def _cpu_flash_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: tuple[int, int],
                       alibi_slopes: torch.Tensor | None) -> bool:
    """Long, on the CPU, and nothing SDPA's flash kernel cannot say by itself: no window, or causal with
    Lq = Lk (where top-left and bottom-right agree); no ALiBi; d = dv."""
    plain = window == (-1, -1) or (window == (-1, 0) and q.shape[1] == k.shape[1])
    return (q.device.type == "cpu" and plain and alibi_slopes is None and q.shape[-1] == v.shape[-1]
            and q.shape[1] * k.shape[1] >= CPU_FLASH_MIN_SCORES)


def cpu_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                        scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, Lq, H, d), k/v (B, Lk, Hkv, d) -> (out (B, Lq, H, d), lse (B, H, Lq)) from SDPA's CPU flash kernel,
    which returns both and keeps O(L) memory (``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu``:
    what ``F.scaled_dot_product_attention`` calls there, with its backward; its LSE is float32 for half inputs)."""
    n_rep = q.shape[2] // k.shape[2]
    k_heads, v_heads = (x.transpose(1, 2).repeat_interleave(n_rep, dim=1) for x in (k, v))  # (B, H, Lk, d)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q.transpose(1, 2), k_heads, v_heads, 0.0, causal, scale=scale)  # (B, H, Lq, d), (B, H, Lq)
    return out.transpose(1, 2), lse.detach()  # (B, Lq, H, d), (B, H, Lq)


def flash_attention_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, *, softmax_scale: float | None = None,
    causal: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (total_q, H, d), k (total_k, Hkv, d), v (total_k, Hkv, dv), cu_seqlens_q/k (N+1,) int
    -> (out (total_q, H, dv), lse (H, total_q))."""
    _, cap, window = check_flash_call(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                      softcap=softcap, alibi_slopes=alibi_slopes,
                                      cu_seqlens=(cu_seqlens_q, cu_seqlens_k),
                                      max_seqlens=(max_seqlen_q, max_seqlen_k))  # causal: right 0
    if cap > 0.0:
        return flex_flash_attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale=softmax_scale,
                                           causal=causal, window_size=window_size, softcap=cap,
                                           alibi_slopes=alibi_slopes)
    cu_q64, cu_k64 = (cu.to(device=q.device, dtype=torch.int64) for cu in (cu_seqlens_q, cu_seqlens_k))
    layout = varlen_layout(cu_q64, cu_k64, window, cap, alibi_slopes, q.dtype)
    out, lse = sdpa_with_lse(*(x.transpose(0, 1)[None] for x in (q, k, v)), layout, softmax_scale)
    return out[0].transpose(0, 1), lse[0]  # (total_q, H, dv), (H, total_q)
