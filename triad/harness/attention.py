"""The attention core in every implementation: run an SDPA-shaped kernel on NumPy inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from reference.masks import causal_mask, padding_mask


def run_attention(
    kernel: Callable[..., torch.Tensor],
    inputs: Mapping[str, np.ndarray | None],
    dout: np.ndarray,
    dtype: torch.dtype,
    device: str = "cpu",
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Run an SDPA-shaped kernel on NumPy inputs (q, k, v, attn_mask); return out, dq, dk, dv as float64."""
    q, k, v = (torch.tensor(inputs[n], dtype=dtype, device=device, requires_grad=True) for n in ("q", "k", "v"))
    mask = inputs.get("attn_mask")
    mask_t = None if mask is None else torch.tensor(mask, device=device)
    if mask_t is not None and mask_t.is_floating_point():
        mask_t = mask_t.to(dtype)
    out = kernel(q, k, v, mask_t, **kwargs)
    out.backward(torch.tensor(dout, dtype=dtype, device=device))
    return {
        name: t.detach().cpu().double().numpy()
        for name, t in (("out", out), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad))
    }


def default_case(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """B=2, H=4, Lq=12, Lk=9, d_head=16, padding on the second sequence and a bottom-right causal
    mask, so Lq != Lk, padded keys and fully masked query rows all appear."""
    rng = np.random.default_rng(seed)
    B, H, Lq, Lk, E = 2, 4, 12, 9, 16
    tokens = np.array([[5] * Lk, [5] * (Lk - 3) + [0] * 3])  # (B, Lk); pad_id 0
    keep = padding_mask(tokens, pad_id=0) & causal_mask(Lq, Lk, "bottom_right")  # (B, 1, Lq, Lk)
    inputs = {
        "q": rng.standard_normal((B, H, Lq, E)),
        "k": rng.standard_normal((B, H, Lk, E)),
        "v": rng.standard_normal((B, H, Lk, E)),
        "attn_mask": keep,
    }
    dout = rng.standard_normal((B, H, Lq, E))
    return inputs, dout
