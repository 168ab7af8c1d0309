"""Argument checks shared by every implementation.

The checks here look only at shapes and dtype *names*, so the NumPy reference and
the torch wrappers raise the same error, word for word, for the same bad input.
Each message names the argument, what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence

Shape = Sequence[int]


def fmt_shape(shape: Shape) -> str:
    """(2, 4, 10, 32) -- always with parentheses, also for one dimension."""
    dims = tuple(int(s) for s in shape)
    return "(" + ", ".join(str(s) for s in dims) + ("," if len(dims) == 1 else "") + ")"


def is_broadcastable(shape: Shape, target: Shape) -> bool:
    """True if `shape` broadcasts to `target` without changing `target` (NumPy rules)."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(tuple(shape)), reversed(tuple(target)), strict=False))


def check_attention_shapes(
    q_shape: Shape, k_shape: Shape, v_shape: Shape, mask_shape: Shape | None = None
) -> None:
    """q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev), mask broadcastable to (..., Lq, Lk).

    The leading dims (B, H, ...) of q, k and v must be equal: no implicit broadcast of
    batch or heads, because a kernel that silently broadcasts usually hides a bug upstream.
    """
    for name, shape in (("q", q_shape), ("k", k_shape), ("v", v_shape)):
        if len(shape) < 2:
            raise ValueError(f"{name}: expected (B, H, L, d_head) (at least 2 dims), got {fmt_shape(shape)}")
    if len(q_shape) != len(k_shape) or len(q_shape) != len(v_shape):
        raise ValueError(
            f"q, k, v: expected the same number of dims, got q {fmt_shape(q_shape)}, "
            f"k {fmt_shape(k_shape)}, v {fmt_shape(v_shape)}"
        )
    lead = tuple(q_shape[:-2])
    Lq, E = q_shape[-2], q_shape[-1]
    if tuple(k_shape[:-2]) != lead or k_shape[-1] != E:
        raise ValueError(
            f"k: expected (B, H, Lk, d_head) with leading dims {fmt_shape(lead)} and d_head={E} like q "
            f"{fmt_shape(q_shape)}, got {fmt_shape(k_shape)}"
        )
    Lk = k_shape[-2]
    if tuple(v_shape[:-2]) != lead or v_shape[-2] != Lk:
        raise ValueError(
            f"v: expected (B, H, Lk, d_v) with leading dims {fmt_shape(lead)} and Lk={Lk} like k "
            f"{fmt_shape(k_shape)}, got {fmt_shape(v_shape)}"
        )
    if mask_shape is not None:
        target = (*lead, Lq, Lk)
        if not is_broadcastable(mask_shape, target):
            raise ValueError(
                f"attn_mask: expected a shape broadcastable to (B, H, Lq, Lk) = {fmt_shape(target)}, "
                f"got {fmt_shape(mask_shape)}"
            )


def check_dropout_p(dropout_p: float) -> None:
    if not 0.0 <= float(dropout_p) < 1.0:
        raise ValueError(f"dropout_p: expected a probability in [0, 1), got {dropout_p}")
