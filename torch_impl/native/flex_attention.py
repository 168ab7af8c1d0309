"""FlexAttention (``torch.nn.attention.flex_attention``): the attention family as ``score_mod``/``mask_mod``.

The semantics are the reference's (``reference/flash_attention.py``); here each feature is one of
FlexAttention's modifications, evaluated per score ``(b, h, q_idx, kv_idx)``:

- softcap and ALiBi are a ``score_mod``: ``score <- c tanh(score / c)``, then
  ``score <- score - slope[b or sequence, h] |anchor[q_idx] - kv_idx|`` (softcap before the bias);
- the causal/sliding-window band and the packed-sequence (document) mask are a ``mask_mod``, turned into
  a ``BlockMask`` by ``create_block_mask``: ``anchor - left <= kv_idx <= anchor + right`` and, varlen,
  ``sequence[q_idx] == sequence[kv_idx]``; ``anchor[q_idx]`` is the key aligned with the query
  (``q_idx + Lk - Lq``, or per packed sequence its ends aligned);
- GQA is FlexAttention's own ``enable_gqa=True``; the LSE is its ``return_aux=AuxRequest(lse=True)``
  (``return_lse=True`` on torch < 2.9), natural log, ``-inf`` on a row with no visible key (out 0 there).

What runs where (measured on torch 2.13 CPU; CUDA unmeasured here, torch 2.11 on the GPU machine):

- **CPU, eager** (what this module calls): forward in float64/float32 with LSE, GQA and every mod;
  no backward -- FlexAttention refuses even the forward when an input ``requires_grad`` ("does not
  support backward on CPU"), so this module raises ``NotImplementedError`` for such inputs (a declined
  case to the verifier) and callers compare on the CPU outputs only (forward-only). The eager path is
  unfused (it materialises the scores) and warns once that it runs without ``torch.compile``.
- **CPU, compiled** (``torch.compile(flex_attention)``): inference only, no LSE, float32/fp16/bf16
  only (no float64), ~27 s to compile one shape on 2 cores: not used.
- **CUDA**: forward and backward through autograd (eager; ``torch.compile`` fuses it), the full three-way
  comparison of the gpu-marked tests.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from torch_impl.validate import check_attention_inputs, check_dense_scores_fit, check_flash_call

try:  # torch >= 2.5
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # pragma: no cover - older torch
    create_block_mask = flex_attention = None
try:  # torch >= 2.9: return_lse is deprecated in favour of return_aux
    from torch.nn.attention.flex_attention import AuxRequest
except ImportError:  # pragma: no cover - torch 2.5 .. 2.8
    AuxRequest = None

ScoreMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ScoreLayout:
    """What the mods read, per query row ``q_idx`` and key column ``kv_idx`` (integer tensors).

    anchors (Lq,): the key aligned with each query; q_seq (Lq,), k_seq (Lk,): each row's packed
    sequence (None when not packed); slopes (R, H): ALiBi slopes, row ``b`` (dense) or ``q_seq[q_idx]``
    (varlen), or None; left, right: the window (-1 unbounded); softcap: 0 = off.
    """

    anchors: torch.Tensor
    left: int
    right: int
    softcap: float
    slopes: torch.Tensor | None = None
    q_seq: torch.Tensor | None = None
    k_seq: torch.Tensor | None = None

    @property
    def has_mask(self) -> bool:
        return self.left >= 0 or self.right >= 0 or self.q_seq is not None

    @property
    def has_score_mod(self) -> bool:
        return self.softcap > 0.0 or self.slopes is not None


def band_mask_mod(layout: ScoreLayout) -> MaskMod:
    """mask_mod: the window band around each query's anchor, inside its own packed sequence."""

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        anchor = layout.anchors[q_idx]
        keep = kv_idx >= 0
        if layout.left >= 0:
            keep = keep & (kv_idx >= anchor - layout.left)
        if layout.right >= 0:
            keep = keep & (kv_idx <= anchor + layout.right)
        if layout.q_seq is not None:
            keep = keep & (layout.q_seq[q_idx] == layout.k_seq[kv_idx])
        return keep

    return mask_mod


