"""Argument checks for the torch side: dtypes and devices here, shapes from ``reference.validate``."""

from __future__ import annotations

import itertools

import torch

from reference.validate import (
    check_alibi_slopes,
    check_attention_shapes,
    check_cu_seqlens,
    check_cu_seqlens_pair,
    check_dropout_p,
    check_flash_dtypes,
    check_flash_shapes,
    check_gqa_heads,
    check_scale,
    check_softcap,
    check_softmax_scale,
    check_window_size,
)

# The torch implementations also run in half precision (the NumPy reference: float32 and float64 only).
TORCH_FLASH_DTYPES = ("float64", "float32", "float16", "bfloat16")


def check_attention_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, dropout_p: float,
    scale: float | None = None,
    *,
    enable_gqa: bool = False,
) -> int:
    """Raise TypeError/ValueError naming the argument, as the NumPy reference does; returns ``n_rep``
    (query heads per K/V head: ``H // Hkv`` with ``enable_gqa``, else 1)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v: expected one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v: expected one device, got q {q.device}, k {k.device}, v {v.device}")
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"attn_mask: expected a torch.Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            raise TypeError(
                f"attn_mask: expected a boolean keep-mask or a floating additive mask, got dtype {attn_mask.dtype}"
            )
        if attn_mask.device != q.device:
            raise ValueError(f"attn_mask: expected device {q.device} like q, got {attn_mask.device}")
    n_rep = check_gqa_heads(q.shape, k.shape, v.shape) if enable_gqa else 1
    k_shape, v_shape = (x.shape if n_rep == 1 else (*x.shape[:-3], x.shape[-3] * n_rep, *x.shape[-2:]) for x in (k, v))
    check_attention_shapes(q.shape, k_shape, v_shape, None if attn_mask is None else attn_mask.shape)
    check_dropout_p(dropout_p)
    check_scale(scale)
    if attn_mask is not None and attn_mask.is_floating_point():
        check_additive_mask(attn_mask)
    return n_rep


def check_additive_mask(attn_mask: torch.Tensor) -> None:
    """A float (additive) mask holds no NaN and no +inf, as the reference requires: either would turn its rows
    into NaN. This reads the mask's values, so on a GPU it waits for the device (one sync per call); a boolean
    keep-mask needs no such check."""
    if bool(torch.isnan(attn_mask).any()) or bool(torch.isposinf(attn_mask).any()):
        raise ValueError("attn_mask: an additive mask must not hold NaN or +inf")


def check_device(device: str) -> torch.device:
    """'cpu' or 'cuda' (with an index, 'cuda:1'), CUDA only where this torch has it: a clear ValueError rather
    than torch's ``AssertionError: Torch not compiled with CUDA enabled`` halfway through building a model."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but this torch sees no CUDA device "
                         f"(torch {torch.__version__}, torch.cuda.is_available() is False); use --device cpu")
    return parsed


def dtype_name(dtype: torch.dtype) -> str:
    """torch.float64 -> "float64": the names ``reference.validate`` compares."""
    return str(dtype).removeprefix("torch.")


def _check_tensors(**tensors: torch.Tensor) -> None:
    for name, x in tensors.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    devices = {name: x.device for name, x in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError("q, k, v: expected one device, got " + ", ".join(f"{n} {d}" for n, d in devices.items()))


def check_flash_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, softmax_scale: float | None, softcap: object,
    varlen: bool = False,
) -> tuple[int, float]:
    """q, k, v, the scale and the softcap of the FlashAttention interface, checked in the NumPy reference's order
    and words; returns (n_rep, softcap). The window and the slopes follow in ``check_flash_options``."""
    _check_tensors(q=q, k=k, v=v)
    check_flash_dtypes(dtype_name(q.dtype), dtype_name(k.dtype), dtype_name(v.dtype), TORCH_FLASH_DTYPES)
    n_rep = check_flash_shapes(q.shape, k.shape, v.shape, varlen=varlen)
    check_softmax_scale(softmax_scale)
    return n_rep, check_softcap(softcap)


def check_flash_options(
    q: torch.Tensor, causal: bool, window_size: object, alibi_slopes: torch.Tensor | None, batch: int
) -> tuple[int, int]:
    """The window (returned as (left, right) after ``causal``: right = 0) and the ALiBi slopes, (H,) or
    (batch, H) with ``batch`` = B, or the number of packed sequences (varlen)."""
    left, right = check_window_size(window_size)
    if alibi_slopes is not None:
        _check_tensors(alibi_slopes=alibi_slopes)
        if alibi_slopes.device != q.device:
            raise ValueError(f"alibi_slopes: expected device {q.device} like q, got {alibi_slopes.device}")
        finite = bool(torch.isfinite(alibi_slopes).all()) if alibi_slopes.is_floating_point() else True
        check_alibi_slopes(alibi_slopes.shape, finite, dtype_name(alibi_slopes.dtype), batch, q.shape[-2])
    return (left, 0) if causal else (left, right)


