"""Kernels of ``flash_attn_with_kvcache``'s interface: correct ones in several styles, and planted bugs to catch.

Every kernel appends the new k/v into the cache in place, then reads each element's keys through the cache's
layout (a contiguous cache is a table of one page per element) and attends them with one sequence's attention
of ``planted_flash_kernels`` (``scores``, ``dense_softmax``, ``online_softmax``) in one of two styles: ``loop``
(per element, the whole score matrix at once) or ``pages`` (the online softmax page by page: one key block per
page of the table). A planted kernel swaps exactly one step for a realistic wrong version; ``PLANTED_KVCACHE``
maps its name to (kernel, the diagnosis key of ``KVCACHE_DIAGNOSES`` or ``DIAGNOSES`` it must get, "" when no
named pattern fits). Every kernel is importable as ``equivalence_tests.planted_kvcache_kernels:NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from equivalence_tests.planted_flash_kernels import _options, dense_softmax, online_softmax, scores
from torch_impl.flash_kernels import cache_slots
from triad.verify.support import KernelSupport


def _table(k_cache: torch.Tensor, block_table: torch.Tensor | None, B: int, bug: str) -> torch.Tensor | None:
    """The block table the kernel reads through (None: contiguous)."""
    if block_table is None:
        return None
    if bug == "ignore_table" or (bug == "ignore_table_at_256" and k_cache.shape[1] == 256):
        return torch.arange(block_table.numel(), dtype=torch.int32).reshape(block_table.shape)
    return block_table


def _append(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor | None,
            cache_seqlens: torch.Tensor, table: torch.Tensor | None, bug: str) -> None:
    """Write the new k/v at cache_seqlens[b] ... in place."""
    if k is None or v is None or bug == "no_cache_update":
        return
    k_rows, v_rows = k_cache.view(-1, *k_cache.shape[2:]), v_cache.view(-1, *v_cache.shape[2:])  # (slots, Hkv, .)
    offset = 1 if bug == "append_plus_one" else 0
    with torch.no_grad():
        for b in range(k.shape[0]):
            positions = int(cache_seqlens[b]) + offset + torch.arange(k.shape[1])  # (Lnew,)
            slots = cache_slots(k_cache.shape, table, b, positions)
            k_rows[slots], v_rows[slots] = k[b], v[b]
        if bug == "clears_stale_slots" and table is None:  # "tidies" the cache past the new length
            for b in range(k.shape[0]):
                k_cache[b, int(cache_seqlens[b]) + k.shape[1]:] = 0.0


def _read_length(n_cached: int, Lnew: int, capacity: int, page: int, bug: str) -> int:
    """Keys element b reads."""
    length = n_cached + Lnew
    if bug == "ignore_seqlens":
        return capacity
    if bug in ("new_not_attended", "no_cache_update"):  # the latter attends the new k/v from k, v instead
        return n_cached
    if bug == "last_full_page_dropped" and page and length % page == 0:  # the tail count L % page is 0
        return length - page
    return length


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, options: Any, style: str, page: int,
            bug: str) -> tuple[torch.Tensor, torch.Tensor]:
    """q (Lq, H, d), keys/values (Lk, Hkv, .) -> out (Lq, H, dv), lse (H, Lq), bottom-right aligned."""
    Lq, H, Lk = q.shape[0], q.shape[1], keys.shape[0]
    if Lk == 0:
        return q.new_zeros((Lq, H, values.shape[-1])) * q.sum(), q.new_full((H, Lq), float("-inf"))
    anchors = torch.arange(Lq) + (0 if bug == "top_left" else Lk - Lq)  # (Lq,)
    s = scores(q, keys, options, anchors, "")  # (H, Lq, Lk)
    vh = values.transpose(0, 1)[torch.arange(H) // (H // values.shape[1])]  # (H, Lk, dv)
    out, lse = online_softmax(s, vh, page, "") if style == "pages" else dense_softmax(s, vh, "")
    return out.transpose(0, 1), lse  # (Lq, H, dv), (H, Lq)


def kvcache_kernel(name: str, style: str, bug: str = "") -> Callable[..., Any]:
    """A ``flash_attn_with_kvcache``: append, then per element gather its keys and attend them."""
    def kernel(q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, block_table=None,  # type: ignore
               softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
               return_softmax_lse=False):
        options = _options(q, softmax_scale, causal, window_size, softcap, alibi_slopes, "")
        table = _table(k_cache, block_table, q.shape[0], bug)
        _append(k_cache, v_cache, k, v, cache_seqlens, table, bug)
        page = k_cache.shape[1] if block_table is not None else 16  # a contiguous cache: blocks of 16
        capacity = k_cache.shape[1] * (1 if table is None else table.shape[1])
        k_rows, v_rows = k_cache.view(-1, *k_cache.shape[2:]), v_cache.view(-1, *v_cache.shape[2:])
        parts = []
        for b in range(q.shape[0]):
            n = _read_length(int(cache_seqlens[b]), 0 if k is None else k.shape[1], capacity,
                             k_cache.shape[1] if block_table is not None else 0, bug)
            slots = cache_slots(k_cache.shape, table, b, torch.arange(n))  # (n,)
            keys, values = k_rows[slots], v_rows[slots]  # (n, Hkv, .)
            if bug == "no_cache_update" and k is not None:
                keys, values = torch.cat([keys, k[b]]), torch.cat([values, v[b]])  # (n + Lnew, Hkv, .)
            parts.append(_attend(q[b], keys, values, options, style, page, bug))
        out = torch.stack([p[0] for p in parts]).to(q.dtype)  # (B, Lq, H, dv)
        lse = torch.stack([p[1] for p in parts]).float().detach()  # (B, H, Lq)
        return (out, lse) if return_softmax_lse else out

    kernel.__name__ = kernel.__qualname__ = name
    return kernel


CORRECT_KVCACHE: dict[str, Callable[..., Any]] = {
    "kvcache_loop_contiguous": kvcache_kernel("kvcache_loop_contiguous", "loop"),
    "kvcache_online_pages": kvcache_kernel("kvcache_online_pages", "pages"),
}
CORRECT_KVCACHE["kvcache_loop_contiguous"].triad_support = KernelSupport(page_sizes=())  # type: ignore[attr-defined]

# name -> (style, bug, expected diagnosis key)
_PLANTED_SPECS: dict[str, tuple[str, str, str]] = {
    "kvcache_ignore_seqlens": ("loop", "ignore_seqlens", "past_length"),
    "kvcache_ignore_table": ("loop", "ignore_table", "table_ignored"),
    "kvcache_ignore_table_at_256": ("pages", "ignore_table_at_256", "table_ignored"),
    "kvcache_append_plus_one": ("loop", "append_plus_one", "append_position"),
    "kvcache_new_not_attended": ("pages", "new_not_attended", "append_position"),
    "kvcache_top_left": ("loop", "top_left", "top_left"),
    "kvcache_last_full_page_dropped": ("pages", "last_full_page_dropped", ""),
    "kvcache_no_cache_update": ("loop", "no_cache_update", ""),
    "kvcache_clears_stale_slots": ("loop", "clears_stale_slots", ""),
}

PLANTED_KVCACHE: dict[str, tuple[Callable[..., Any], str]] = {
    name: (kvcache_kernel(name, style, bug), diagnosis) for name, (style, bug, diagnosis) in _PLANTED_SPECS.items()
}
PLANTED_KVCACHE["kvcache_ignore_table_at_256"][0].triad_support = KernelSupport(page_sizes=(256,))  # type: ignore
PLANTED_KVCACHE["kvcache_last_full_page_dropped"][0].triad_support = KernelSupport(page_sizes=(16, 256))  # type: ignore
globals().update(CORRECT_KVCACHE)
globals().update({name: kernel for name, (kernel, _) in PLANTED_KVCACHE.items()})
