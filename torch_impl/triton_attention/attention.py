"""Host side: argument checks, launches, the autograd Function and the two entry points.

``triton_sdpa`` has ``F.scaled_dot_product_attention``'s interface, q ``(B, H, Lq, d)``, top-left
``is_causal``; ``triton_flash_attention`` has FlashAttention's, q ``(B, Lq, H, d)``, bottom-right
``causal``, ``window_size``, ``softcap``, ``return_lse``. Both reach one ``TritonAttention``
Function, which works on ``(B, H, L, d)`` views with any strides (the FlashAttention layout is such
a view, so nothing is copied unless the last dim is strided).
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

import torch
import triton

from torch_impl.triton_attention import configs
from torch_impl.triton_attention.kernels import (
    attention_backward_dkdv_kernel,
    attention_backward_dq_kernel,
    attention_backward_preprocess_kernel,
    attention_forward_kernel,
)

# Whether these programs run under Triton's interpreter: decided when they were decorated, i.e. by
# TRITON_INTERPRET=1 in the environment before this module was first imported.
INTERPRETED = type(attention_forward_kernel).__name__ == "InterpretedFunction"
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256
NOT_INTERPRETED = ("triton: CPU tensors run only under Triton's interpreter, which is off: set TRITON_INTERPRET=1 "
                   "in the environment before the process starts (it must be set before the kernels are imported)")


class ScoreSpec(TypedDict):
    """What turns Q Kᵀ into the scores: S = scale · Q Kᵀ, softcapped when softcap > 0, key j visible to
    query i iff i + diag − left <= j <= i + diag + right (left/right −1: unbounded). SDPA's top-left
    ``is_causal`` is diag = 0, right = 0; FlashAttention's bottom-right ``causal`` is diag = Lk − Lq, right = 0."""

    scale: float
    softcap: float
    diag: int
    left: int
    right: int


_KERNELS = {"forward": attention_forward_kernel, "dkdv": attention_backward_dkdv_kernel,
            "dq": attention_backward_dq_kernel}


def check_runnable(q: torch.Tensor, head_dims: tuple[int, ...]) -> None:
    """NotImplementedError (a declined case, not a wrong one) for what this kernel does not run."""
    if q.device.type == "cpu" and not INTERPRETED:
        raise NotImplementedError(NOT_INTERPRETED)
    if q.device.type not in ("cpu", "cuda"):
        raise NotImplementedError(f"triton: runs on CUDA (or the CPU under the interpreter), got device {q.device}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise NotImplementedError(f"triton: dtype {q.dtype} is not supported: expected float16, bfloat16 or float32 "
                                  "(float64 is not: the kernel accumulates in float32)")
    if max(head_dims) > MAX_HEAD_DIM:
        raise NotImplementedError(f"triton: head dims up to {MAX_HEAD_DIM} are supported, got {max(head_dims)}")


def _pad(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _new_like(x: torch.Tensor, last: int) -> torch.Tensor:
    """An empty (B, H, L, last) tensor laid out like ``x``: (B, L, H, ·) memory if ``x`` is such a view."""
    B, H, L, _ = x.shape
    if x.stride(1) < x.stride(2):  # a transposed view of (B, L, H, d)
        return x.new_empty(B, L, H, last).transpose(1, 2)
    return x.new_empty(B, H, L, last)


def _constexprs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: ScoreSpec) -> dict[str, Any]:
    """The compile-time arguments every program shares."""
    upcast = INTERPRETED and q.dtype == torch.bfloat16  # the interpreter's bf16 tl.dot is wrong (Triton 3.9)
    return {"HEAD_DIM_QK": q.shape[-1], "HEAD_DIM_V": v.shape[-1], "PAD_QK": _pad(q.shape[-1]),
            "PAD_V": _pad(v.shape[-1]), "HAS_LEFT": spec["left"] >= 0, "HAS_RIGHT": spec["right"] >= 0,
            "HAS_SOFTCAP": spec["softcap"] > 0, "UPCAST_DOT": upcast,
            "DOT_PRECISION": "ieee" if q.dtype == torch.float32 else "tf32"}


