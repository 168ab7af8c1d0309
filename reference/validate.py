"""Argument checks shared by every implementation.

The checks here look only at shapes and dtype *names*, so the NumPy reference and
the torch wrappers raise the same error, word for word, for the same bad input.
Each message names the argument, what was expected and what was received.
"""

from __future__ import annotations

import math
import numbers
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


def check_gqa_heads(q_shape: Shape, k_shape: Shape, v_shape: Shape) -> int:
    """SDPA's ``enable_gqa``: q (..., H, Lq, E), k (..., Hkv, Lk, E), v (..., Hkv, Lk, Ev) with Hkv dividing H.

    Returns ``n_rep = H // Hkv``; the other dims are checked by ``check_attention_shapes`` after the repeat.
    """
    for name, shape in (("q", q_shape), ("k", k_shape), ("v", v_shape)):
        if len(shape) < 3:
            raise ValueError(f"{name}: expected (B, H, L, d_head) (at least 3 dims with enable_gqa), "
                             f"got {fmt_shape(shape)}")
    H, Hkv = q_shape[-3], k_shape[-3]
    if Hkv < 1 or H % Hkv != 0:
        raise ValueError(f"k: expected (B, Hkv, Lk, d_head) with Hkv dividing H={H} (enable_gqa), "
                         f"got {fmt_shape(k_shape)}")
    if v_shape[-3] != Hkv:
        raise ValueError(f"v: expected (B, Hkv, Lk, d_v) with Hkv={Hkv} like k (enable_gqa), got {fmt_shape(v_shape)}")
    return H // Hkv


def check_dropout_p(dropout_p: float) -> None:
    if not 0.0 <= float(dropout_p) < 1.0:
        raise ValueError(f"dropout_p: expected a probability in [0, 1), got {dropout_p}")


# ---------------------------------------------------------------------------------------------------------------
# The FlashAttention interface (reference/flash_attention.py and its torch twins). Each check takes shapes, dtype
# names and plain Python values, never an array, so NumPy and torch raise the same words for the same bad input.
# ---------------------------------------------------------------------------------------------------------------

FLASH_DTYPES = ("float32", "float64")


