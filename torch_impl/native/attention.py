"""Attention through ``F.scaled_dot_product_attention``, with its backend selectable.

``backend=None`` lets PyTorch dispatch; a name pins one backend with
``torch.nn.attention.sdpa_kernel`` so that a silent fallback to another backend is an
error, not a different kernel measured or verified under the wrong name.

``enable_gqa=True`` (grouped-query attention: k, v with ``Hkv`` heads dividing ``H``) needs torch >= 2.5,
where SDPA gained the flag; on older torch it is refused with ``NotImplementedError``. A pinned backend
that cannot run GQA declines as for any other case (PyTorch's ``No available kernel``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.torch_version import TorchVersion

from torch_impl.validate import check_attention_inputs

BACKENDS: dict[str, SDPBackend] = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
SDPA_HAS_GQA = TorchVersion(torch.__version__) >= (2, 5)  # F.scaled_dot_product_attention(enable_gqa=...)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    backend: str | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) -> out (..., Lq, Ev) through SDPA.

    Raises ``RuntimeError`` when the pinned ``backend`` cannot run this case
    (PyTorch's own message says why). A non-finite value in a query row makes that output row NaN, as in
    the reference (``nan_rows_of``).
    """
    check_attention_inputs(q, k, v, attn_mask, dropout_p, scale, enable_gqa=enable_gqa)
    if enable_gqa and not SDPA_HAS_GQA:
        raise NotImplementedError(f"enable_gqa: F.scaled_dot_product_attention has it from torch 2.5, "
                                  f"this is torch {torch.__version__}")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask: cannot be combined with is_causal=True (as in SDPA); fold causality into the mask")
    if attn_mask is not None and attn_mask.is_floating_point():
        attn_mask = attn_mask.to(q.dtype)  # SDPA wants an additive mask in the query's dtype
    gqa = {"enable_gqa": True} if enable_gqa else {}  # only when asked: torch < 2.5 has no such argument
    if backend is None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale,
                                             **gqa)  # (B, H, Lq, Ev)
    elif backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {sorted(BACKENDS)} or None, got {backend!r}")
    else:
        with sdpa_kernel(BACKENDS[backend]):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale, **gqa)
    return out + nan_rows_of(q)  # (B, H, Lq, Ev)


def nan_rows_of(q: torch.Tensor) -> torch.Tensor:
    """(..., Lq, E) -> (..., Lq, 1): NaN on each query row holding a NaN or an infinity, 0 elsewhere.

    SDPA's CPU kernel returns 0 for a query row holding NaN when no mask is given (it takes the row for a
    fully masked one); the reference and scratch return NaN there. Adding this keeps NaN visible without a
    device sync (no value is read on the host); its gradient is 0. See docs/conventions.md, non-finite inputs.
    """
    return (q * 0).sum(dim=-1, keepdim=True)  # (B, H, Lq, 1)
