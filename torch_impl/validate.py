"""Argument checks for the torch side: dtypes and devices here, shapes from ``reference.validate``."""

from __future__ import annotations

import torch

from reference.validate import check_attention_shapes, check_dropout_p


def check_attention_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, dropout_p: float
) -> None:
    """Raise TypeError/ValueError naming the argument, as the NumPy reference does."""
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
    check_attention_shapes(q.shape, k.shape, v.shape, None if attn_mask is None else attn_mask.shape)
    check_dropout_p(dropout_p)
