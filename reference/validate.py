"""Argument validation shared by every implementation: the one place a caller's inputs are checked.

The checks here look only at shapes, dtype *names* and plain values (token ids through NumPy), so the
NumPy reference and the torch implementations raise the same error, word for word, for the same bad
input. Each message names the argument, what was expected and what was received.

The rule: every check of what a caller passed (shapes, dtypes, ranges, token ids, parameter dictionaries)
lives here, and a component module holds only its maths. The one exception is a check that reads a
component's own table (``reference.activations.check_activation`` looks names up in ``ACTIVATIONS``).
Checks that only tensors need (devices, torch dtypes) are ``torch_impl/validate.py``'s.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from reference.config import TransformerConfig

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
    check_real("dropout_p", dropout_p, 0.0, 1.0, open_high=True, what="a probability")


def check_real(name: str, value: object, low: float | None = None, high: float | None = None, *,
               open_low: bool = False, open_high: bool = False, what: str = "a finite number") -> float:
    """A finite real number (not a bool, not a string) in [low, high] (open ends where asked); returns it as a
    float. NaN and infinities are refused: a hyper-parameter that is not finite has no meaning here."""
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


def check_positional_inputs(x_shape: tuple[int, ...], table_shape: tuple[int, ...]) -> None:
    """x (B, L, D) with L <= max_len and D = d_model of the table: the same message in every implementation."""
    if len(x_shape) != 3:
        raise ValueError(f"x: expected (B, L, D) (batch first), got {fmt_shape(x_shape)}")
    max_len, d_model = table_shape
    if x_shape[2] != d_model:
        raise ValueError(f"x: expected (B, L, D) with D={d_model} like the table, got {fmt_shape(x_shape)}")
    if x_shape[1] > max_len:
        raise ValueError(f"x: sequence length L={x_shape[1]} exceeds the table's max_len={max_len}")


def check_param_shapes(params: Mapping[str, object], expected: Mapping[str, tuple[int, ...]], argument: str) -> None:
    """Raise ValueError naming the first missing, extra or mis-shaped key of ``params``.

    ``params`` may hold NumPy arrays or torch tensors (only ``.shape`` is read); ``argument``
    is the name the caller knows the dictionary by, e.g. ``"params"`` or ``"state_dict"``.
    """
    for key, shape in expected.items():
        if key not in params:
            raise ValueError(f"{argument}: missing key {key!r}, expected shape {fmt_shape(shape)}")
        got = tuple(params[key].shape)
        if got != tuple(shape):
            raise ValueError(f"{argument}[{key!r}]: expected shape {fmt_shape(shape)}, got {fmt_shape(got)}")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise ValueError(
            f"{argument}: unexpected key {extra[0]!r} (all extra keys: {extra}); expected {sorted(expected)}"
        )


def check_heads(d_model: int, n_heads: int) -> None:
    """d_model must split into n_heads equal heads (shared by all three implementations)."""
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1:
        raise ValueError(f"n_heads: expected a positive int, got {n_heads!r}")
    if d_model % n_heads != 0:
        raise ValueError(
            f"d_model: expected a multiple of n_heads={n_heads}, got {d_model} (d_head would be {d_model / n_heads:g})"
        )


def check_mha_inputs(x_q_shape: tuple[int, ...], x_kv_shape: tuple[int, ...], n_heads: int) -> None:
    """x_q (B, Lq, D) and x_kv (B, Lk, D) with one B and one D, D a multiple of n_heads."""
    if len(x_q_shape) != 3:
        raise ValueError(f"x_q: expected (B, Lq, d_model), got {fmt_shape(x_q_shape)}")
    B, _, D = x_q_shape
    if len(x_kv_shape) != 3 or x_kv_shape[0] != B or x_kv_shape[2] != D:
        raise ValueError(
            f"x_kv: expected (B, Lk, d_model) with B={B} and d_model={D} like x_q, got {fmt_shape(x_kv_shape)}"
        )
    check_heads(D, n_heads)


def check_mask_shape(mask: Any, target: tuple[int, ...], argument: str) -> None:
    """A mask (NumPy or torch, or None) must broadcast to ``target`` = (B, H, Lq, Lk)."""
    if mask is not None and not is_broadcastable(tuple(mask.shape), target):
        raise ValueError(
            f"{argument}: expected a shape broadcastable to (B, H, Lq, Lk) = {fmt_shape(target)}, "
            f"got {fmt_shape(tuple(mask.shape))}"
        )


def check_tokens(name: str, tokens: Any, vocab_size: int, max_len: int) -> None:
    """Token ids (B, L): integers in [0, vocab_size), 1 <= L <= max_len. Shared by all three implementations.

    ``tokens`` is anything NumPy can read (a torch tensor must be on the CPU).
    """
    shape = tuple(getattr(tokens, "shape", np.shape(tokens)))
    tokens = np.asarray(tokens)
    if not np.issubdtype(tokens.dtype, np.integer):  # bool is not an integer dtype in NumPy
        raise TypeError(f"{name}: expected integer token ids, got dtype {tokens.dtype}")
    if len(shape) != 2:
        raise ValueError(f"{name}: expected token ids of shape (B, L), got {fmt_shape(shape)}")
    batch, length = shape
    if batch == 0 or length == 0:
        raise ValueError(
            f"{name}: expected a non-empty batch of non-empty sequences (B, L >= 1), got {fmt_shape(shape)}"
        )
    if length > max_len:
        raise ValueError(f"{name}: sequence length {length} is longer than max_len={max_len}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"{name}: expected token ids in [0, {vocab_size}), got {bad}")


def check_classifier_tokens(tokens: Any, config: TransformerConfig) -> None:
    """check_tokens for the classifier, and no sequence made only of padding (its mean pooling would be 0/0)."""
    check_tokens("tokens", tokens, config.src_vocab_size, config.max_len)
    only_padding = np.all(np.asarray(tokens) == config.pad_id, axis=1)  # (B,)
    if np.any(only_padding):
        raise ValueError(
            f"tokens: sequence {int(np.argmax(only_padding))} holds only pad_id={config.pad_id}; nothing to pool"
        )


def check_linear_shapes(x_shape: tuple[int, ...], weight_shape: tuple[int, ...],
                        bias_shape: tuple[int, ...] | None) -> None:
    """x (..., in), weight (out, in), bias (out,): the same message in every implementation."""
    if len(weight_shape) != 2:
        raise ValueError(f"weight: expected (out, in), got {fmt_shape(weight_shape)}")
    n_out, n_in = weight_shape
    if len(x_shape) < 1 or x_shape[-1] != n_in:
        raise ValueError(f"x: expected (..., in) with in={n_in} like weight {fmt_shape(weight_shape)}, "
                         f"got {fmt_shape(x_shape)}")
    if bias_shape is not None and tuple(bias_shape) != (n_out,):
        raise ValueError(f"bias: expected (out,) with out={n_out} like weight {fmt_shape(weight_shape)}, "
                         f"got {fmt_shape(bias_shape)}")


def check_layer_input(x_shape: tuple[int, ...], d_model: int, argument: str) -> None:
    """An activation (B, L, d_model); shared by the scratch layers so both raise the same message."""
    if len(x_shape) != 3 or x_shape[2] != d_model:
        raise ValueError(f"{argument}: expected (B, L, d_model) with d_model={d_model}, got {fmt_shape(x_shape)}")


def check_embedding_inputs(tokens: Any, weight_shape: tuple[int, ...]) -> None:
    """tokens (B, L) integers in [0, V), weight (V, D): the same message in every implementation."""
    if len(weight_shape) != 2:
        raise ValueError(f"weight: expected (V, D), got {fmt_shape(weight_shape)}")
    if len(tokens.shape) != 2:
        raise ValueError(f"tokens: expected (B, L), got {fmt_shape(tokens.shape)}")
    if "int" not in str(tokens.dtype):
        raise TypeError(f"tokens: expected an integer dtype, got {tokens.dtype}")
    if math.prod(tokens.shape) == 0:
        raise ValueError(f"tokens: expected a non-empty (B, L), got {fmt_shape(tokens.shape)}")
    V = weight_shape[0]
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= V:
        raise ValueError(f"tokens: expected ids in [0, {V}) for a vocabulary of V={V}, got ids from {low} to {high}")


def check_loss_inputs(logits: Any, targets: Any, ignore_index: int, label_smoothing: float) -> None:
    """logits (..., V), targets (...) integers in [0, V) or ignore_index, smoothing in [0, 1]: the same message
    in every implementation."""
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets: expected the shape of logits without its last axis "
                         f"{fmt_shape(logits.shape[:-1])}, got {fmt_shape(targets.shape)}")
    if "int" not in str(targets.dtype):
        raise TypeError(f"targets: expected an integer dtype, got {targets.dtype}")
    check_label_smoothing(label_smoothing)
    if math.prod(targets.shape) == 0:
        raise ValueError(f"targets: expected at least one target, got shape {fmt_shape(targets.shape)}")
    V = logits.shape[-1]
    valid = targets[targets != ignore_index]
    if valid.shape[0] == 0:
        raise ValueError(f"targets: every target equals ignore_index={ignore_index}; the mean loss is undefined")
    low, high = int(valid.min()), int(valid.max())
    if low < 0 or high >= V:
        raise ValueError(f"targets: expected ids in [0, {V}) or ignore_index={ignore_index}, "
                         f"got ids from {low} to {high}")


def check_mse_inputs(predicted: Any, targets: Any) -> None:
    """predicted and targets of one shape, targets floating, at least one element: the same message in every
    implementation (torch's ``mse_loss`` would broadcast mismatched shapes with only a warning)."""
    if tuple(targets.shape) != tuple(predicted.shape):
        raise ValueError(f"targets: expected the shape of predicted {fmt_shape(predicted.shape)}, "
                         f"got {fmt_shape(targets.shape)}")
    if "float" not in str(targets.dtype):
        raise TypeError(f"targets: expected a floating dtype, got {targets.dtype}")
    if math.prod(predicted.shape) == 0:
        raise ValueError(f"predicted: expected at least one element, got shape {fmt_shape(predicted.shape)}")


def check_layer_norm_shapes(x_shape: tuple[int, ...], weight_shape: tuple[int, ...] | None,
                            bias_shape: tuple[int, ...] | None, eps: float) -> None:
    """x (..., D), weight (D,), bias (D,): the same message in every implementation."""
    if len(x_shape) < 1:
        raise ValueError(f"x: expected (..., D) (at least 1 dim), got {fmt_shape(x_shape)}")
    D = x_shape[-1]
    for name, shape in (("weight", weight_shape), ("bias", bias_shape)):
        if shape is not None and tuple(shape) != (D,):
            raise ValueError(f"{name}: expected (D,) with D={D} like x {fmt_shape(x_shape)}, got {fmt_shape(shape)}")
    check_eps(eps)


def check_keep(keep: Any, x_shape: tuple[int, ...], p: float) -> None:
    """keep: a boolean array of x's shape, and only when p > 0 (same message in every implementation)."""
    check_real("p", p, 0.0, 1.0, open_high=True, what="a probability")
    if keep is None:
        return
    if p == 0.0:
        raise ValueError("keep: given, but p is 0 (dropout is then the identity)")
    if str(keep.dtype) not in ("bool", "torch.bool"):
        raise TypeError(f"keep: expected a boolean keep-mask, got dtype {keep.dtype}")
    if tuple(keep.shape) != tuple(x_shape):
        raise ValueError(f"keep: expected the shape of x {fmt_shape(x_shape)}, got {fmt_shape(keep.shape)}")


def check_softmax_input(x: Any) -> None:
    """x (..., N) with N >= 1: the same message in every implementation (an empty row has no softmax)."""
    if len(x.shape) < 1 or x.shape[-1] < 1:
        raise ValueError(f"x: expected (..., N) with N >= 1 classes, got {fmt_shape(x.shape)}")
    if "float" not in str(x.dtype):
        raise TypeError(f"x: expected a floating dtype, got {x.dtype}")


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