def _launch(program: str, grid: Any, args: tuple[Any, ...], meta: dict[str, Any], dtype: torch.dtype) -> None:
    """Run one program with the interpreter's config, the autotuner, or the committed table's entry."""
    if configs.AUTOTUNE and not INTERPRETED:
        configs.autotuned(_KERNELS[program], program)[grid](*args, **meta)
        return
    block_m, block_n, warps, stages = configs.INTERPRETER_CONFIG if INTERPRETED else \
        configs.committed_config(program, dtype, max(meta["PAD_QK"], meta["PAD_V"]))
    _KERNELS[program][grid(dict(BLOCK_M=block_m, BLOCK_N=block_n))](
        *args, **meta, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps, num_stages=stages)


def _spec_args(spec: ScoreSpec) -> tuple[Any, ...]:
    return spec["scale"], spec["softcap"], spec["diag"], spec["left"], spec["right"]


def _strides(*tensors: torch.Tensor) -> tuple[int, ...]:
    """(batch, head, sequence) strides of each (B, H, L, d) tensor, in order."""
    return tuple(s for x in tensors for s in x.stride()[:3])


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      spec: ScoreSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, H, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, d_v) -> out (B, H, Lq, d_v), lse (B, H, Lq) float32."""
    B, H, Lq, _ = q.shape
    Lk = k.shape[2]
    out = _new_like(q, v.shape[-1])  # (B, H, Lq, d_v)
    lse = torch.empty(B, H, Lq, device=q.device, dtype=torch.float32)  # (B, H, Lq)
    if Lq == 0 or Lk == 0 or B * H == 0:
        return out.zero_(), lse.fill_(float("-inf"))
    args = (q, k, v, out, lse, *_strides(q, k, v, out), H, H // k.shape[1], Lq, Lk, *_spec_args(spec))
    _launch("forward", lambda meta: (triton.cdiv(Lq, meta["BLOCK_M"]), B * H), args,
            _constexprs(q, k, v, spec), q.dtype)
    return out, lse


def attention_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                       lse: torch.Tensor, spec: ScoreSpec) -> tuple[torch.Tensor, ...]:
    """dout (B, H, Lq, d_v) -> dq (B, H, Lq, d), dk (B, Hkv, Lk, d), dv (B, Hkv, Lk, d_v)."""
    B, H, Lq, _ = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    dq, dk, dv = _new_like(q, q.shape[-1]), _new_like(k, k.shape[-1]), _new_like(v, v.shape[-1])
    if Lq == 0 or Lk == 0 or B * H == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    meta = _constexprs(q, k, v, spec)
    delta = torch.empty(B, H, Lq, device=q.device, dtype=torch.float32)  # (B, H, Lq) D = rowsum(dO ∘ O)
    block = configs.INTERPRETER_CONFIG[0] if INTERPRETED else 64
    attention_backward_preprocess_kernel[(triton.cdiv(Lq, block), B * H)](
        out, dout, delta, *_strides(out, dout), H, Lq, HEAD_DIM_V=meta["HEAD_DIM_V"], PAD_V=meta["PAD_V"],
        BLOCK_M=block)
    inputs, input_strides = (q, k, v, dout, lse, delta), _strides(q, k, v, dout)
    sizes = (H, H // Hkv, Lq, Lk, *_spec_args(spec))
    _launch("dkdv", lambda m: (triton.cdiv(Lk, m["BLOCK_N"]), B * Hkv),
            (*inputs, dk, dv, *input_strides, *_strides(dk, dv), *sizes), meta, q.dtype)
    _launch("dq", lambda m: (triton.cdiv(Lq, m["BLOCK_M"]), B * H),
            (*inputs, dq, *input_strides, *_strides(dq), *sizes), meta, q.dtype)
    return dq, dk, dv


class TritonAttention(torch.autograd.Function):
    """(q, k, v, spec) -> (out, lse); lse is not differentiable (as in FlashAttention)."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,  # type: ignore[override]
                spec: ScoreSpec) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = (_last_dim_contiguous(x) for x in (q, k, v))
        out, lse = attention_forward(q, k, v, spec)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.spec = spec
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor, _dlse: torch.Tensor | None):  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward(_last_dim_contiguous(dout), q, k, v, out, lse, ctx.spec)
        return dq, dk, dv, None


