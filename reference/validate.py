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
    if E < 1:
        raise ValueError(f"q: expected d_head >= 1 (the default scale is 1/sqrt(d_head)), got {fmt_shape(q_shape)}")
    Lk = k_shape[-2]
    if Lk < 1:
        raise ValueError(f"k: expected at least one key (Lk >= 1): with none, softmax has nothing to normalise; "
                         f"got {fmt_shape(k_shape)}")
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
    check_real("dropout_p", dropout_p, 0.0, 1.0, open_high=True, what="a probability")


def check_real(name: str, value: object, low: float | None = None, high: float | None = None, *,
               open_low: bool = False, open_high: bool = False, what: str = "a finite number") -> float:
    """A finite real number (not a bool, not a string) in [low, high] (open ends where asked); returns it as a
    float. NaN and infinities are refused: a hyper-parameter that is not finite has no meaning here."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    below = low is not None and (number <= low if open_low else number < low)
    above = high is not None and (number >= high if open_high else number > high)
    if number != number or number in (float("inf"), float("-inf")) or below or above:
        raise ValueError(f"{name}: expected {what}{_interval(low, high, open_low, open_high)}, got {value!r}")
    return number


def _interval(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    """' in [0, 1)', ' > 0', ' <= 2' or ''."""
    if low is not None and high is not None:
        return f" in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if low is not None:
        return f" {'>' if open_low else '>='} {low:g}"
    return "" if high is None else f" {'<' if open_high else '<='} {high:g}"


def check_scale(scale: object) -> None:
    """The attention ``scale``: None (1/sqrt(d_head)) or a finite real number, in every implementation."""
    if scale is not None:
        check_real("scale", scale)


def check_eps(eps: object) -> None:
    """A layer norm's ``eps``: a finite number > 0 (eps = inf would turn every output into 0)."""
    check_real("eps", eps, 0.0, open_low=True)


def check_label_smoothing(label_smoothing: object) -> None:
    """Label smoothing: a finite number in [0, 1] (torch's ``F.cross_entropy`` takes -0.1 and NaN as 0)."""
    check_real("label_smoothing", label_smoothing, 0.0, 1.0)
