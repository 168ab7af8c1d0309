"""Built-in kernels with FlashAttention's own signatures, for ``triad verify --interface flash|varlen``.

``flash``: ``fn(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
alibi_slopes=None, deterministic=False, return_attn_probs=False)`` with q ``(B, Lq, H, d)``, k/v
``(B, Lk, Hkv, d)``; ``varlen`` adds ``cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k`` after v,
with q ``(total_q, H, d)``; ``kvcache``: ``flash_attn_with_kvcache``'s ``fn(q, k_cache, v_cache, k=None, v=None,
cache_seqlens=None, block_table=None, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
alibi_slopes=None, return_softmax_lse=False)`` (``kvcache_attention``: append, gather, attend varlen).
Each returns ``out``, or ``(out, lse)`` when ``return_attn_probs=True`` (``return_softmax_lse``) (the
LSE natural-log, ``(B, H, Lq)`` or ``(H, total_q)``). Dropout is declined (``NotImplementedError``).

The built-ins are ``torch_impl.kernels.FLASH_KERNELS`` (``reference``: the NumPy maths behind a
``torch.autograd.Function``, CPU, float32/float64; ``scratch``, ``native``, ``flex``) with these signatures.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch

from torch_impl.kernels import FLASH_KERNELS

INTERFACES = ("sdpa", "flash", "varlen", "kvcache")
FlashFn = Callable[..., Any]


def _finish(out: torch.Tensor, lse: torch.Tensor, return_attn_probs: bool) -> Any:
    return (out, lse.detach()) if return_attn_probs else out


def _flash_signature(dense: FlashFn, name: str) -> FlashFn:
    """``dense(q, k, v, **options) -> (out, lse)`` as a kernel with ``flash_attn_func``'s signature."""
    def kernel(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),  # type: ignore
               softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
        if dropout_p > 0.0:
            raise NotImplementedError(f"{name}: dropout is not implemented for the flash interface")
        out, lse = dense(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                         softcap=softcap, alibi_slopes=alibi_slopes)
        return _finish(out, lse, return_attn_probs)

    kernel.__name__ = kernel.__qualname__ = f"{name}_flash_attn_func"
    kernel.__doc__ = f"{name} with flash_attn_func's signature."
    return kernel


def _varlen_signature(varlen: FlashFn, name: str) -> FlashFn:
    """``varlen(q, k, v, cu_q, cu_k, max_q, max_k, **options)`` with ``flash_attn_varlen_func``'s signature."""
    def kernel(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,  # type: ignore
               softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
               deterministic=False, return_attn_probs=False):
        if dropout_p > 0.0:
            raise NotImplementedError(f"{name}: dropout is not implemented for the varlen interface")
        out, lse = varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                          softmax_scale=softmax_scale, causal=causal, window_size=window_size, softcap=softcap,
                          alibi_slopes=alibi_slopes)
        return _finish(out, lse, return_attn_probs)

    kernel.__name__ = kernel.__qualname__ = f"{name}_flash_attn_varlen_func"
    kernel.__doc__ = f"{name} with flash_attn_varlen_func's signature."
    return kernel


def _check_cache(q: torch.Tensor, k_cache: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor | None,
                 cache_seqlens: torch.Tensor, block_table: torch.Tensor | None) -> None:
    """ValueError naming the argument whose shape does not fit the others."""
    B = q.shape[0]
    if q.dim() != 4 or k_cache.dim() != 4:
        raise ValueError(f"q, k_cache: expected (B, Lq, H, d) and a 4-d cache, got {tuple(q.shape)}, "
                         f"{tuple(k_cache.shape)}")
    if (k is None) != (v is None) or (k is not None and (k.dim() != 4 or k.shape[0] != B)):
        raise ValueError(f"k, v: expected both None or both (B={B}, Lnew, Hkv, d), got "
                         f"{None if k is None else tuple(k.shape)}, {None if v is None else tuple(v.shape)}")
    if tuple(cache_seqlens.shape) != (B,):
        raise ValueError(f"cache_seqlens: expected shape ({B},), got {tuple(cache_seqlens.shape)}")
    rows = k_cache.shape[1] * (1 if block_table is None else block_table.shape[1])
    if block_table is not None and (block_table.dim() != 2 or block_table.shape[0] != B):
        raise ValueError(f"block_table: expected (B={B}, max_blocks), got {tuple(block_table.shape)}")
    needed = int(cache_seqlens.max()) + (0 if k is None else k.shape[1]) if B else 0
    if needed > rows:
        raise ValueError(f"cache_seqlens: the longest element needs {needed} slots, the cache has {rows}")


