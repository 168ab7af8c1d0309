"""One case of ``flash_attn_with_kvcache``: call the kernel by keyword, check its cache update, map it to varlen.

The kernel is called with FlashAttention's keyword names; a keyword its signature lacks is left out (and a case
that needs it declined). Its outputs are mapped to the equivalent varlen case's layouts (``to_varlen``) so that
the varlen oracle, the rule and the LSE check of ``triad.verify.flash_judge`` judge them unchanged.

**The cache update** is its own check: after the call, ``k_cache``/``v_cache`` must equal the caches given with
the new ``k``/``v`` written, bit for bit, at logical positions ``cache_seqlens[b] ...`` through the block table,
and nothing else in them changed; q, k, v, cache_seqlens and block_table must be unmodified.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from torch_impl.kernels import TORCH_DTYPES
from triad.tolerance import EPS_BY_DTYPE
from triad.verify.flash_judge import kernel_keywords
from triad.verify.judge import (
    AUTOGRAD_LINE,
    MUTATION_LINE,
    RAISES_LINE,
    SHAPE_LINE,
    CheckResult,
    Kernel,
    KernelDeclinedError,
    KernelProblemError,
)
from triad.verify.kvcache_cases import KvcacheCase
from triad.verify.support import is_declined

CACHE_LINE = "cache update: new k/v at cache_seqlens (through the block table), nothing else touched"
INPUTS = ("q", "k", "v", "cache_seqlens", "block_table")
# the keyword each family feature needs (GQA needs none)
KVCACHE_FEATURE_KEYWORDS = {"window": "window_size", "softcap": "softcap", "alibi": "alibi_slopes",
                            "lse": "return_softmax_lse"}
_DEFAULTS = {"k": None, "v": None, "block_table": None, "softmax_scale": None, "causal": False,
             "window_size": (-1, -1), "softcap": 0.0, "alibi_slopes": None, "return_softmax_lse": False}


@dataclasses.dataclass
class KvcacheRun:
    """One call's outputs (float64, kernel layouts: out (B, Lq, H, dv), lse (B, H, Lq), dq), the caches after it,
    and whether the output carried no gradient (a forward-only kernel)."""

    result: dict[str, np.ndarray]
    k_cache: np.ndarray
    v_cache: np.ndarray
    forward_only: bool


def case_inputs(case: KvcacheCase, arrays: dict[str, Any]) -> dict[str, Any]:
    """The arrays and options of one call of the case."""
    names = ("q", "k_cache", "v_cache", "k", "v", "cache_seqlens", "block_table", "alibi_slopes", "dout")
    return {n: arrays[n] for n in names} | {"softmax_scale": case.scale, "causal": case.causal,
                                           "window_size": case.window, "softcap": case.softcap}


def _tensor(x: np.ndarray | None, dtype: torch.dtype, device: str) -> torch.Tensor | None:
    return None if x is None else torch.tensor(np.ascontiguousarray(x), dtype=dtype, device=device)


def _arguments(inputs: dict[str, Any], dtype: str, device: str, want_lse: bool,
               names: set[str] | None) -> dict[str, Any]:
    """The keyword arguments (q with no gradient yet), only those the kernel takes or the case needs."""
    floating = TORCH_DTYPES[dtype]
    args: dict[str, Any] = {n: _tensor(inputs[n], floating, device) for n in ("q", "k_cache", "v_cache", "k", "v")}
    args |= {n: _tensor(inputs[n], torch.int32, device) for n in ("cache_seqlens", "block_table")}
    args["alibi_slopes"] = _tensor(inputs["alibi_slopes"], torch.float32, device)  # (H,)
    args |= {n: inputs[n] for n in ("softmax_scale", "causal", "window_size", "softcap")}
    args["return_softmax_lse"] = want_lse
    for name in [n for n in args if names is not None and n not in names]:
        if name not in _DEFAULTS or not (args[name] is _DEFAULTS[name] or args[name] == _DEFAULTS[name]):
            raise KernelDeclinedError(f"the kernel takes no {name!r} keyword, which this case needs")
        del args[name]
    return args


def _call(kernel: Kernel, args: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(out, lse or None); raises KernelProblemError or KernelDeclinedError."""
    try:
        result = kernel(**args)
    except (Exception, SystemExit) as exc:  # whatever the kernel raises is the kernel's verdict
        if is_declined(exc):
            raise KernelDeclinedError(f"{type(exc).__name__}: {str(exc).strip()[:200]}") from exc
        raise KernelProblemError(RAISES_LINE, f"raised {type(exc).__name__}: {str(exc).strip()[:300]}") from exc
    if isinstance(result, tuple | list):  # (out, lse), or FlashAttention 3's (out, lse, out_accum, lse_accum)
        return result[0], result[1] if len(result) > 1 else None
    return result, None


def _check_shapes(out: Any, lse: Any, q: torch.Tensor, dv: int) -> None:
    B, Lq, H, _ = q.shape
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (B, Lq, H, dv) or out.dtype != q.dtype:
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise KernelProblemError(SHAPE_LINE, f"output: expected shape {(B, Lq, H, dv)} and dtype {q.dtype}, got {got}")
    if lse is not None and (not isinstance(lse, torch.Tensor) or tuple(lse.shape) != (B, H, Lq)):
        got = tuple(lse.shape) if isinstance(lse, torch.Tensor) else type(lse).__name__
        raise KernelProblemError(SHAPE_LINE, f"lse: expected shape {(B, H, Lq)}, got {got}")