def _check_tensors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str) -> None:
    """q, k, v: tensors of one dtype and device, 4-d in ``layout`` ('BHLd' or 'BLHd'), K/V heads dividing H."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name}: expected a 4-d tensor {layout}, got shape {tuple(x.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v: expected one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError(f"q, k, v: expected one device, got q {q.device}, k {k.device}, v {v.device}")
    head, length = (1, 2) if layout == "BHLd" else (2, 1)
    B, H, E, Hkv, Lk = q.shape[0], q.shape[head], q.shape[3], k.shape[head], k.shape[length]
    expected_k = (B, Hkv, Lk, E) if layout == "BHLd" else (B, Lk, Hkv, E)
    if tuple(k.shape) != expected_k:
        raise ValueError(f"k: expected {layout} {expected_k} (batch {B} and head dim {E} like q), got {tuple(k.shape)}")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v: expected {tuple(k.shape[:3])} + (d_v,) like k, got {tuple(v.shape)}")
    if Hkv == 0 or H % Hkv:
        raise ValueError(f"k, v: expected a number of heads dividing q's {H}, got {Hkv}")


def triton_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention``'s interface: q (B, H, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, d_v)
    -> (B, H, Lq, d_v); ``is_causal`` top-left (key j visible to query i iff j <= i); ``enable_gqa`` lets
    Hkv divide H. ``attn_mask`` and dropout are declined (``NotImplementedError``)."""
    if attn_mask is not None:
        raise NotImplementedError("triton: attn_mask is not supported (is_causal, windows and softcap are, "
                                  "through triton_flash_attention)")
    if dropout_p != 0.0:
        raise NotImplementedError(f"triton: dropout is not supported, got dropout_p={dropout_p}")
    _check_tensors(q, k, v, "BHLd")
    if k.shape[1] != q.shape[1] and not enable_gqa:
        raise ValueError(f"k, v: expected {q.shape[1]} heads like q (or enable_gqa=True), got {k.shape[1]}")
    check_runnable(q, (q.shape[-1], v.shape[-1]))
    spec: ScoreSpec = {"scale": 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale), "softcap": 0.0,
                       "diag": 0, "left": -1, "right": 0 if is_causal else -1}
    out, _ = TritonAttention.apply(q, k, v, spec)
    return out


def _check_flash_options(window_size: Any, softcap: Any) -> None:
    if (not isinstance(window_size, (tuple, list)) or len(window_size) != 2
            or not all(isinstance(w, int) and not isinstance(w, bool) and w >= -1 for w in window_size)):
        raise ValueError(f"window_size: expected a pair of ints >= -1 (left, right), got {window_size!r}")
    if not isinstance(softcap, (int, float)) or not math.isfinite(softcap) or softcap < 0:
        raise ValueError(f"softcap: expected a finite number >= 0, got {softcap!r}")


def triton_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
                           causal: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
                           return_lse: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention's interface: q (B, Lq, H, d), k (B, Lk, Hkv, d), v (B, Lk, Hkv, d_v) -> out (B, Lq, H, d_v)
    and, with ``return_lse``, lse (B, H, Lq) float32 (natural log; −inf for a row that sees no key).

    Key j is visible to query i iff ``i + Lk − Lq − left <= j <= i + Lk − Lq + right`` (−1: unbounded);
    ``causal`` sets right = 0 (bottom-right aligned). ``softcap > 0``: S ← softcap · tanh(S / softcap)."""
    _check_tensors(q, k, v, "BLHd")
    _check_flash_options(window_size, softcap)
    check_runnable(q, (q.shape[-1], v.shape[-1]))
    left, right = window_size
    spec: ScoreSpec = {"scale": 1.0 / math.sqrt(q.shape[-1]) if softmax_scale is None else float(softmax_scale),
                       "softcap": float(softcap), "diag": k.shape[1] - q.shape[1], "left": left,
                       "right": 0 if causal else right}
    out, lse = TritonAttention.apply(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), spec)
    out = out.transpose(1, 2)  # (B, Lq, H, d_v)
    return (out, lse) if return_lse else out
