"""Argument checks for the torch side: dtypes and devices here, shapes from ``reference.validate``."""

from __future__ import annotations

import torch

from reference.validate import check_attention_shapes, check_dropout_p, check_scale


def check_attention_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, dropout_p: float,
    scale: float | None = None,
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
    check_scale(scale)
    if attn_mask is not None and attn_mask.is_floating_point():
        check_additive_mask(attn_mask)


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
