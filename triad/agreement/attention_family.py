"""``triad check`` for today's attention family: GQA, window, softcap, ALiBi, varlen and the tiled reference.

Each row runs one fixed case of FlashAttention's interface through the float64 reference
(``reference.flash_attention``) and through scratch or native, comparing out, the LSE, dq, dk and dv.
Native softcap needs FlexAttention's ``score_mod``, which has no backward on the CPU: there its row
compares out and the LSE only and says so in its name (the gradients of that case are compared
reference vs scratch). ``tiled`` compares the reference's tiled algorithm (``block_size``) with its
dense one, and scratch with the tiled one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reference.attention import attention_forward
from reference.flash_attention import (
    flash_attention_backward,
    flash_attention_forward,
    flash_attention_varlen_backward,
    flash_attention_varlen_forward,
)
from reference.masks import effective_window, sequence_ids, varlen_anchors, varlen_mask, window_mask
from reference.score_mods import alibi_bias, alibi_row_bias, alibi_slopes_geometric
from torch_impl.native.flash_attention import flash_attention as native_flash
from torch_impl.native.flash_attention import flash_attention_varlen as native_flash_varlen
from torch_impl.scratch.flash_attention import flash_attention as scratch_flash
from torch_impl.scratch.flash_attention import flash_attention_varlen as scratch_flash_varlen
from triad.agreement.base import ComponentResult, compare
from triad.tolerance import F64_REL_BOUND, attention_magnitudes

FLASH_TENSORS = ("out", "lse", "dq", "dk", "dv")


@dataclass
class FlashProblem:
    """NumPy inputs of one call of FlashAttention's interface: q (B, Lq, H, d), k/v (B, Lk, Hkv, d|dv),
    dout like out; packed (``cu_seqlens`` given): q (total_q, H, d), k/v (total_k, Hkv, .)."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    dout: np.ndarray
    kwargs: dict[str, Any] = field(default_factory=dict)  # softmax_scale, causal, window_size, softcap, alibi_slopes
    cu_seqlens: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def varlen(self) -> bool:
        return self.cu_seqlens is not None


def reference_flash(problem: FlashProblem, dtype: type = np.float64,
                    block_size: int | None = None) -> dict[str, np.ndarray]:
    """out, lse, dq, dk, dv of the NumPy reference in ``dtype`` (dense, or tiled with ``block_size``)."""
    q, k, v, dout = (x.astype(dtype) for x in (problem.q, problem.k, problem.v, problem.dout))
    if problem.varlen:
        out, lse, cache = flash_attention_varlen_forward(q, k, v, *problem.cu_seqlens, **problem.kwargs,
                                                         block_size=block_size)
        grads = flash_attention_varlen_backward(dout, cache)
    else:
        out, lse, cache = flash_attention_forward(q, k, v, **problem.kwargs, block_size=block_size)
        grads = flash_attention_backward(dout, cache)
    return dict(zip(FLASH_TENSORS, (out, lse, *grads), strict=True))


def run_flash(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]], problem: FlashProblem, dtype: torch.dtype,
              device: str = "cpu", grads: bool = True) -> dict[str, np.ndarray]:
    """Run a torch implementation of the interface; out and lse, and (``grads``) dq, dk, dv, as float64.

    A gradient autograd leaves as None (no path from the output) is a zero gradient.
    """
    q, k, v = (torch.tensor(x, dtype=dtype, device=device, requires_grad=grads) for x in
               (problem.q, problem.k, problem.v))
    kwargs = {name: torch.tensor(value, dtype=dtype, device=device) if isinstance(value, np.ndarray) else value
              for name, value in problem.kwargs.items()}
    offsets = () if not problem.varlen else tuple(torch.tensor(cu, device=device) for cu in problem.cu_seqlens)
    out, lse = fn(q, k, v, *offsets, **kwargs)
    results = {"out": out, "lse": lse}
    if grads:
        out.backward(torch.tensor(problem.dout, dtype=dtype, device=device))
        results.update({name: torch.zeros_like(x) if x.grad is None else x.grad
                        for name, x in (("dq", q), ("dk", k), ("dv", v))})
    return {name: t.detach().cpu().double().numpy() for name, t in results.items()}


