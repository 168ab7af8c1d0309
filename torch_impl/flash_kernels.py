"""Built-in kernels with FlashAttention's own signatures, for ``triad verify --interface flash|varlen``.

``flash``: ``fn(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
alibi_slopes=None, deterministic=False, return_attn_probs=False)`` with q ``(B, Lq, H, d)``, k/v
``(B, Lk, Hkv, d)``; ``varlen`` adds ``cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k`` after v,
with q ``(total_q, H, d)``. Each returns ``out``, or ``(out, lse)`` when ``return_attn_probs=True`` (the
LSE natural-log, ``(B, H, Lq)`` or ``(H, total_q)``). Dropout is declined (``NotImplementedError``).

The built-ins are ``torch_impl.kernels.FLASH_KERNELS`` (``reference``: the NumPy maths behind a
``torch.autograd.Function``, CPU, float32/float64; ``scratch``, ``native``, ``flex``) with these signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from torch_impl.kernels import FLASH_KERNELS

INTERFACES = ("sdpa", "flash", "varlen")
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


# interface -> built-in name -> kernel
FLASH_BUILTINS: dict[str, dict[str, FlashFn]] = {
    "flash": {name: _flash_signature(fk.dense, name) for name, fk in FLASH_KERNELS.items()},
    "varlen": {name: _varlen_signature(fk.varlen, name) for name, fk in FLASH_KERNELS.items()},
}