def cache_slots(cache_shape: tuple[int, ...], block_table: torch.Tensor | None, b: int,
                positions: torch.Tensor) -> torch.Tensor:
    """Rows of the flattened cache ``(slots, Hkv, d)`` holding element ``b``'s logical ``positions``: row
    ``b * Lcache + p`` of a contiguous cache, ``block_table[b, p // page_size] * page_size + p % page_size`` of a
    paged one."""
    rows_per_page = cache_shape[1]
    if block_table is None:
        return b * rows_per_page + positions
    return block_table[b].long()[positions // rows_per_page] * rows_per_page + positions % rows_per_page


def kvcache_attention(varlen: FlashFn, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                      k: torch.Tensor | None, v: torch.Tensor | None, cache_seqlens: torch.Tensor,
                      block_table: torch.Tensor | None, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``k``/``v`` into the caches in place at ``cache_seqlens[b] ...``, gather element b's
    ``Lk_b = cache_seqlens[b] + Lnew`` keys and attend them as sequence b of a varlen batch.

    q (B, Lq, H, d) -> out (B, Lq, H, dv), lse (B, H, Lq); only q carries a gradient (the cache is written
    in place, as FlashAttention does, and its kvcache function has no backward at all).
    """
    B, Lq, H, _ = q.shape
    new = 0 if k is None else k.shape[1]
    lengths = [int(n) + new for n in cache_seqlens.tolist()]
    k_rows, v_rows = k_cache.view(-1, *k_cache.shape[2:]), v_cache.view(-1, *v_cache.shape[2:])  # (slots, Hkv, .)
    for b in range(B if new else 0):
        slots = cache_slots(k_cache.shape, block_table, b, lengths[b] - new + torch.arange(new)).to(k_cache.device)
        with torch.no_grad():
            k_rows[slots], v_rows[slots] = k[b], v[b]  # type: ignore[index]  # (Lnew, Hkv, .)
    gathered = [cache_slots(k_cache.shape, block_table, b, torch.arange(n)).to(k_cache.device)
                for b, n in enumerate(lengths)]  # (Lk_b,) each
    keys, values = k_rows[torch.cat(gathered)], v_rows[torch.cat(gathered)]  # (sum Lk_b, Hkv, .)
    cu_k = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=q.device)  # (B+1,)
    cu_q = torch.arange(0, (B + 1) * Lq, Lq, dtype=torch.int32, device=q.device)  # (B+1,)
    out, lse = varlen(q.reshape(B * Lq, H, q.shape[-1]), keys, values, cu_q, cu_k, Lq, max(lengths, default=0),
                      **options)  # (B Lq, H, dv), (H, B Lq)
    return out.reshape(B, Lq, H, out.shape[-1]), lse.reshape(H, B, Lq).transpose(0, 1)


def _kvcache_signature(varlen: FlashFn, name: str) -> FlashFn:
    """``varlen`` behind ``flash_attn_with_kvcache``'s signature (``kvcache_attention``)."""
    def kernel(q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, block_table=None,  # type: ignore
               softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
               return_softmax_lse=False):
        if cache_seqlens is None:  # FlashAttention's default: every element's cache is full
            if k is not None:
                raise ValueError("cache_seqlens: expected a tensor when k, v are appended, got None")
            capacity = k_cache.shape[1] * (1 if block_table is None else block_table.shape[1])  # pages x page size
            cache_seqlens = torch.full((q.shape[0],), capacity, dtype=torch.int32, device=q.device)
        _check_cache(q, k_cache, k, v, cache_seqlens, block_table)
        out, lse = kvcache_attention(varlen, q, k_cache, v_cache, k, v, cache_seqlens, block_table,
                                     softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                     softcap=softcap, alibi_slopes=alibi_slopes)
        return _finish(out, lse, return_softmax_lse)

    kernel.__name__ = kernel.__qualname__ = f"{name}_flash_attn_with_kvcache"
    kernel.__doc__ = f"{name} with flash_attn_with_kvcache's signature."
    return kernel


# interface -> built-in name -> kernel
FLASH_BUILTINS: dict[str, dict[str, FlashFn]] = {
    "flash": {name: _flash_signature(fk.dense, name) for name, fk in FLASH_KERNELS.items()},
    "varlen": {name: _varlen_signature(fk.varlen, name) for name, fk in FLASH_KERNELS.items()},
    "kvcache": {name: _kvcache_signature(fk.varlen, name) for name, fk in FLASH_KERNELS.items()},
}
