"""Multi-head attention through ``nn.MultiheadAttention`` (``batch_first=True``, ``need_weights=False``).

The public API takes our keep-mask (``True`` = may attend, broadcastable to ``(B, H, Lq, Lk)``)
or an additive float mask; ``torch_masks`` turns it into torch's arguments here, at the edge,
and nowhere else:

- a boolean mask that varies only along the keys, ``(B or 1, 1, 1, Lk)``, becomes
  ``key_padding_mask (B, Lk)`` with ``True`` = blocked (the form the eval fast path accepts);
- any other mask becomes ``attn_mask (B*H, Lq, Lk)`` (row ``b*H + h``), inverted if boolean.

``is_causal=True`` is passed to torch only when the mask *is* the square causal mask: torch
treats the flag as a hint and may discard ``attn_mask`` in its favour (pytorch #131254), so a
non-causal mask passed with it would be silently ignored. ``need_weights=False`` keeps torch on
its SDPA path, where a fully masked query row gets attention 0 (with ``need_weights=True`` it
is NaN, pytorch #41508); the row's output is then ``out_proj.bias``, as in the reference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from reference.validate import check_heads, check_mask_shape, check_mha_inputs


def torch_masks(
    mask: torch.Tensor | None, B: int, H: int, Lq: int, Lk: int, argument: str = "attn_mask"
) -> tuple[torch.Tensor | None, torch.Tensor | None, bool]:
    """Keep-mask or additive mask -> (attn_mask (B*H, Lq, Lk) | None, key_padding_mask (B, Lk) | None, is_causal)."""
    if mask is None:
        return None, None, False
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{argument}: expected a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{argument}: expected a boolean keep-mask or a floating additive mask, got dtype {mask.dtype}")
    target = (B, H, Lq, Lk)
    check_mask_shape(mask, target, argument)
    full = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B | 1, H | 1, Lq | 1, Lk | 1)
    if mask.dtype == torch.bool and full.shape[1] == 1 and full.shape[2] == 1:
        return None, ~full.expand(B, 1, 1, Lk).reshape(B, Lk), False  # (B, Lk), True = blocked
    is_causal = (
        mask.dtype == torch.bool
        and Lq == Lk
        and bool(torch.equal(full.expand(target), torch.ones(Lq, Lk, dtype=torch.bool, device=mask.device)
                             .tril().expand(target)))
    )
    full = full.expand(target).reshape(B * H, Lq, Lk)  # (B*H, Lq, Lk), row b*H + h
    return (~full if mask.dtype == torch.bool else full), None, is_causal


@contextlib.contextmanager
def float_masks_off_fast_path(*masks: torch.Tensor | None) -> Iterator[None]:
    """Turn torch's eval fast path off while a floating ``attn_mask`` is in play.

    In eval without gradients ``nn.TransformerEncoder(Layer)`` takes a fused path that turns finite
    float masks into booleans (pytorch #118628): the output is wrong, or NaN. Boolean masks are safe there.
    """
    if all(m is None or m.dtype == torch.bool for m in masks):
        yield
        return
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


class MultiHeadAttention(nn.Module):
    """``nn.MultiheadAttention`` in ``mha``; forward ``(x_q (B, Lq, D), x_kv (B, Lk, D), attn_mask) -> (B, Lq, D)``.

    Parameters live in ``mha`` under torch's names (``in_proj_weight`` packs ``[W_q; W_k; W_v]``);
    ``torch_impl.convert`` maps them to and from the flat dictionary.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        self.n_heads = n_heads
        self.mha = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_mha_inputs(tuple(x_q.shape), tuple(x_kv.shape), self.n_heads)
        B, Lq, _ = x_q.shape
        Lk = x_kv.shape[1]
        mask, key_padding_mask, is_causal = torch_masks(attn_mask, B, self.n_heads, Lq, Lk)
        if mask is not None and mask.is_floating_point():
            mask = mask.to(x_q.dtype)
        # Self-attention passes the same tensor three times: torch's fast path needs `query is key is value`.
        out, _ = self.mha(x_q, x_kv, x_kv, key_padding_mask=key_padding_mask, need_weights=False,
                          attn_mask=mask, is_causal=is_causal)  # (B, Lq, D)
        return out