def softcap_alibi_score_mod(layout: ScoreLayout) -> ScoreMod:
    """score_mod: softcap, then the ALiBi bias (FlashAttention's order)."""

    def score_mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                  kv_idx: torch.Tensor) -> torch.Tensor:
        if layout.softcap > 0.0:
            score = layout.softcap * torch.tanh(score / layout.softcap)
        if layout.slopes is not None:
            row = b if layout.q_seq is None else layout.q_seq[q_idx]
            score = score - layout.slopes[row, h] * (layout.anchors[q_idx] - kv_idx).abs()
        return score

    return score_mod


def dense_layout(Lq: int, Lk: int, B: int, window: tuple[int, int], softcap: float,
                 alibi_slopes: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> ScoreLayout:
    """The layout of one (B, Lq, Lk) batch: anchors q_idx + Lk - Lq, slopes expanded to (B, H)."""
    anchors = torch.arange(Lq, device=device) + (Lk - Lq)  # (Lq,)
    slopes = None
    if alibi_slopes is not None:
        slopes = alibi_slopes.detach().to(dtype).reshape(-1, alibi_slopes.shape[-1]).expand(B, -1)  # (B, H)
    return ScoreLayout(anchors, *window, softcap, slopes)


def varlen_layout(cu_q: torch.Tensor, cu_k: torch.Tensor, window: tuple[int, int], softcap: float,
                  alibi_slopes: torch.Tensor | None, dtype: torch.dtype) -> ScoreLayout:
    """The layout of packed sequences (cu_q, cu_k int64 on q's device): per-sequence anchors and ids."""
    n_seq = len(cu_q) - 1
    q_seq = torch.repeat_interleave(torch.arange(n_seq, device=cu_q.device), cu_q.diff())  # (total_q,)
    k_seq = torch.repeat_interleave(torch.arange(n_seq, device=cu_k.device), cu_k.diff())  # (total_k,)
    anchors = torch.arange(len(q_seq), device=cu_q.device) + (cu_k[1:] - cu_q[1:])[q_seq]  # (total_q,)
    slopes = None
    if alibi_slopes is not None:
        slopes = alibi_slopes.detach().to(dtype).reshape(-1, alibi_slopes.shape[-1]).expand(n_seq, -1)  # (N, H)
    return ScoreLayout(anchors, *window, softcap, slopes, q_seq, k_seq)


def require_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Refuse, with the reason, what FlexAttention cannot run here: no module, or gradients on the CPU."""
    if flex_attention is None:
        raise NotImplementedError(f"FlexAttention needs torch >= 2.5 (torch.nn.attention.flex_attention), "
                                  f"this is torch {torch.__version__}")
    if q.device.type == "cpu" and any(x.requires_grad for x in (q, k, v)):
        raise NotImplementedError(
            f"FlexAttention has no backward on CPU (torch {torch.__version__}) and refuses inputs that require "
            "grad: pass detached tensors for a forward-only run, or run on CUDA")


def empty_result(q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """No query or no key at all (SDPA and FlexAttention refuse a zero-length axis): every row is empty, so
    out 0 (B, H, Lq, dv) and lse -inf (B, H, Lq); None otherwise. The zero is the sum of the empty tensor
    (exactly 0, and on the autograd graph, so a backward runs and gives the other inputs no gradient)."""
    if q.shape[-2] and v.shape[-2]:
        return None
    B, H, Lq = q.shape[:3]
    zero = (q if q.shape[-2] == 0 else v).sum() * 0  # ()
    return zero.expand(B, H, Lq, v.shape[-1]), q.new_full((B, H, Lq), float("-inf")).detach()


def run_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: ScoreLayout,
             scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, H, Lq, d), k/v (B, Hkv, Lk, d|dv) -> (out (B, H, Lq, dv), lse (B, H, Lq)) through FlexAttention."""
    require_flex(q, k, v)
    Lq, Lk = q.shape[-2], k.shape[-2]
    if (empty := empty_result(q, v)) is not None:
        return empty
    block_mask = None
    if layout.has_mask:
        block_mask = create_block_mask(band_mask_mod(layout), None, None, Lq, Lk, device=q.device)
    score_mod = softcap_alibi_score_mod(layout) if layout.has_score_mod else None
    lse_request = {"return_aux": AuxRequest(lse=True)} if AuxRequest is not None else {"return_lse": True}
    with warnings.catch_warnings():  # eager FlexAttention warns that it is unfused: known, and said above
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        out, aux = flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale,
                                  enable_gqa=k.shape[-3] != q.shape[-3], **lse_request)
    lse = aux.lse if AuxRequest is not None else aux
    return out, lse  # (B, H, Lq, dv), (B, H, Lq); the LSE in float32 for half inputs (FlexAttention's)