def _sdpa_equivalent(problem: FlashProblem) -> tuple[np.ndarray, ...]:
    """The problem as SDPA-style reference attention (q (B, H, Lq, d), K/V repeated, window and ALiBi as one
    additive mask), softcap left out: (q, k, v, mask, dout) for the magnitudes of the tolerance module."""
    kw = problem.kwargs
    n_rep = problem.q.shape[-2] // problem.k.shape[-2]
    if problem.varlen:
        q, k, v, dout = (x.transpose(1, 0, 2)[None] for x in (problem.q, problem.k, problem.v, problem.dout))
        cu_q, cu_k = (cu.astype(np.int64) for cu in problem.cu_seqlens)
        keep = varlen_mask(cu_q, cu_k, causal=kw.get("causal", False), window_size=kw.get("window_size", (-1, -1)))
        bias = 0.0
        if kw.get("alibi_slopes") is not None:
            slopes = np.asarray(kw["alibi_slopes"]).reshape(-1, q.shape[1])  # (1 or N, H)
            per_query = slopes[sequence_ids(cu_q)] if slopes.shape[0] > 1 else np.broadcast_to(
                slopes, (q.shape[2], q.shape[1]))  # (total_q, H)
            bias = alibi_row_bias(per_query.T[None], varlen_anchors(cu_q, cu_k), np.arange(k.shape[2]))
    else:
        q, k, v, dout = (x.transpose(0, 2, 1, 3) for x in (problem.q, problem.k, problem.v, problem.dout))
        left, right = effective_window(kw.get("causal", False), kw.get("window_size", (-1, -1)))
        keep = window_mask(q.shape[2], k.shape[2], left, right)  # (Lq, Lk)
        slopes = kw.get("alibi_slopes")
        bias = 0.0 if slopes is None else alibi_bias(np.asarray(slopes), q.shape[2], k.shape[2])
    mask = np.where(keep, bias, -np.inf)  # (1 or B, 1 or H, Lq, Lk)
    k, v = (np.repeat(x, n_rep, axis=1) for x in (k, v))  # (B, H, Lk, .)
    return q, k, v, mask, dout


def flash_magnitudes(problem: FlashProblem) -> dict[str, float]:
    """The scales mu of out, dq, dk, dv (``triad.tolerance.attention_magnitudes`` on the SDPA-style
    equivalent; dk and dv times the group size, as a K/V head sums its group) and of the LSE
    (max |S| + 1). Softcap, left out there, only shrinks the scores, so these scales stay valid."""
    q, k, v, mask, dout = _sdpa_equivalent(problem)
    if k.shape[-2] == 0:  # no key at all (empty sequences only): every output and gradient is exactly 0
        tensors = ("out", "dq", "dk", "dv")
        terms = (*tensors, "logits", "logit_magnitude", *(f"{t}_{kind}" for t in tensors
                                                          for kind in ("underflow", "reduction")))
        return dict.fromkeys(terms, 0.0) | {"lse": 1.0}
    scale = problem.kwargs.get("softmax_scale")
    _, cache = attention_forward(q, k, v, mask, scale=scale)
    magnitudes = attention_magnitudes(dout, cache)
    n_rep = problem.q.shape[-2] // problem.k.shape[-2]
    magnitudes["dk"] *= n_rep
    magnitudes["dv"] *= n_rep
    magnitudes["lse"] = magnitudes["logits"] + 1.0
    return magnitudes


