"""Kernels of FlashAttention's interfaces: correct ones in several styles, and planted bugs ``triad verify`` must catch.

Every kernel is built from one sequence's attention (``attend``: q ``(Lq, H, d)``, k/v ``(Lk, Hkv, .)``) in
one of two styles -- ``dense`` (the whole score matrix, softmax at once) or ``online`` (the online softmax
over key blocks, FlashAttention's recurrence) -- wrapped as ``flash_attn_func`` (a loop over the batch) or
``flash_attn_varlen_func`` (a loop over the packed sequences, or the pack at once with a document mask).
A planted kernel swaps exactly one step for a realistic wrong version; ``PLANTED_FLASH`` maps its name to
(interface, kernel, the diagnosis key of ``triad.verify.diagnoses.DIAGNOSES`` it must get, or "" when no
named pattern fits, "float32" for the float32-softmax one). Every kernel is importable as
``equivalence_tests.planted_flash_kernels:NAME``, so a repro script can find it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from triad.verify.support import KernelSupport


@dataclass(frozen=True)
class Options:
    scale: float
    left: int
    right: int  # 0 under causal
    causal: bool
    softcap: float
    slopes: torch.Tensor | None  # (H,) float32


def _kv_heads(x: torch.Tensor, H: int, bug: str) -> torch.Tensor:
    """(Lk, Hkv, .) -> (H, Lk, .): query head h reads K/V head h // (H / Hkv)."""
    n_kv = x.shape[1]
    heads_q = torch.arange(H, device=x.device)  # (H,)
    index = heads_q % n_kv if bug == "gqa_modulo" else heads_q // (H // n_kv)  # (H,)
    heads = x.transpose(0, 1)[index]  # (H, Lk, .)
    if bug == "gqa_grad_first_head_only":  # the group's other heads do not send their gradient back
        first = (torch.arange(H, device=x.device) % (H // n_kv) == 0)[:, None, None]  # (H, 1, 1)
        heads = torch.where(first, heads, heads.detach())
    return heads


def _keep(anchors: torch.Tensor, Lk: int, o: Options, bug: str) -> torch.Tensor:
    """(Lq, Lk) keep-mask of the band a_i - left <= j <= a_i + right."""
    offset = torch.arange(Lk, device=anchors.device)[None, :] - anchors[:, None]  # (Lq, Lk): j - a_i
    left, right = o.left, o.right
    if bug == "window_ignored_when_causal" and o.causal:
        left = -1
    if bug == "open_right_is_lk" and right == -1 and left >= 0:  # FlashAttention 2's issue 895
        right = Lk
    keep = torch.ones_like(offset, dtype=torch.bool)
    if left >= 0:
        keep &= offset > -left if bug == "window_off_by_one" else offset >= -left
    if right >= 0:
        keep &= offset <= right
    return keep


def _bias(anchors: torch.Tensor, Lk: int, o: Options, bug: str) -> torch.Tensor | None:
    """ALiBi (H, Lq, Lk): -slope_h |a_i - j|."""
    if o.slopes is None:
        return None
    slopes = o.slopes.to(torch.float64)[:, None, None]  # (H, 1, 1)
    cols = torch.arange(Lk, device=anchors.device, dtype=torch.float64)  # (Lk,)
    if bug == "alibi_fa2" and o.causal:
        return slopes * cols[None, None, :]  # FlashAttention 2: +slope j, the same softmax under causal
    distance = (anchors.to(torch.float64)[:, None] - cols[None, :]).abs()  # (Lq, Lk)
    return slopes * distance if bug == "alibi_sign" else -slopes * distance


def scores(q: torch.Tensor, k: torch.Tensor, o: Options, anchors: torch.Tensor, bug: str,
           doc: torch.Tensor | None = None) -> torch.Tensor:
    """S (H, Lq, Lk): scale, softcap, ALiBi, band (and document) mask, -inf where hidden."""
    qh, kh = q.transpose(0, 1), _kv_heads(k, q.shape[1], bug)  # (H, Lq, d), (H, Lk, d)
    s = (o.scale * qh) @ kh.transpose(-1, -2)  # (H, Lq, Lk)
    if o.softcap and bug != "softcap_after_mask":
        capped = o.softcap * torch.tanh(s / o.softcap)
        s = s + (capped - s).detach() if bug == "softcap_no_grad" else capped  # (H, Lq, Lk)
    bias = _bias(anchors, kh.shape[1], o, bug)
    if bias is not None:
        s = s + bias.to(s.dtype)
    keep = _keep(anchors, kh.shape[1], o, bug)  # (Lq, Lk)
    keep = keep if doc is None else keep & doc
    s = s.masked_fill(~keep, -1e9 if bug == "mean_of_v" else float("-inf"))  # (H, Lq, Lk)
    if o.softcap and bug == "softcap_after_mask":
        s = o.softcap * torch.tanh(s / o.softcap)
    return s


def dense_softmax(s: torch.Tensor, v: torch.Tensor, bug: str) -> tuple[torch.Tensor, torch.Tensor]:
    """s (H, Lq, Lk), v (H, Lk, dv) -> out (H, Lq, dv), lse (H, Lq); an empty row gives 0 and -inf."""
    m = s.amax(dim=-1, keepdim=True).detach()  # (H, Lq, 1)
    if bug != "nan_rows":
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)  # (H, Lq, Lk)
    total = e.sum(dim=-1, keepdim=True)  # (H, Lq, 1)
    out = (e @ v) / (total if bug == "nan_rows" else torch.where(total > 0, total, torch.ones_like(total)))
    return out, (m + torch.log(total))[..., 0]


def online_softmax(s: torch.Tensor, v: torch.Tensor, block: int, bug: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The online softmax over key blocks of ``block``: running max m, sum l and unnormalised output acc."""
    H, Lq, Lk = s.shape
    m = torch.full((H, Lq, 1), float("-inf"), dtype=s.dtype, device=s.device)
    total = torch.zeros((H, Lq, 1), dtype=s.dtype, device=s.device)
    acc = torch.zeros((H, Lq, v.shape[-1]), dtype=s.dtype, device=s.device)
    stop = Lk - Lk % block if bug == "drop_last_key_tile" else Lk
    for j in range(0, stop, block):
        tile = s[..., j:j + block]  # (H, Lq, b)
        m_new = torch.maximum(m, tile.amax(dim=-1, keepdim=True).detach())  # (H, Lq, 1)
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        alpha = torch.exp(m - m_safe)  # (H, Lq, 1); 0 while the row has seen no key
        p = torch.exp(tile - m_safe)  # (H, Lq, b)
        total = alpha * total + p.sum(dim=-1, keepdim=True)
        acc = (acc if bug == "no_rescale" else alpha * acc) + p @ v[:, j:j + block]
        m = m_new
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    out = acc / torch.where(total > 0, total, torch.ones_like(total))  # (H, Lq, dv)
    lse = m_safe if bug == "lse_max_only" else m_safe + torch.log(total)
    return out, lse[..., 0]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: Options, style: str, bug: str,
           anchors: torch.Tensor | None = None, doc: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence (or a pack with ``doc``): q (Lq, H, d), k (Lk, Hkv, d), v (Lk, Hkv, dv)
    -> out (Lq, H, dv), lse (H, Lq)."""
    Lq, H, Lk = q.shape[0], q.shape[1], k.shape[0]
    if Lk == 0 and bug != "empty_crash":
        return q.new_zeros((Lq, H, v.shape[-1])) * q.sum(), q.new_full((H, Lq), float("-inf"))
    work = torch.float32 if bug == "float32_softmax" or q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    if style == "upcast":
        work = torch.float64 if q.dtype in (torch.float32, torch.float64) else torch.float32
    q, k, v = q.to(work), k.to(work), v.to(work)
    if anchors is None:
        anchors = torch.arange(Lq, device=q.device) + (0 if bug == "top_left" else Lk - Lq)  # (Lq,)
    s = scores(q, k, o, anchors, bug, doc)  # (H, Lq, Lk)
    vh = _kv_heads(v, H, bug)  # (H, Lk, dv)
    block = 16 if style == "online16" else 64
    out, lse = online_softmax(s, vh, block, bug) if style.startswith("online") else dense_softmax(s, vh, bug)
    if bug == "lse_base2":
        lse = lse / math.log(2.0)
    if bug == "drop_last_query_tile":
        out = out * (torch.arange(Lq, device=q.device) < Lq - Lq % 64)[None, :, None]
    return out.transpose(0, 1), lse  # (Lq, H, dv), (H, Lq)


def _options(q: torch.Tensor, softmax_scale: float | None, causal: bool, window_size: tuple[int, int],
             softcap: float, alibi_slopes: torch.Tensor | None, bug: str) -> Options:
    d = q.shape[-1]
    scale = (1.0 / d if bug == "scale_1_over_d" else 1.0 / math.sqrt(d)) if softmax_scale is None else softmax_scale
    left, right = window_size
    return Options(scale, left, 0 if causal else right, causal, softcap, alibi_slopes)


def flash_kernel(name: str, style: str, bug: str = "") -> Callable[..., Any]:
    """A ``flash_attn_func``: a loop over the batch of ``attend``."""
    def kernel(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),  # type: ignore
               softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
        if dropout_p > 0.0:
            raise NotImplementedError("no dropout")
        o = _options(q, softmax_scale, causal, window_size, softcap, alibi_slopes, bug)
        parts = [attend(q[b], k[b], v[b], o, style, bug) for b in range(q.shape[0])]
        out = torch.stack([p[0] for p in parts]).to(q.dtype)  # (B, Lq, H, dv)
        lse = torch.stack([p[1] for p in parts]).float().detach()  # (B, H, Lq)
        return (out, lse) if return_attn_probs else out

    kernel.__name__ = kernel.__qualname__ = name
    return kernel


def _pack_layout(cu_q: torch.Tensor, cu_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchors (total_q,) in pack coordinates, document keep-mask (total_q, total_k))."""
    lq, lk = cu_q.diff(), cu_k.diff()  # (N,)
    seq_q = torch.repeat_interleave(torch.arange(len(lq)), lq)  # (total_q,)
    seq_k = torch.repeat_interleave(torch.arange(len(lk)), lk)  # (total_k,)
    local = torch.arange(int(cu_q[-1])) - cu_q[:-1][seq_q]  # (total_q,)
    anchors = local + (lk - lq)[seq_q] + cu_k[:-1][seq_q]  # (total_q,)
    return anchors, seq_q[:, None] == seq_k[None, :]


def varlen_kernel(name: str, style: str, bug: str = "", packed: bool = False) -> Callable[..., Any]:
    """A ``flash_attn_varlen_func``: ``attend`` per sequence, or on the pack at once with a document mask."""
    def kernel(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,  # type: ignore
               softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
               deterministic=False, return_attn_probs=False):
        if dropout_p > 0.0:
            raise NotImplementedError("no dropout")
        o = _options(q, softmax_scale, causal, window_size, softcap, alibi_slopes, bug)
        cu_q, cu_k = cu_seqlens_q.long().cpu(), cu_seqlens_k.long().cpu()
        if bug == "varlen_cross":  # cu_seqlens ignored: the pack is one sequence
            out, lse = attend(q, k, v, o, style, bug)
        elif packed:
            anchors, doc = _pack_layout(cu_q, cu_k)
            out, lse = attend(q, k, v, o, style, bug, anchors.to(q.device), doc.to(q.device))
        else:
            if bug == "keys_from_cu_q":
                cu_k = cu_q
            parts = [attend(q[cu_q[n]:cu_q[n + 1]], k[cu_k[n]:cu_k[n + 1]], v[cu_k[n]:cu_k[n + 1]], o, style, bug)
                     for n in range(len(cu_q) - 1)]
            out, lse = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts], dim=1)
        out, lse = out.to(q.dtype), lse.float().detach()  # (total_q, H, dv), (H, total_q)
        return (out, lse) if return_attn_probs else out

    kernel.__name__ = kernel.__qualname__ = name
    return kernel


CORRECT_FLASH: dict[str, tuple[str, Callable[..., Any]]] = {
    "flash_dense_upcast": ("flash", flash_kernel("flash_dense_upcast", "upcast")),
    "flash_online_64": ("flash", flash_kernel("flash_online_64", "online64")),
    "flash_online_16": ("flash", flash_kernel("flash_online_16", "online16")),
    "varlen_loop_dense": ("varlen", varlen_kernel("varlen_loop_dense", "dense")),
    "varlen_loop_online": ("varlen", varlen_kernel("varlen_loop_online", "online16")),
    "varlen_packed_upcast": ("varlen", varlen_kernel("varlen_packed_upcast", "upcast", packed=True)),
    "flash_alibi_fa2_declared": ("flash", flash_kernel("flash_alibi_fa2_declared", "dense", "alibi_fa2")),
}
CORRECT_FLASH["flash_alibi_fa2_declared"][1].triad_support = KernelSupport(alibi_lse="fa2")  # type: ignore[attr-defined]

# name -> (interface, style, bug, expected diagnosis key)
_PLANTED_SPECS: dict[str, tuple[str, str, str, str]] = {
    "flash_drop_last_key_tile": ("flash", "online64", "drop_last_key_tile", ""),
    "flash_drop_last_query_tile": ("flash", "dense", "drop_last_query_tile", ""),
    "flash_no_rescale": ("flash", "online16", "no_rescale", ""),
    "flash_window_off_by_one": ("flash", "dense", "window_off_by_one", "window_off_by_one"),
    "flash_gqa_modulo": ("flash", "dense", "gqa_modulo", "gqa_modulo"),
    "flash_gqa_grad_first_head_only": ("flash", "dense", "gqa_grad_first_head_only", ""),
    "flash_softcap_after_mask": ("flash", "dense", "softcap_after_mask", "softcap_after_mask"),
    "flash_softcap_no_grad": ("flash", "dense", "softcap_no_grad", ""),
    "flash_lse_base2": ("flash", "online64", "lse_base2", "lse_base2"),
    "flash_lse_max_only": ("flash", "online16", "lse_max_only", ""),
    "flash_top_left": ("flash", "dense", "top_left", "top_left"),
    "flash_mean_of_v": ("flash", "dense", "mean_of_v", "mean_of_v"),
    "flash_nan_rows": ("flash", "dense", "nan_rows", "nan_rows"),
    "flash_scale_1_over_d": ("flash", "dense", "scale_1_over_d", "scale_1_over_d"),
    "flash_alibi_fa2_undeclared": ("flash", "dense", "alibi_fa2", "alibi_lse_shift"),
    "flash_alibi_sign": ("flash", "dense", "alibi_sign", ""),
    "flash_window_ignored_when_causal": ("flash", "dense", "window_ignored_when_causal", ""),
    "flash_open_right_is_lk": ("flash", "dense", "open_right_is_lk", "open_right_is_lk"),
    "flash_float32_softmax": ("flash", "dense", "float32_softmax", "float32"),
    "varlen_cross": ("varlen", "dense", "varlen_cross", "varlen_crossing"),
    "varlen_keys_from_cu_q": ("varlen", "dense", "keys_from_cu_q", ""),
    "varlen_empty_crash": ("varlen", "dense", "empty_crash", ""),
    "varlen_drop_last_key_tile": ("varlen", "online64", "drop_last_key_tile", ""),
    "varlen_top_left": ("varlen", "online16", "top_left", "top_left"),
    "varlen_mean_of_v": ("varlen", "dense", "mean_of_v", "mean_of_v"),
}

PLANTED_FLASH: dict[str, tuple[str, Callable[..., Any], str]] = {
    name: (interface, (flash_kernel if interface == "flash" else varlen_kernel)(name, style, bug), diagnosis)
    for name, (interface, style, bug, diagnosis) in _PLANTED_SPECS.items()
}
globals().update({name: kernel for name, (_, kernel) in CORRECT_FLASH.items()})
globals().update({name: kernel for name, (_, kernel, _) in PLANTED_FLASH.items()})
