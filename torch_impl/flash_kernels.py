"""Built-in kernels with FlashAttention's own signatures, for ``triad verify --interface flash|varlen``.

``flash``: ``fn(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
alibi_slopes=None, deterministic=False, return_attn_probs=False)`` with q ``(B, Lq, H, d)``, k/v
``(B, Lk, Hkv, d)``; ``varlen`` adds ``cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k`` after v,
with q ``(total_q, H, d)``. Each returns ``out``, or ``(out, lse)`` when ``return_attn_probs=True`` (the
LSE natural-log, ``(B, H, Lq)`` or ``(H, total_q)``). Dropout is declined (``NotImplementedError``).

``reference`` is the NumPy maths (``reference.flash_attention``) behind a ``torch.autograd.Function``
(CPU, float32/float64); ``scratch``, ``native`` and ``flex`` are ``torch_impl.kernels.FLASH_KERNELS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from reference.flash_attention import (
    flash_attention_backward,
    flash_attention_forward,
    flash_attention_varlen_backward,
    flash_attention_varlen_forward,
)
from torch_impl.kernels import FLASH_KERNELS

INTERFACES = ("sdpa", "flash", "varlen")
FlashFn = Callable[..., Any]


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


class _ReferenceFlash(torch.autograd.Function):
    """The NumPy forward and hand-written backward of the flash interface (packed when ``cu`` is given)."""

    @staticmethod
    def forward(ctx: Any, q, k, v, cu, options):  # type: ignore[override]
        if cu is None:
            out, lse, cache = flash_attention_forward(_numpy(q), _numpy(k), _numpy(v), **options)
        else:
            out, lse, cache = flash_attention_varlen_forward(_numpy(q), _numpy(k), _numpy(v), *cu, **options)
        ctx.cache, ctx.packed = cache, cu is not None
        lse_t = torch.from_numpy(lse)
        ctx.mark_non_differentiable(lse_t)  # as FlashAttention's: the LSE is not differentiable
        return torch.from_numpy(out), lse_t

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor, dlse: torch.Tensor):  # type: ignore[override]
        backward = flash_attention_varlen_backward if ctx.packed else flash_attention_backward
        dq, dk, dv = backward(dout.detach().cpu().numpy(), ctx.cache)
        return torch.from_numpy(dq), torch.from_numpy(dk), torch.from_numpy(dv), None, None


def _options(softmax_scale: float | None, causal: bool, window_size: tuple[int, int], softcap: float,
             alibi_slopes: torch.Tensor | None) -> dict[str, Any]:
    return {"softmax_scale": softmax_scale, "causal": causal, "window_size": tuple(window_size),
            "softcap": softcap, "alibi_slopes": _numpy(alibi_slopes)}


def _finish(out: torch.Tensor, lse: torch.Tensor, return_attn_probs: bool) -> Any:
    return (out, lse.detach()) if return_attn_probs else out


def _reference_dense(q, k, v, *, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                     alibi_slopes=None):  # type: ignore[no-untyped-def]
    if q.device.type != "cpu":
        raise ValueError(f"q: the NumPy reference runs on the CPU only, got device {q.device}")
    return _ReferenceFlash.apply(q, k, v, None, _options(softmax_scale, causal, window_size, softcap, alibi_slopes))


def _reference_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, *,
                      softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                      alibi_slopes=None):  # type: ignore[no-untyped-def]
    if q.device.type != "cpu":
        raise ValueError(f"q: the NumPy reference runs on the CPU only, got device {q.device}")
    cu = (_numpy(cu_seqlens_q), _numpy(cu_seqlens_k))
    return _ReferenceFlash.apply(q, k, v, cu, _options(softmax_scale, causal, window_size, softcap, alibi_slopes))


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


_DENSE: dict[str, tuple[FlashFn, FlashFn]] = {"reference": (_reference_dense, _reference_varlen)} | {
    name: (fk.dense, fk.varlen) for name, fk in FLASH_KERNELS.items()}

# interface -> built-in name -> kernel
FLASH_BUILTINS: dict[str, dict[str, FlashFn]] = {
    "flash": {name: _flash_signature(dense, name) for name, (dense, _) in _DENSE.items()},
    "varlen": {name: _varlen_signature(varlen, name) for name, (_, varlen) in _DENSE.items()},
}
