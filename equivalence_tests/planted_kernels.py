"""Kernels with planted bugs, one per defect class ``triad verify`` must catch, and the correct kernel they edit.

``correct_attention`` is SDPA written in small steps; each planted kernel swaps exactly one step for
a realistic wrong version (the kind of slip a kernel author makes), named in its docstring.
Every kernel here has ``F.scaled_dot_product_attention``'s signature and is importable as
``equivalence_tests.planted_kernels:NAME``, so a repro script can find it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _default_scale(E: int) -> float:
    return 1.0 / math.sqrt(E)


def _causal_keep(Lq: int, Lk: int, device: torch.device) -> torch.Tensor:
    return torch.ones(Lq, Lk, dtype=torch.bool, device=device).tril()  # (Lq, Lk), top-left


def _apply_mask(scores: torch.Tensor, attn_mask: torch.Tensor, scale: float) -> torch.Tensor:
    """scores are already scaled; a boolean keep-mask blocks with -inf, a float mask is added."""
    if attn_mask.dtype == torch.bool:
        return scores.masked_fill(~attn_mask, float("-inf"))  # (B, H, Lq, Lk)
    return scores + attn_mask  # (B, H, Lq, Lk)


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """Row softmax with a fully masked row (all -inf) defined as 0."""
    row_max = scores.amax(dim=-1, keepdim=True).detach()  # (B, H, Lq, 1)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(scores - row_max)  # (B, H, Lq, Lk)
    row_sum = e.sum(dim=-1, keepdim=True)  # (B, H, Lq, 1)
    return e / torch.where(row_sum > 0, row_sum, torch.ones_like(row_sum))  # (B, H, Lq, Lk)


def _qk(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-1, -2)  # (B, H, Lq, Lk)


def _load(x: torch.Tensor) -> torch.Tensor:
    return x


def _keys_used(Lk: int) -> int:
    return Lk


def _prepare_mask(attn_mask: torch.Tensor) -> torch.Tensor:
    return attn_mask


def _dropout(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout: keep with probability 1 - p and rescale by 1 / (1 - p)."""
    return probs * (torch.rand_like(probs) >= p) / (1.0 - p)  # (B, H, Lq, Lk)


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, dropout_p: float,
    is_causal: bool, scale: float | None, *,
    default_scale: Callable[[int], float] = _default_scale,
    causal_keep: Callable[[int, int, torch.device], torch.Tensor] = _causal_keep,
    apply_mask: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = _apply_mask,
    softmax: Callable[[torch.Tensor], torch.Tensor] = _softmax,
    qk: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _qk,
    load: Callable[[torch.Tensor], torch.Tensor] = _load,
    keys_used: Callable[[int], int] = _keys_used,
    prepare_mask: Callable[[torch.Tensor], torch.Tensor] = _prepare_mask,
    dropout: Callable[[torch.Tensor, float], torch.Tensor] = _dropout,
) -> torch.Tensor:
    q, k, v = load(q), load(k), load(v)
    E, Lq, Lk = q.shape[-1], q.shape[-2], k.shape[-2]
    scale = default_scale(E) if scale is None else scale
    n = keys_used(Lk)
    k, v = k[..., :n, :], v[..., :n, :]  # (B, H, n, E), (B, H, n, Ev)
    scores = scale * qk(q, k)  # (B, H, Lq, n)
    if is_causal:
        attn_mask = causal_keep(Lq, Lk, q.device)  # (Lq, Lk)
    if attn_mask is not None:
        attn_mask = prepare_mask(attn_mask)[..., :n]  # (..., Lq, n)
        scores = apply_mask(scores, attn_mask, scale)  # (B, H, Lq, n)
    probs = softmax(scores)  # (B, H, Lq, n)
    if dropout_p > 0.0:
        probs = dropout(probs, dropout_p)  # (B, H, Lq, n)
    return probs @ v  # (B, H, Lq, Ev)


def correct_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """The correct kernel every planted bug below edits (it must pass ``triad verify``)."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale)


def _softmax_through_max(scores: torch.Tensor) -> torch.Tensor:
    """Row softmax as textbooks write it: autograd also runs through the row max (mathematically a zero)."""
    row_max = scores.amax(dim=-1, keepdim=True)  # (B, H, Lq, 1), not detached
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(scores - row_max)  # (B, H, Lq, Lk)
    row_sum = e.sum(dim=-1, keepdim=True)  # (B, H, Lq, 1)
    return e / torch.where(row_sum > 0, row_sum, torch.ones_like(row_sum))  # (B, H, Lq, Lk)


def textbook_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Also correct: the row max is not detached, so its gradient (zero in exact arithmetic) adds rounding."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, softmax=_softmax_through_max)


def wrong_scale(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Wrong scale: the default divides the logits by d_head instead of sqrt(d_head)."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, default_scale=lambda E: 1.0 / E)


def causal_off_by_one(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Causal mask off by one: ``tril(diagonal=-1)`` hides each query's own key."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale,
                      causal_keep=lambda Lq, Lk, dev: torch.ones(Lq, Lk, dtype=torch.bool, device=dev).tril(-1))


def causal_bottom_right(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Wrong causal alignment for Lq != Lk: ``is_causal`` aligned bottom-right (FlashAttention's) not top-left."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale,
                      causal_keep=lambda Lq, Lk, dev: torch.ones(Lq, Lk, dtype=torch.bool, device=dev).tril(Lk - Lq))


def bool_mask_inverted(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Boolean mask misread: True taken as *blocked* (``nn.Transformer``'s convention), not keep."""
    def apply_mask(scores: torch.Tensor, mask: torch.Tensor, s: float) -> torch.Tensor:
        if mask.dtype == torch.bool:
            return scores.masked_fill(mask, float("-inf"))
        return scores + mask
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, apply_mask=apply_mask)