def checked_cu_seqlens(name: str, cu_seqlens: torch.Tensor, total: int | None = None) -> torch.Tensor:
    """cu_seqlens (N+1,) of an int dtype, from 0, non-decreasing, ending at ``total`` (if given) -> int64;
    mirrors ``reference.masks.checked_cu_seqlens``."""
    _check_tensors(**{name: cu_seqlens})
    values = cu_seqlens.tolist() if cu_seqlens.ndim == 1 and cu_seqlens.numel() else [None]
    check_cu_seqlens(name, dtype_name(cu_seqlens.dtype), tuple(cu_seqlens.shape), values,
                     values[-1] if total is None else total)
    return cu_seqlens.to(torch.int64)


def check_varlen_offsets(
    cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, total_q: int, total_k: int,
    max_seqlen_q: int | None = None, max_seqlen_k: int | None = None,
) -> tuple[list[int], list[int]]:
    """cu_seqlens_q/k as ``reference.validate.check_cu_seqlens`` wants them; returns both as Python lists.

    ``max_seqlen_q/k`` (FlashAttention sizes its grid with them) may be None; given, each must be an int
    at least as long as the longest sequence (a shorter one would make a kernel skip keys).
    """
    offsets = [checked_cu_seqlens(name, cu, total).tolist() for name, cu, total in
               (("cu_seqlens_q", cu_seqlens_q, total_q), ("cu_seqlens_k", cu_seqlens_k, total_k))]
    check_cu_seqlens_pair(len(offsets[0]), len(offsets[1]))
    for name, given, values in (("max_seqlen_q", max_seqlen_q, offsets[0]), ("max_seqlen_k", max_seqlen_k, offsets[1])):
        longest = max((b - a for a, b in itertools.pairwise(values)), default=0)
        if given is not None and (isinstance(given, bool) or not isinstance(given, int) or given < longest):
            raise ValueError(f"{name}: expected None or an int >= the longest sequence ({longest}), got {given!r}")
    return offsets[0], offsets[1]


def check_flash_call(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, softmax_scale: float | None, causal: bool,
    window_size: object, softcap: object, alibi_slopes: torch.Tensor | None,
    cu_seqlens: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_seqlens: tuple[int | None, int | None] = (None, None),
) -> tuple[int, float, tuple[int, int]]:
    """One call of FlashAttention's interface (packed when ``cu_seqlens`` is given), checked in the reference's
    order: q, k, v, the scale and the softcap, the offsets, the window, the slopes. Returns
    (n_rep, softcap, (left, right) after ``causal``)."""
    n_rep, cap = check_flash_inputs(q, k, v, softmax_scale=softmax_scale, softcap=softcap,
                                    varlen=cu_seqlens is not None)
    batch = q.shape[0]
    if cu_seqlens is not None:
        cu_q, _ = check_varlen_offsets(*cu_seqlens, q.shape[0], k.shape[0], *max_seqlens)
        batch = len(cu_q) - 1
    return n_rep, cap, check_flash_options(q, causal, window_size, alibi_slopes, batch)


# The largest (B, H, Lq, Lk) score array a dense built-in builds before it declines: 2^27 scores (1 GiB in float64,
# 512 MiB in float32) -- long-context checks (``triad verify --long``) reach lengths where the dense maths would
# exhaust the machine's memory, and a declined case is skipped, not failed.
DENSE_SCORES_LIMIT = 2**27


def check_dense_scores_fit(name: str, B: int, H: int, Lq: int, Lk: int) -> None:
    """NotImplementedError (a declined case) when a dense (B, H, Lq, Lk) score array exceeds DENSE_SCORES_LIMIT."""
    if B * H * Lq * Lk > DENSE_SCORES_LIMIT:
        raise NotImplementedError(f"{name}: a dense (B, H, Lq, Lk) = ({B}, {H}, {Lq}, {Lk}) score array "
                                  f"({B * H * Lq * Lk / 2**30:.1f} G scores) is over this built-in's limit of "
                                  f"{DENSE_SCORES_LIMIT / 2**30:.3g} G")
