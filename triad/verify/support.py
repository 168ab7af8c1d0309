"""What a kernel says it supports, so that the verifier skips (and reports) what it cannot run.

A kernel declares its support with an attribute::

    def my_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None): ...
    my_attention.triad_support = KernelSupport(dtypes=("float16", "bfloat16"), max_head_dim=128,
                                               masks=("is_causal",))

or the caller passes ``supports=`` to ``verify_attention``. Without either, a kernel is assumed
to support everything SDPA does. A kernel may also decline one case at run time by raising
``NotImplementedError``; PyTorch's pinned SDPA backends decline with a ``RuntimeError`` whose
message starts with ``No available kernel`` (for example flash on CPU when ``d_v != d_head``) or,
in torch 2.13 when the backend does not exist on the device at all, ``No viable backend``.
Both are counted as skipped, not failed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from torch_impl.flash_kernels import FLASH_BUILTINS
from torch_impl.kernels import BUILTIN_FEATURES, BUILTIN_KERNELS, FEATURES, FLASH_KERNELS

DTYPES = ("float64", "float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")
# "bool": a boolean keep-mask; "additive": a float mask added to the scores; "is_causal": SDPA's flag.
MASKS = ("is_causal", "bool", "additive")


@dataclass(frozen=True)
class KernelSupport:
    dtypes: tuple[str, ...] = DTYPES
    devices: tuple[str, ...] = DEVICES
    min_head_dim: int = 1
    max_head_dim: int = 256
    masks: tuple[str, ...] = MASKS
    fully_masked_rows: bool = True  # rows whose keys are all masked: output 0 and gradient 0 (SDPA's rule)
    different_value_dim: bool = True  # d_v != d_head
    different_lengths: bool = True  # Lq != Lk
    scale: bool = True  # a scale override instead of 1/sqrt(d_head)
    non_contiguous: bool = True  # strided inputs such as the transposed views a head split produces
    backward: bool = True  # gradients through autograd
    dropout: bool = True  # dropout_p > 0 (checked statistically: see triad.verify.dropout)
    max_length: int | None = None  # longest Lq, Lk drawn (None: any); for a kernel that is slow where it runs
    # The attention family's features (torch_impl.kernels.FEATURES) it has; opt-in: through SDPA's signature
    # only "gqa" can be asked for, as enable_gqa=True, which a kernel must then accept.
    features: tuple[str, ...] = ()
    # FlashAttention's interfaces (``--interface flash|varlen``), where an empty ``features`` means all of them
    # (less any whose keyword the kernel's signature lacks): the H / Hkv ratios taken (MQA is Hkv = 1 with
    # any of them) and the LSE's convention under causal ALiBi: "definition" (log sum exp of the biased
    # scores) or "fa2" (FlashAttention 2 biases by +slope*j there, which shifts the LSE by
    # slope * (i + Lk - Lq) and leaves the output unchanged).
    gqa_ratios: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    alibi_lse: str = "definition"
    # ``--interface kvcache``: the page sizes of a paged cache it takes (a contiguous cache is always drawn;
    # () = contiguous only). FlashAttention 2 takes multiples of 256 only: ``page_sizes=(256,)``.
    page_sizes: tuple[int, ...] = (1, 16, 256)

    def __post_init__(self) -> None:
        for name, values, allowed in (("dtypes", self.dtypes, DTYPES), ("devices", self.devices, DEVICES),
                                      ("masks", self.masks, MASKS), ("features", self.features, FEATURES)):
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"{name}: expected a subset of {allowed}, got unknown {unknown}")
        if self.alibi_lse not in ("definition", "fa2"):
            raise ValueError(f"alibi_lse: expected 'definition' or 'fa2', got {self.alibi_lse!r}")
        if not 1 <= self.min_head_dim <= self.max_head_dim:
            raise ValueError(
                f"min_head_dim, max_head_dim: expected 1 <= min <= max, got {self.min_head_dim}, {self.max_head_dim}"
            )
        if any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in self.page_sizes):
            raise ValueError(f"page_sizes: expected positive ints, got {self.page_sizes!r}")
        if self.max_length is not None and self.max_length < 17:
            raise ValueError(f"max_length: expected None or at least 17 (a tail tile), got {self.max_length}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Without a GPU, Triton's interpreter runs every tile of our kernel in Python: lengths up to 65 keep
# `triad verify triton` within minutes (65 = two 32-row tiles and a tail of one). Without CUDA and without
# the interpreter the kernel declines every case itself, saying why.
INTERPRETER_ONLY = not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") == "1"
TRITON_INTERPRETER_MAX_LENGTH = 65 if INTERPRETER_ONLY else None

# The NumPy reference runs on the CPU in float32/float64 only; FlexAttention has no dropout (and declines a
# backward on the CPU at run time); everything else runs whatever SDPA runs (a pinned backend declines the
# rest at run time). Each built-in's features come from the registry.
BUILTIN_SUPPORT: dict[str, KernelSupport] = {
    name: KernelSupport(features=BUILTIN_FEATURES[name]) for name in BUILTIN_KERNELS
} | {
    "reference": KernelSupport(dtypes=("float64", "float32"), devices=("cpu",), features=BUILTIN_FEATURES["reference"]),
    "flex": KernelSupport(dropout=False, features=BUILTIN_FEATURES["flex"]),
    # Our Triton kernel: no attn_mask, no dropout, no float64; on the CPU it runs under the interpreter
    # only (and declines otherwise), at lengths up to 65 there (the interpreter runs every tile in Python).
    "triton": KernelSupport(dtypes=("float32", "float16", "bfloat16"), masks=("is_causal",), dropout=False,
                            max_length=TRITON_INTERPRETER_MAX_LENGTH, features=BUILTIN_FEATURES["triton"]),
}


# FlashAttention's interfaces: no built-in has dropout there; FlexAttention has no backward on the CPU.
FLASH_BUILTIN_SUPPORT: dict[str, KernelSupport] = {
    name: KernelSupport(dropout=False, backward=fk.backward_on_cpu) for name, fk in FLASH_KERNELS.items()
} | {"reference": KernelSupport(dtypes=("float64", "float32"), devices=("cpu",), dropout=False)}


def declared_support(kernel: Any, supports: KernelSupport | None = None) -> KernelSupport:
    """``supports`` if given, else the kernel's ``triad_support`` attribute, else a built-in's entry, else all."""
    if supports is not None:
        return supports
    declared = getattr(kernel, "triad_support", None)
    if isinstance(declared, KernelSupport):
        return declared
    if declared is not None:
        raise TypeError(f"triad_support: expected a KernelSupport, got {type(declared).__name__}")
    for name, builtin in BUILTIN_KERNELS.items():
        if builtin is kernel and name in BUILTIN_SUPPORT:
            return BUILTIN_SUPPORT[name]
    for builtins in FLASH_BUILTINS.values():
        for name, builtin in builtins.items():
            if builtin is kernel:
                return FLASH_BUILTIN_SUPPORT[name]
    return KernelSupport()


def is_declined(exc: BaseException) -> bool:
    """True when an exception means "this kernel does not run this case", not "this kernel is wrong"."""
    if isinstance(exc, NotImplementedError):
        return True
    return isinstance(exc, RuntimeError) and str(exc).startswith(("No available kernel", "No viable backend"))