def flex_flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, softmax_scale: float | None = None,
    causal: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention's interface through FlexAttention: q (B, Lq, H, d), k/v (B, Lk, Hkv, d|dv)
    -> (out (B, Lq, H, dv), lse (B, H, Lq))."""
    _, cap, window = check_flash_call(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                      softcap=softcap, alibi_slopes=alibi_slopes)  # causal: right 0
    check_dense_scores_fit("flex (eager FlexAttention builds the scores)", q.shape[0], q.shape[2], q.shape[1],
                           k.shape[1])
    layout = dense_layout(q.shape[1], k.shape[1], q.shape[0], window, cap, alibi_slopes,
                          q.device, q.dtype)
    out, lse = run_flex(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout, softmax_scale)
    return out.transpose(1, 2), lse  # (B, Lq, H, dv), (B, H, Lq)


def flex_flash_attention_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, *, softmax_scale: float | None = None,
    causal: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed sequences through FlexAttention's document mask: q (total_q, H, d), k/v (total_k, Hkv, d|dv)
    -> (out (total_q, H, dv), lse (H, total_q))."""
    _, cap, window = check_flash_call(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                      softcap=softcap, alibi_slopes=alibi_slopes,
                                      cu_seqlens=(cu_seqlens_q, cu_seqlens_k),
                                      max_seqlens=(max_seqlen_q, max_seqlen_k))  # causal: right 0
    cu_q64, cu_k64 = (cu.to(device=q.device, dtype=torch.int64) for cu in (cu_seqlens_q, cu_seqlens_k))
    layout = varlen_layout(cu_q64, cu_k64, window, cap, alibi_slopes, q.dtype)
    out, lse = run_flex(*(x.transpose(0, 1)[None] for x in (q, k, v)), layout, softmax_scale)
    return out[0].transpose(0, 1), lse[0]  # (total_q, H, dv), (H, total_q)


def flex_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, *, enable_gqa: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention``'s signature through FlexAttention (the ``flex`` kernel).

    A boolean keep-mask becomes a ``mask_mod`` (``False`` -> hidden), an additive mask a ``score_mod``,
    ``is_causal`` the top-left ``q_idx >= kv_idx``. Refused with ``NotImplementedError``: dropout
    (FlexAttention has none), inputs that require grad on the CPU (no backward there).
    """
    check_attention_inputs(q, k, v, attn_mask, dropout_p, scale, enable_gqa=enable_gqa)
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask: cannot be combined with is_causal=True (as in SDPA); fold causality into the mask")
    if dropout_p > 0.0:
        raise NotImplementedError("flex: FlexAttention has no attention dropout (dropout_p must be 0)")
    require_flex(q, k, v)
    lead, Lq, Lk = q.shape[:-2], q.shape[-2], k.shape[-2]
    q4, k4, v4 = (x.reshape(-1, *x.shape[-3:]) if x.ndim >= 3 else x[None, None] for x in (q, k, v))  # (B, H, L, d)
    mask = None if attn_mask is None else attn_mask.expand(*lead, Lq, Lk).reshape(*q4.shape[:2], Lq, Lk)
    block_mask = score_mod = None
    if is_causal:
        block_mask = create_block_mask(_top_left_causal, None, None, Lq, Lk, device=q.device)
    elif mask is not None and mask.dtype == torch.bool:
        block_mask = create_block_mask(_keep_mask_mod(mask), *mask.shape, device=q.device)
    elif mask is not None:
        score_mod = _additive_score_mod(mask.to(q.dtype))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        out = flex_attention(q4, k4, v4, score_mod=score_mod, block_mask=block_mask, scale=scale,
                             enable_gqa=enable_gqa and k4.shape[1] != q4.shape[1])
    return out.reshape(*lead, Lq, v.shape[-1])  # (..., Lq, Ev)


def _top_left_causal(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return kv_idx <= q_idx


def _keep_mask_mod(keep: torch.Tensor) -> MaskMod:
    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return keep[b, h, q_idx, kv_idx]

    return mask_mod


def _additive_score_mod(bias: torch.Tensor) -> ScoreMod:
    def score_mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                  kv_idx: torch.Tensor) -> torch.Tensor:
        return score + bias[b, h, q_idx, kv_idx]

    return score_mod
