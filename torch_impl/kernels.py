"""The attention-kernel registry: a name -> a callable with ``F.scaled_dot_product_attention``'s signature.

``kernel(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None) -> out``

Built-in names:

==================  =====================================================================
``reference``       the NumPy reference behind a ``torch.autograd.Function`` (CPU, float32/64)
``scratch``         ``torch_impl.scratch``: plain tensor ops, autograd backward
``native``          ``F.scaled_dot_product_attention``, PyTorch picks the backend
``sdpa-math``       SDPA pinned to one backend with ``sdpa_kernel`` (``math``, ``flash``,
``sdpa-flash``      ``efficient``, ``cudnn``); a case the backend cannot run raises
``sdpa-efficient``  ``RuntimeError`` instead of silently falling back
``sdpa-cudnn``
``triton``          our FlashAttention-2 kernel in Triton (``torch_impl.triton_attention``): needs the
                    ``[triton]`` extra; CUDA, or the CPU under ``TRITON_INTERPRET=1``; no ``attn_mask``
``flex``            FlexAttention (``torch.nn.attention.flex_attention``, eager): masks as a
                    ``mask_mod``/``score_mod``; no dropout, and no backward on the CPU (both
                    refused with ``NotImplementedError``, a declined case)
==================  =====================================================================

Every built-in takes ``enable_gqa=True`` (k, v with ``Hkv`` heads dividing ``H``, as SDPA since torch 2.5;
the ``native``/``sdpa-*`` kernels refuse it on older torch). ``BUILTIN_FEATURES`` records which of the
attention family's features (``FEATURES``) each built-in supports; ``FLASH_KERNELS`` names the built-ins of
FlashAttention's interface (``(q, k, v, *, softmax_scale, causal, window_size, softcap, alibi_slopes) ->
(out, lse)`` and its varlen twin), which support all of them.

Anything else is read as ``package.module:function`` (``:Class.method`` works too) and imported.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference.attention import attention_backward, attention_forward
from reference.flash_attention import (
    flash_attention_backward,
    flash_attention_forward,
    flash_attention_varlen_backward,
    flash_attention_varlen_forward,
)
from torch_impl.native import flash_attention as native_flash
from torch_impl.native import flex_attention as native_flex
from torch_impl.native.attention import BACKENDS, SDPA_HAS_GQA
from torch_impl.native.attention import scaled_dot_product_attention as native_sdpa
from torch_impl.scratch import flash_attention as scratch_flash
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from torch_impl.validate import check_attention_inputs, check_dense_scores_fit, check_flash_call

Kernel = Callable[..., torch.Tensor]
# The dtypes kernels are verified and timed in, by the names the command line uses.
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
                "bfloat16": torch.bfloat16}


# The attention family's features: grouped-query K/V heads, a sliding window, softcap, ALiBi, packed sequences
# (varlen), the log-sum-exp returned. Through SDPA's signature only GQA (enable_gqa) can be asked for.
FEATURES = ("gqa", "window", "softcap", "alibi", "varlen", "lse")


class KernelNotFoundError(ValueError):
    """A kernel name that is neither built in nor an importable ``package.module:function``."""


class _ReferenceAttention(torch.autograd.Function):
    """The NumPy forward and hand-written backward, seen from torch (CPU tensors only)."""

    @staticmethod
    def forward(ctx: Any, q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa):  # type: ignore[override]
        def to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
            return None if t is None else t.detach().cpu().numpy()

        out, cache = attention_forward(
            to_numpy(q), to_numpy(k), to_numpy(v), to_numpy(attn_mask), dropout_p, is_causal, scale,
            rng=np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item())) if dropout_p > 0 else None,
            enable_gqa=enable_gqa,
        )
        ctx.cache = cache
        return torch.from_numpy(out).to(q.device)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor):  # type: ignore[override]
        dq, dk, dv = attention_backward(dout.detach().cpu().numpy(), ctx.cache)
        return torch.from_numpy(dq), torch.from_numpy(dk), torch.from_numpy(dv), None, None, None, None, None


def reference_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """The NumPy reference as an SDPA-shaped torch kernel (CPU; float32 or float64)."""
    check_attention_inputs(q, k, v, attn_mask, dropout_p, scale, enable_gqa=enable_gqa)
    if q.device.type != "cpu":
        raise ValueError(f"q: the NumPy reference runs on the CPU only, got device {q.device}")
    return _ReferenceAttention.apply(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)


class _ReferenceFlash(torch.autograd.Function):
    """The NumPy FlashAttention interface and its hand-written backward, seen from torch (CPU tensors only).
    The LSE is an output, not differentiable (as in FlashAttention)."""

    @staticmethod
    def forward(ctx: Any, q, k, v, cu_seqlens_q, cu_seqlens_k, options):  # type: ignore[override]
        arrays = [t.detach().cpu().numpy() for t in (q, k, v)]
        if cu_seqlens_q is None:
            out, lse, ctx.cache = flash_attention_forward(*arrays, **options)
        else:
            out, lse, ctx.cache = flash_attention_varlen_forward(*arrays, cu_seqlens_q.cpu().numpy(),
                                                                 cu_seqlens_k.cpu().numpy(), **options)
        ctx.varlen = cu_seqlens_q is not None
        lse_t = torch.from_numpy(lse)
        ctx.mark_non_differentiable(lse_t)
        return torch.from_numpy(out), lse_t

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor, _dlse: torch.Tensor):  # type: ignore[override]
        backward = flash_attention_varlen_backward if ctx.varlen else flash_attention_backward
        dq, dk, dv = backward(dout.detach().cpu().numpy(), ctx.cache)
        return torch.from_numpy(dq), torch.from_numpy(dk), torch.from_numpy(dv), None, None, None


def reference_flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None, max_seqlen_q: int | None = None, max_seqlen_k: int | None = None,
    *, softmax_scale: float | None = None, causal: bool = False, window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0, alibi_slopes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The NumPy reference of FlashAttention's interface as a torch kernel (CPU; float32 or float64): dense, or
    packed when ``cu_seqlens_q/k`` are given (``FLASH_KERNELS["reference"]`` names both)."""
    cu_seqlens = None if cu_seqlens_q is None else (cu_seqlens_q, cu_seqlens_k)
    check_flash_call(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size, softcap=softcap,
                     alibi_slopes=alibi_slopes, cu_seqlens=cu_seqlens, max_seqlens=(max_seqlen_q, max_seqlen_k))
    if q.device.type != "cpu":
        raise ValueError(f"q: the NumPy reference runs on the CPU only, got device {q.device}")
    if cu_seqlens is None:
        check_dense_scores_fit("reference (dense NumPy)", q.shape[0], q.shape[2], q.shape[1], k.shape[1])
    options = {"softmax_scale": softmax_scale, "causal": causal, "window_size": window_size, "softcap": softcap,
               "alibi_slopes": None if alibi_slopes is None else alibi_slopes.detach().cpu().numpy()}
    return _ReferenceFlash.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, options)