def _is_int(x: object) -> bool:
    """A Python or NumPy integer, not a bool (``True`` is an int to Python, never a length here)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_flash_shapes(q_shape: Shape, k_shape: Shape, v_shape: Shape, *, varlen: bool = False) -> int:
    """q (B, Lq, H, d), k (B, Lk, Hkv, d), v (B, Lk, Hkv, dv) with Hkv dividing H; varlen drops B.

    Returns the group size ``n_rep = H // Hkv`` (query heads per K/V head).
    """
    names = ("total_q, H, d", "total_k, Hkv, d", "total_k, Hkv, dv") if varlen else (
        "B, Lq, H, d", "B, Lk, Hkv, d", "B, Lk, Hkv, dv")
    ndim = 3 if varlen else 4
    for name, shape, layout in zip(("q", "k", "v"), (q_shape, k_shape, v_shape), names, strict=True):
        if len(shape) != ndim:
            raise ValueError(f"{name}: expected ({layout}) ({ndim} dims), got {fmt_shape(shape)}")
    H, d = q_shape[-2], q_shape[-1]
    batch = () if varlen else (q_shape[0],)
    k_lead, Hkv = tuple(k_shape[:-3]), k_shape[-2]
    if H < 1 or Hkv < 1 or H % Hkv != 0 or k_lead != batch or k_shape[-1] != d:
        like = "" if varlen else f", B={q_shape[0]}"
        raise ValueError(f"k: expected ({names[1]}) with Hkv dividing H={H}{like} and d={d} like q, "
                         f"got {fmt_shape(k_shape)}")
    if tuple(v_shape[:-1]) != tuple(k_shape[:-1]):
        raise ValueError(f"v: expected ({names[2]}) with the leading dims {fmt_shape(k_shape[:-1])} of k, "
                         f"got {fmt_shape(v_shape)}")
    return H // Hkv


def check_flash_dtypes(q_dtype: str, k_dtype: str, v_dtype: str, allowed: Sequence[str] = FLASH_DTYPES) -> None:
    """One floating dtype for q, k, v, among ``allowed`` (dtype names without a library prefix)."""
    if q_dtype not in allowed:
        raise TypeError(f"q: expected dtype {' or '.join(allowed)}, got {q_dtype}")
    if not q_dtype == k_dtype == v_dtype:
        raise TypeError(f"q, k, v: expected one dtype, got q {q_dtype}, k {k_dtype}, v {v_dtype}")


def check_window_size(window_size: object) -> tuple[int, int]:
    """(left, right), each an int >= -1 (-1 = unbounded); returns them as Python ints."""
    if not isinstance(window_size, (tuple, list)) or len(window_size) != 2 or not all(
        _is_int(w) and int(w) >= -1 for w in window_size
    ):
        raise ValueError(f"window_size: expected a pair (left, right) of ints >= -1 (-1 = unbounded), "
                         f"got {window_size!r}")
    return int(window_size[0]), int(window_size[1])


def check_softcap(softcap: object) -> float:
    """A finite float >= 0 (0 = no softcap); returns it as a Python float."""
    if isinstance(softcap, bool) or not isinstance(softcap, numbers.Real):
        raise TypeError(f"softcap: expected a finite float >= 0 (0 = off), got {type(softcap).__name__}")
    value = float(softcap)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"softcap: expected a finite float >= 0 (0 = off), got {softcap!r}")
    return value


def check_softmax_scale(softmax_scale: object) -> None:
    """None (1/sqrt(d)) or a finite float."""
    if softmax_scale is None:
        return
    if isinstance(softmax_scale, bool) or not isinstance(softmax_scale, numbers.Real):
        raise TypeError(f"softmax_scale: expected a finite float or None, got {type(softmax_scale).__name__}")
    if not math.isfinite(float(softmax_scale)):
        raise ValueError(f"softmax_scale: expected a finite float or None, got {softmax_scale!r}")


def check_alibi_slopes(slopes_shape: Shape, all_finite: bool, dtype: str, batch: int, n_heads: int) -> None:
    """ALiBi slopes of shape (H,) or (B, H) (varlen: B = number of sequences), floating and finite."""
    if tuple(slopes_shape) not in ((n_heads,), (batch, n_heads)):
        raise ValueError(f"alibi_slopes: expected shape ({n_heads},) or ({batch}, {n_heads}) (H,) or (B, H), "
                         f"got {fmt_shape(slopes_shape)}")
    if not dtype.startswith(("float", "bfloat")):
        raise TypeError(f"alibi_slopes: expected a floating dtype, got {dtype}")
    if not all_finite:
        raise ValueError("alibi_slopes: expected finite slopes, got NaN or inf")


def check_cu_seqlens(name: str, dtype: str, shape: Shape, values: Sequence[int], total: int) -> None:
    """cu_seqlens (N+1,) of an int dtype: starts at 0, non-decreasing, ends at the tensor's ``total`` length."""
    if not dtype.startswith(("int", "uint")):
        raise TypeError(f"{name}: expected an int32 (integer) array, got dtype {dtype}")
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"{name}: expected a 1-D array (N+1,) of offsets, got shape {fmt_shape(shape)}")
    if values[0] != 0:
        raise ValueError(f"{name}: expected offsets starting at 0, got {values[0]}")
    for n in range(len(values) - 1):
        if values[n + 1] < values[n]:
            raise ValueError(f"{name}: expected non-decreasing offsets, got {values[n]} then {values[n + 1]} "
                             f"at index {n + 1}")
    if values[-1] != total:
        raise ValueError(f"{name}: expected the last offset to equal the packed length {total}, got {values[-1]}")


def check_cu_seqlens_pair(n_q: int, n_k: int) -> None:
    """cu_seqlens_q and cu_seqlens_k describe the same number of sequences."""
    if n_q != n_k:
        raise ValueError(f"cu_seqlens_k: expected {n_q} offsets like cu_seqlens_q (one per sequence + 1), "
                         f"got {n_k}")


def check_block_size(block_size: object) -> None:
    """None (dense) or an int >= 1 (the tile size of the tiled algorithm)."""
    if block_size is None:
        return
    if not _is_int(block_size):
        raise TypeError(f"block_size: expected an int >= 1 or None (dense), got {type(block_size).__name__}")
    if int(block_size) < 1:  # type: ignore[call-overload]
        raise ValueError(f"block_size: expected an int >= 1 or None (dense), got {block_size}")
