"""Long-context kernels of the flash interface: a correct online softmax, and bugs that only show past the normal
search's 300 keys -- caught by ``triad verify --long`` and by nothing shorter.

One kernel, FlashAttention's recurrence (running max, running sum, rescaled accumulator) over key tiles of
``KEY_TILE`` with every query at once, query chunks recomputed in the backward (``torch.utils.checkpoint``, so
memory stays O(chunk * L), not O(L^2)); causal bottom-right, GQA, the LSE. A planted kernel swaps one step:

- ``long_no_rescale_after_8_tiles``: the accumulator and the sum are not rescaled from the 9th key tile on
  (a loop peeled for 8 tiles, the rest forgetting alpha): wrong once a row sees more than 1024 keys and its
  maximum grows after them.
- ``long_float16_positions``: the causal mask compares positions held in float16, which holds every integer only
  up to 2048: past it, query ``i`` and key ``j`` round to the same or the wrong neighbour, and a row sees a key
  after it (2051 sees 2052).
- ``long_bf16_split_sums``: keys are processed in splits of 4096 with float32 inside a split, but the running sum
  and accumulator are stored in bfloat16 between splits (a split-K kernel's partials): exact below 4096 keys,
  ~2^-9 relative above.

``LONG_PLANTED`` maps each name to its kernel and the shortest length that shows the bug; every kernel is
importable as ``equivalence_tests.planted_long_kernels:NAME``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

KEY_TILE = 128
QUERY_CHUNK = 1024
SPLIT_KEYS = 4096


def _tile_step(state: tuple[torch.Tensor, torch.Tensor, torch.Tensor], scores: torch.Tensor, v_t: torch.Tensor,
               rescale: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One online-softmax step: (m, l, A) (B, H, R, 1), (B, H, R, 1), (B, H, R, dv) with scores (B, H, R, C)."""
    row_max, row_sum, acc = state
    new_max = torch.maximum(row_max, scores.amax(dim=-1, keepdim=True))  # (B, H, R, 1)
    shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))  # a row with no key yet: 0
    alpha = torch.exp(row_max - shift) if rescale else torch.ones_like(row_max)  # (B, H, R, 1)
    probs = torch.exp(scores - shift)  # (B, H, R, C)
    return new_max, alpha * row_sum + probs.sum(dim=-1, keepdim=True), alpha * acc + probs @ v_t


def _chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_row: int, offset: int, scale: float,
           causal: bool, bug: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows first_row.. of q (B, H, R, d) against k, v (B, H, Lk, .) -> (out (B, H, R, dv), lse (B, H, R))."""
    B, H, R = q.shape[:3]
    Lk = k.shape[2]
    position_dtype = torch.float16 if bug == "float16_positions" else torch.int64
    anchors = (torch.arange(R, device=q.device) + first_row + offset).to(position_dtype)  # (R,): i + Lk - Lq
    keys = torch.arange(Lk, device=q.device).to(position_dtype)  # (Lk,)
    state = (q.new_full((B, H, R, 1), float("-inf")), q.new_zeros((B, H, R, 1)), q.new_zeros((B, H, R, v.shape[-1])))
    for tile, c0 in enumerate(range(0, Lk, KEY_TILE)):
        c1 = min(Lk, c0 + KEY_TILE)
        if bug == "bf16_split_sums" and c0 > 0 and c0 % SPLIT_KEYS == 0:  # the partials stored between splits
            state = (state[0], state[1].bfloat16().to(q.dtype), state[2].bfloat16().to(q.dtype))
        scores = (scale * q) @ k[:, :, c0:c1].transpose(-1, -2)  # (B, H, R, C)
        if causal:
            scores = scores.masked_fill(keys[None, c0:c1] > anchors[:, None], float("-inf"))  # (B, H, R, C)
        state = _tile_step(state, scores, v[:, :, c0:c1], not (bug == "no_rescale_after_8_tiles" and tile >= 8))
    row_max, row_sum, acc = state
    seen = row_sum > 0  # (B, H, R, 1)
    out = acc / torch.where(seen, row_sum, torch.ones_like(row_sum))  # (B, H, R, dv); 0 on an empty row
    lse = torch.where(seen, row_max + torch.log(torch.where(seen, row_sum, torch.ones_like(row_sum))),
                      torch.full_like(row_max, float("-inf")))  # (B, H, R, 1)
    return out, lse[..., 0]


def long_kernel(name: str, bug: str = "") -> Callable[..., Any]:
    """A ``flash_attn_func``-style kernel (no window, softcap or ALiBi keyword: those are not drawn for it)."""
    def kernel(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False,  # type: ignore[no-untyped-def]
               deterministic=False, return_attn_probs=False):
        if dropout_p > 0.0:
            raise NotImplementedError(f"{name}: no dropout")
        n_rep = q.shape[2] // k.shape[2]
        scale = 1.0 / math.sqrt(q.shape[-1]) if softmax_scale is None else float(softmax_scale)
        q_heads = q.transpose(1, 2)  # (B, H, Lq, d)
        k_heads, v_heads = (x.transpose(1, 2).repeat_interleave(n_rep, dim=1) for x in (k, v))  # (B, H, Lk, .)
        Lq, Lk = q.shape[1], k.shape[1]
        parts = [checkpoint(_chunk, q_heads[:, :, r0:r0 + QUERY_CHUNK], k_heads, v_heads, r0, Lk - Lq, scale, causal,
                            bug, use_reentrant=False) for r0 in range(0, Lq, QUERY_CHUNK)]
        if not parts:
            out, lse = q_heads.new_zeros((*q_heads.shape[:3], v.shape[-1])), q_heads.new_zeros(q_heads.shape[:3])
        else:
            out, lse = torch.cat([p[0] for p in parts], dim=2), torch.cat([p[1] for p in parts], dim=2)
        out = out.transpose(1, 2)  # (B, Lq, H, dv)
        return (out, lse.float().detach()) if return_attn_probs else out

    kernel.__name__ = kernel.__qualname__ = name
    return kernel


long_online_correct = long_kernel("long_online_correct")
# name -> (kernel, the shortest length that shows the bug)
LONG_PLANTED: dict[str, tuple[Callable[..., Any], int]] = {
    "long_no_rescale_after_8_tiles": (long_kernel("long_no_rescale_after_8_tiles", "no_rescale_after_8_tiles"), 2048),
    "long_float16_positions": (long_kernel("long_float16_positions", "float16_positions"), 4096),
    "long_bf16_split_sums": (long_kernel("long_bf16_split_sums", "bf16_split_sums"), 4608),
}
globals().update({name: kernel for name, (kernel, _) in LONG_PLANTED.items()})