def comparable_lse(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``actual`` with its LSE made comparable: where both are -inf (empty rows) both become 0; an LSE that is
    -inf where the other is not stays, and the comparison reports an infinite error."""
    lse, ref = actual["lse"], expected["lse"]
    if lse.shape != ref.shape or not np.array_equal(np.isneginf(lse), np.isneginf(ref)):
        return actual
    return {**actual, "lse": np.where(np.isneginf(lse), 0.0, lse)}


def compare_flash(name: str, implementations: str, actual: dict[str, np.ndarray],
                  expected: dict[str, np.ndarray], magnitudes: dict[str, float]) -> ComponentResult:
    """One float64 row: the tensors ``actual`` holds (out and lse at least) against ``expected``."""
    actual = comparable_lse(actual, expected)
    finite_expected = {**expected, "lse": np.where(np.isneginf(expected["lse"]), 0.0, expected["lse"])}
    return compare(name, implementations, "float64", actual, {n: finite_expected[n] for n in actual},
                   F64_REL_BOUND, magnitudes)


def family_problems(seed: int = 0) -> dict[str, FlashProblem]:
    """One fixed case per feature: B=2, Lq=11, Lk=14 (Lq != Lk), d=12, dv=10, H=6; packed: 4 sequences,
    one of them empty and one of length 1."""
    rng = np.random.default_rng(seed)

    def dense(n_kv: int, **kwargs: Any) -> FlashProblem:
        return FlashProblem(rng.standard_normal((2, 11, 6, 12)), rng.standard_normal((2, 14, n_kv, 12)),
                            rng.standard_normal((2, 14, n_kv, 10)), rng.standard_normal((2, 11, 6, 10)), kwargs)

    lengths_q, lengths_k = np.array([3, 0, 1, 5]), np.array([4, 2, 1, 3])
    cu = tuple(np.concatenate([[0], np.cumsum(n)]).astype(np.int32) for n in (lengths_q, lengths_k))
    varlen = FlashProblem(rng.standard_normal((9, 6, 12)), rng.standard_normal((10, 2, 12)),
                          rng.standard_normal((10, 2, 10)), rng.standard_normal((9, 6, 10)),
                          {"causal": True, "alibi_slopes": alibi_slopes_geometric(6)}, cu)
    return {
        "gqa": dense(2),
        "mqa": dense(1, causal=True),
        "window": dense(3, window_size=(4, 2)),
        "softcap": dense(2, softcap=2.5, causal=True),
        "alibi": dense(2, alibi_slopes=rng.random((2, 6)), window_size=(5, -1)),
        "varlen": varlen,
    }


def check_attention_family() -> list[ComponentResult]:
    results = []
    for feature, problem in family_problems().items():
        name = f"attention {feature}"
        oracle = reference_flash(problem)
        magnitudes = flash_magnitudes(problem)
        scratch_fn, native_fn = (scratch_flash_varlen, native_flash_varlen) if problem.varlen else (
            scratch_flash, native_flash)
        results.append(compare_flash(name, "scratch vs reference", run_flash(scratch_fn, problem, torch.float64),
                                     oracle, magnitudes))
        if problem.kwargs.get("softcap", 0.0) > 0.0:  # FlexAttention: no backward on the CPU
            native = run_flash(native_fn, problem, torch.float64, grads=False)
            results.append(compare_flash(name, "native vs reference, fwd (cpu)", native,
                                         oracle, magnitudes))
        else:
            results.append(compare_flash(name, "native vs reference", run_flash(native_fn, problem, torch.float64),
                                         oracle, magnitudes))
    results.extend(check_tiled())
    return results


def check_tiled() -> list[ComponentResult]:
    """The tiled reference (tiles of 4 on the causal GQA case, so rows span several key tiles, some skipped)
    against the dense reference, and scratch against the tiled reference."""
    problem = family_problems()["alibi"]
    problem.kwargs = {**problem.kwargs, "causal": True, "softcap": 5.0}
    dense, tiled = reference_flash(problem), reference_flash(problem, block_size=4)
    magnitudes = flash_magnitudes(problem)
    return [compare_flash("attention tiled", "tiled vs dense", tiled, dense, magnitudes),
            compare_flash("attention tiled", "scratch vs reference tiled",
                          run_flash(scratch_flash, problem, torch.float64), tiled, magnitudes)]