def run_kvcache_kernel(kernel: Kernel, inputs: dict[str, Any], dtype: str, device: str, backward: bool,
                       want_lse: bool) -> KvcacheRun:
    """Call the kernel once on fresh copies of ``inputs``; dq when ``backward`` and the output carries a gradient."""
    args = _arguments(inputs, dtype, device, want_lse, kernel_keywords(kernel))
    args["q"].requires_grad_(backward)
    before = {n: args[n].detach().clone() for n in INPUTS if args.get(n) is not None}
    out, lse = _call(kernel, args)
    _check_shapes(out, lse, args["q"], inputs["v_cache"].shape[-1])
    changed = [n for n, b in before.items() if not torch.equal(args[n].detach(), b)]
    if changed:
        raise KernelProblemError(MUTATION_LINE, f"{', '.join(changed)} modified in place by the call")
    result = {"out": out.detach().cpu().double().numpy()}
    if lse is not None:
        result["lse"] = lse.detach().cpu().double().numpy()
        lse_dtype = next((n for n, t in TORCH_DTYPES.items() if t == lse.dtype), dtype)
        result["lse_eps"] = np.array(max(EPS_BY_DTYPE[dtype], EPS_BY_DTYPE[lse_dtype]))
    caches = [args[n].detach().cpu().double().numpy() for n in ("k_cache", "v_cache")]  # as the call left them
    forward_only = not (backward and out.requires_grad)
    if not forward_only:
        try:
            out.backward(torch.tensor(inputs["dout"], dtype=out.dtype, device=out.device))
        except (Exception, SystemExit) as exc:
            raise KernelProblemError(AUTOGRAD_LINE, f"backward raised {type(exc).__name__}: {str(exc)[:300]}") from exc
        grad = args["q"].grad
        result["dq"] = np.zeros(args["q"].shape) if grad is None else grad.detach().cpu().double().numpy()
    return KvcacheRun(result, caches[0], caches[1], forward_only)


def cache_rows(shape: tuple[int, ...], table: np.ndarray | None, b: int, positions: np.ndarray) -> np.ndarray:
    """Rows of the flattened cache (slots, Hkv, d) holding element b's logical ``positions`` (as
    ``torch_impl.flash_kernels.cache_slots``, here for the judge's NumPy copies)."""
    page = shape[1]
    if table is None:
        return b * page + positions
    return table[b].astype(np.int64)[positions // page] * page + positions % page


def updated_caches(case: KvcacheCase, inputs: dict[str, Any], table: np.ndarray | None,
                   offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The caches after the new k/v are written at cache_seqlens[b] + ``offset`` ... through ``table``."""
    caches = [inputs[n].copy() for n in ("k_cache", "v_cache")]
    rows = [c.reshape(-1, *c.shape[2:]) for c in caches]  # (slots, Hkv, d) views
    capacity = (table.shape[1] if table is not None else 1) * caches[0].shape[1]
    for b, cached in enumerate(case.cache_seqlens):
        positions = cached + offset + np.arange(case.Lnew)  # (Lnew,)
        keep = (positions >= 0) & (positions < capacity)
        for flat, new in zip(rows, (inputs["k"], inputs["v"]), strict=True):
            if new is not None:
                flat[cache_rows(caches[0].shape, table, b, positions[keep])] = new[b][keep]
    return caches[0], caches[1]


def cache_update_check(case: KvcacheCase, inputs: dict[str, Any], run: KvcacheRun) -> CheckResult:
    """The caches after the call against the caches given with the new k/v written, bit for bit."""
    wanted = updated_caches(case, inputs, inputs["block_table"])
    problems = []
    for name, after, expected, before in (("k_cache", run.k_cache, wanted[0], inputs["k_cache"]),
                                          ("v_cache", run.v_cache, wanted[1], inputs["v_cache"])):
        wrong = np.any(after != expected, axis=(-2, -1)).reshape(-1)  # (slots,)
        written = np.any(expected != before, axis=(-2, -1)).reshape(-1)  # (slots,): the appended rows
        if np.any(wrong & written):
            problems.append(f"{name}: {int(np.sum(wrong & written))} of the {int(np.sum(written))} appended rows "
                            "not written with the new values")
        if np.any(wrong & ~written):
            problems.append(f"{name}: {int(np.sum(wrong & ~written))} other rows changed (first at flattened row "
                            f"{int(np.argmax(wrong & ~written))})")
    return CheckResult(CACHE_LINE, not problems, message="; ".join(problems))


def to_varlen(case: KvcacheCase, result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The kernel's outputs in the equivalent varlen case's layouts: out/dq (B Lq, H, .), lse (H, B Lq)."""
    mapped = {n: x.reshape(case.B * case.Lq, *x.shape[2:]) for n, x in result.items() if n in ("out", "dq")}
    if "lse" in result:
        mapped["lse"] = np.swapaxes(result["lse"], 0, 1).reshape(case.H, case.B * case.Lq)
        mapped["lse_eps"] = result["lse_eps"]
    return mapped