def nan_on_fully_masked_rows(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """NaN on fully masked rows: plain ``torch.softmax`` turns a row of -inf into 0/0."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, softmax=lambda s: torch.softmax(s, dim=-1))


def minus_1e9_fill(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Masked logits filled with -1e9 instead of -inf: a fully masked row averages every value instead of 0."""
    def apply_mask(scores: torch.Tensor, mask: torch.Tensor, s: float) -> torch.Tensor:
        if mask.dtype == torch.bool:
            return scores.masked_fill(~mask, -1e9)
        return scores + mask.clamp(min=-1e9)
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, apply_mask=apply_mask)


def softmax_overflow(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Softmax overflow: no max subtraction, so exp of a logit above ~88 (float32) is inf and the row NaN."""
    def softmax(scores: torch.Tensor) -> torch.Tensor:
        e = torch.exp(scores)  # (B, H, Lq, Lk)
        row_sum = e.sum(dim=-1, keepdim=True)  # (B, H, Lq, 1)
        return e / torch.where(row_sum > 0, row_sum, torch.ones_like(row_sum))
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, softmax=softmax)


def additive_mask_before_scale(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Additive mask added before scaling: (QK^T + A) * scale instead of scale * QK^T + A."""
    def apply_mask(scores: torch.Tensor, mask: torch.Tensor, s: float) -> torch.Tensor:
        if mask.dtype == torch.bool:
            return scores.masked_fill(~mask, float("-inf"))
        return scores + s * mask
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, apply_mask=apply_mask)


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by a factor."""

    @staticmethod
    def forward(ctx, x, factor):  # type: ignore[no-untyped-def, override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        return grad * ctx.factor, None


def dk_missing_scale(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """A bug in one gradient only: the backward forgets the softmax scale in dk (dk = dS^T Q, not s dS^T Q)."""
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return _attention(q, _ScaleGradient.apply(k, 1.0 / s), v, attn_mask, dropout_p, is_causal, scale)


def dropped_tail_block(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Dropped tail block: keys are tiled by 16 and the loop runs Lk // 16 tiles, losing a partial last tile."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale,
                      keys_used=lambda Lk: Lk if Lk < 16 else 16 * (Lk // 16))


def ignores_strides(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Wrong results for non-contiguous input: reads the storage as if the tensor were contiguous."""
    def load(x: torch.Tensor) -> torch.Tensor:
        strides = [math.prod(x.shape[i + 1:]) for i in range(x.dim())]
        return torch.as_strided(x, x.shape, strides, x.storage_offset())
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, load=load)


def half_precision_logits(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Precision far below the dtype: QK^T computed in bfloat16 and cast back (8 bits of mantissa)."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale,
                      qk=lambda a, b: (a.bfloat16() @ b.bfloat16().transpose(-1, -2)).to(a.dtype))


def mutates_input(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Input mutated: q is scaled in place (through ``.data``, to save memory), so the caller's q changes."""
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q.data.mul_(s)
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, 1.0)


def mask_from_first_batch_element(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Mask broadcast across the batch wrongly: a per-element (B, ...) mask is read from element 0 only."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale,
                      prepare_mask=lambda m: m[:1] if m.dim() == 4 else m)


def broadcast_mask_first_query_only(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Mask broadcast across the queries wrongly: a (..., 1, Lk) key-padding mask is applied to query 0 only
    (the kernel writes the mask row into a zero-initialised (Lq, Lk) tile instead of broadcasting it)."""
    def prepare_mask(m: torch.Tensor) -> torch.Tensor:
        if m.dim() < 2 or m.shape[-2] != 1 or q.shape[-2] == 1:
            return m
        fill = True if m.dtype == torch.bool else 0.0  # keep everything in the rows the mask never reached
        tile = torch.full((*m.shape[:-2], q.shape[-2], m.shape[-1]), fill, dtype=m.dtype, device=m.device)
        tile[..., :1, :] = m
        return tile  # (..., Lq, Lk)
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale, prepare_mask=prepare_mask)


def dropout_not_rescaled(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Dropout without the 1/(1-p) rescaling: the expected output shrinks by (1 - p)."""
    return _attention(q, k, v, attn_mask, dropout_p, is_causal, scale,
                      dropout=lambda probs, p: probs * (torch.rand_like(probs) >= p))


def dropout_ignored(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """dropout_p accepted and silently ignored (a fused forward written for inference only)."""
    return _attention(q, k, v, attn_mask, 0.0, is_causal, scale)


PLANTED = {
    name: globals()[name] for name in (
        "wrong_scale", "causal_off_by_one", "causal_bottom_right", "bool_mask_inverted", "nan_on_fully_masked_rows",
        "minus_1e9_fill", "softmax_overflow", "additive_mask_before_scale", "dk_missing_scale", "dropped_tail_block",
        "ignores_strides", "half_precision_logits", "mutates_input", "mask_from_first_batch_element",
        "broadcast_mask_first_query_only",
        "dropout_not_rescaled", "dropout_ignored",
    )
}