def _pinned(backend: str) -> Kernel:
    def kernel(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, *,  # type: ignore[no-untyped-def]
               enable_gqa=False):
        return native_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale, backend=backend, enable_gqa=enable_gqa)

    kernel.__name__ = kernel.__qualname__ = f"sdpa_{backend}"
    kernel.__doc__ = f"F.scaled_dot_product_attention pinned to the {backend!r} backend."
    return kernel


TRITON_MISSING = "triton: needs the [triton] extra: pip install 'transformer-triad[triton]'"


def triton_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``torch_impl.triton_attention.triton_sdpa``, imported at the first call: Triton reads
    ``TRITON_INTERPRET`` when the kernels are defined, so importing them with the registry would fix it."""
    from torch_impl.triton_attention import triton_sdpa as kernel

    return kernel(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)


BUILTIN_KERNELS: dict[str, Kernel] = {
    "reference": reference_sdpa,
    "scratch": scratch_sdpa,
    "native": native_sdpa,
    **{f"sdpa-{name}": _pinned(name) for name in BACKENDS},
    "flex": native_flex.flex_sdpa,
}
_SDPA_GQA = ("gqa",) if SDPA_HAS_GQA else ()
BUILTIN_FEATURES: dict[str, tuple[str, ...]] = {
    "reference": ("gqa",),
    "scratch": ("gqa",),
    "native": _SDPA_GQA,
    **{f"sdpa-{name}": _SDPA_GQA for name in BACKENDS},  # a backend that cannot run a GQA case declines it
    "flex": ("gqa",),
}


@dataclass(frozen=True)
class FlashKernel:
    """One implementation of FlashAttention's interface: ``dense(q, k, v, **options) -> (out, lse)`` with
    q (B, Lq, H, d), and ``varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **options)``
    with q (total_q, H, d); ``features`` a subset of ``FEATURES``. On the CPU, ``backward_on_cpu=False``
    means no call has a backward, and ``forward_only_on_cpu`` names the features whose calls have none
    (such a call with inputs that require grad raises ``NotImplementedError``)."""

    dense: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    varlen: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    features: tuple[str, ...] = FEATURES
    backward_on_cpu: bool = True
    forward_only_on_cpu: tuple[str, ...] = ()


FLASH_KERNELS: dict[str, FlashKernel] = {
    "reference": FlashKernel(reference_flash_attention, reference_flash_attention),
    "scratch": FlashKernel(scratch_flash.flash_attention, scratch_flash.flash_attention_varlen),
    # native: SDPA with masks, FlexAttention for softcap (no backward on the CPU) and for the LSE
    "native": FlashKernel(native_flash.flash_attention, native_flash.flash_attention_varlen,
                          forward_only_on_cpu=("softcap",)),
    "flex": FlashKernel(native_flex.flex_flash_attention, native_flex.flex_flash_attention_varlen,
                        backward_on_cpu=False),
}
if importlib.util.find_spec("triton") is not None:  # absent without the [triton] extra; resolve_kernel says so
    BUILTIN_KERNELS["triton"] = triton_sdpa
    # GQA through enable_gqa; windows, softcap and the LSE through torch_impl.triton_attention.triton_flash_attention
    BUILTIN_FEATURES["triton"] = ("gqa", "window", "softcap", "lse")


def resolve_kernel(spec: str | Kernel) -> Kernel:
    """A built-in name, ``package.module:function``, or a callable (returned as is)."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise KernelNotFoundError(f"kernel: expected a name or 'package.module:function', got {spec!r}")
    if spec in BUILTIN_KERNELS:
        return BUILTIN_KERNELS[spec]
    if spec == "triton":
        raise KernelNotFoundError(TRITON_MISSING)
    if ":" not in spec:
        raise KernelNotFoundError(
            f"kernel: {spec!r} is not a built-in kernel ({', '.join(BUILTIN_KERNELS)}) "
            "and not of the form 'package.module:function'"
        )
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # any import-time failure (sys.exit too) is the user's module's
        raise KernelNotFoundError(f"kernel: cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise KernelNotFoundError(f"kernel: module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise KernelNotFoundError(f"kernel: {spec!r} is a {type(obj).__name__}, not a callable")
    return obj
