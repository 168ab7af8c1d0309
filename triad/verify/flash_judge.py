r"""One case of FlashAttention's interface: run the kernel and the baseline, compare with the float64 oracle.

The kernel is called **by keyword** with FlashAttention's names (positional orders differ between its
versions); a keyword the kernel's signature lacks is left out, and a case that needs it is not drawn.
The oracle is ``reference.flash_attention`` in float64 (dense); the baseline is
``torch_impl.scratch.flash_attention`` in the kernel's dtype. out, dq, dk, dv are judged by the rule of
``triad.verify.judge`` (worst element per row, and mean), with its terms for this interface:

- **magnitudes** :math:`\mu` from the reference's probabilities in grouped-row layout (so ``dk``, ``dv``
  of a K/V head sum over its query heads, as the kernel's do).
- **softcap**: :math:`c\tanh(x/c)` has derivative :math:`\le 1`, so a logit's rounding error
  :math:`u\,s|q||k|` passes through it undiminished at worst, and the tanh and the product by :math:`c`
  round once more at the capped value: the per-row logit scale is :math:`s|q_i||k_j| + |c\tanh(S_{ij}/c)|`.
  In the backward :math:`dS \circ (1 - \tanh^2)` has a factor :math:`\le 1`, which :math:`\mu` leaves out
  (an upper bound); its own rounding errs by at most :math:`2u\,|dS|`, inside the floor's two units.
- **ALiBi**: the bias adds to the logits the kernel rounds, so the per-row scale adds :math:`|m_h\,(a_i - j)|`
  (the biased logits).
- **LSE** (whenever the kernel returns one): absolute, per row,
  :math:`|\Delta| \le 2\,\mathrm{err}_\text{baseline} + u\,(2 + 4\,\text{row scale}) + u_\text{acc}\sqrt{L_k}`;
  an empty row's LSE may be :math:`+\infty` or :math:`-\infty`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference.flash_attention import (
    flash_attention_backward,
    flash_attention_forward,
    flash_attention_varlen_backward,
    flash_attention_varlen_forward,
    lse_from_rows,
    tile_scores,
    to_rows,
)
from reference.score_mods import softcap_forward
from torch_impl.kernels import TORCH_DTYPES
from triad.tolerance import (
    ACCUMULATOR_EPS_BY_DTYPE,
    EPS_BY_DTYPE,
    KERNEL_LOGIT_FLOOR_FACTOR,
    LSE_BASE_CHANGE_ROUNDINGS,
    attention_magnitudes,
    max_abs_err,
)
from triad.verify.flash_cases import FlashCase
from triad.verify.judge import (
    AUTOGRAD_LINE,
    MUTATION_LINE,
    RAISES_LINE,
    SHAPE_LINE,
    CaseOutcome,
    CheckResult,
    Kernel,
    KernelDeclinedError,
    KernelProblemError,
    rowwise_rule_check,
)
from triad.verify.support import is_declined

FLASH_OPTIONS = ("dropout_p", "softmax_scale", "causal", "window_size", "softcap", "alibi_slopes",
                 "deterministic", "return_attn_probs")
VARLEN_ARGS = ("cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k")
# the keyword a feature needs (GQA needs none: fewer K/V heads than query heads)
FEATURE_KEYWORDS = {"window": "window_size", "softcap": "softcap", "alibi": "alibi_slopes", "lse": "return_attn_probs"}
LSE_LINE = "lse"


def kernel_keywords(kernel: Kernel) -> set[str] | None:
    """The keyword names the kernel takes (None: it takes ``**kwargs``, or Python cannot tell)."""
    try:
        params = inspect.signature(kernel).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in named}


def infer_interface(kernel: Kernel) -> str:
    """``kvcache`` if the signature has ``k_cache``, ``varlen`` if it has ``cu_seqlens_q``, ``flash`` if it has
    FlashAttention's option names, else ``sdpa``."""
    names = kernel_keywords(kernel) or set()
    if "k_cache" in names:
        return "kvcache"
    if "cu_seqlens_q" in names:
        return "varlen"
    if names & {"softmax_scale", "window_size", "causal", "softcap", "alibi_slopes", "return_attn_probs"}:
        return "flash"
    return "sdpa"


def flash_signature_problem(kernel: Kernel, interface: str) -> str:
    """Why the kernel cannot be called through the interface, or ""."""
    names = kernel_keywords(kernel)
    if names is None:
        return ""
    needed = {"q", "k_cache", "v_cache", "cache_seqlens"} if interface == "kvcache" else (
        {"q", "k", "v"} | (set(VARLEN_ARGS) if interface == "varlen" else set()))
    missing = sorted(needed - names)
    if missing:
        return (f"kernel: expected the {interface} interface's keywords {sorted(needed)}, "
                f"got {inspect.signature(kernel)}: missing {missing}")
    return ""


def signature_features(kernel: Kernel, features: tuple[str, ...]) -> tuple[str, ...]:
    """``features`` less those whose keyword the kernel does not take."""
    names = kernel_keywords(kernel)
    return tuple(f for f in features if names is None or FEATURE_KEYWORDS.get(f) is None
                 or FEATURE_KEYWORDS[f] in names)


@dataclass
class FlashOutcome(CaseOutcome):
    """A case's checks, the kernel's outputs (for the diagnoses) and the diagnosis, if one fits."""

    actual: dict[str, np.ndarray] | None = None
    diagnosis: str = ""

    def summary(self, verbose: bool = True) -> str:
        text = super().summary(verbose)
        return f"{text}\n  diagnosis: {self.diagnosis}" if self.diagnosis else text


def _tensor(x: np.ndarray, dtype: str, device: str, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(x), dtype=TORCH_DTYPES[dtype], device=device).requires_grad_(requires_grad)


def flash_call_arguments(case: FlashCase, arrays: dict[str, Any], device: str, want_lse: bool,
                         names: set[str] | None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of one call (without q, k, v), only those the kernel takes or the case needs."""
    args: dict[str, Any] = {"dropout_p": 0.0, "softmax_scale": case.scale, "causal": case.causal,
                            "window_size": case.window, "softcap": case.softcap, "alibi_slopes": None,
                            "deterministic": False, "return_attn_probs": want_lse}
    if arrays["alibi_slopes"] is not None:
        args["alibi_slopes"] = torch.tensor(arrays["alibi_slopes"], dtype=torch.float32, device=device)  # (H,)
    if case.interface == "varlen":
        args["cu_seqlens_q"] = torch.tensor(arrays["cu_seqlens_q"], dtype=torch.int32, device=device)  # (N+1,)
        args["cu_seqlens_k"] = torch.tensor(arrays["cu_seqlens_k"], dtype=torch.int32, device=device)  # (N+1,)
        args["max_seqlen_q"], args["max_seqlen_k"] = case.Lq, case.Lk  # the true maxima
    args |= overrides
    defaults = {"dropout_p": 0.0, "softmax_scale": None, "causal": False, "window_size": (-1, -1), "softcap": 0.0,
                "alibi_slopes": None, "deterministic": False, "return_attn_probs": False}
    if names is None:
        return args
    for name in list(args):
        if name not in names:
            if name in defaults and args[name] is not defaults[name] and args[name] != defaults[name]:
                raise KernelDeclinedError(f"the kernel takes no {name!r} keyword, which this case needs")
            del args[name]
    return args


def call_flash_kernel(kernel: Kernel, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, args: dict[str, Any],
                      lse_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(out, lse or None) of one call; raises KernelProblemError or KernelDeclinedError."""
    try:
        result = kernel(q=q, k=k, v=v, **args)
    except (Exception, SystemExit) as exc:  # whatever the kernel raises is the kernel's verdict
        if is_declined(exc):
            raise KernelDeclinedError(f"{type(exc).__name__}: {str(exc).strip()[:200]}") from exc
        raise KernelProblemError(RAISES_LINE, f"raised {type(exc).__name__}: {str(exc).strip()[:300]}") from exc
    if isinstance(result, tuple | list):  # (out, lse, ...) when return_attn_probs
        out, lse = result[0], result[1] if len(result) > 1 else None
    else:
        out, lse = result, None
    expected = (*q.shape[:-1], v.shape[-1])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected or out.dtype != q.dtype:
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise KernelProblemError(SHAPE_LINE, f"output: expected shape {expected} and dtype {q.dtype}, got {got}")
    if lse is not None and (not isinstance(lse, torch.Tensor) or tuple(lse.shape) != lse_shape):
        got = tuple(lse.shape) if isinstance(lse, torch.Tensor) else type(lse).__name__
        raise KernelProblemError(SHAPE_LINE, f"lse: expected shape {lse_shape}, got {got}")
    return out, lse


def dtype_of_eps(eps: float) -> str:
    """The dtype name whose machine epsilon is ``eps`` (float16's for float16, though bfloat16's differs)."""
    return next(name for name, e in EPS_BY_DTYPE.items() if e == eps)


def lse_shape(case: FlashCase) -> tuple[int, ...]:
    return (case.B, case.H, case.Lq) if case.interface == "flash" else (case.H, sum(case.seqlens_q))


def run_flash_kernel(kernel: Kernel, case: FlashCase, arrays: dict[str, Any], dtype: str, device: str,
                     backward: bool, want_lse: bool, **overrides: Any) -> dict[str, np.ndarray]:
    """out, lse (when returned) and dq, dk, dv (when ``backward``) as float64 arrays in the kernel's layouts."""
    q, k, v = (_tensor(arrays[n], dtype, device, backward) for n in ("q", "k", "v"))
    args = flash_call_arguments(case, arrays, device, want_lse, kernel_keywords(kernel), **overrides)
    before = [t.detach().clone() for t in (q, k, v)]
    out, lse = call_flash_kernel(kernel, q, k, v, args, lse_shape(case))
    if any(not torch.equal(t.detach(), b) for t, b in zip((q, k, v), before, strict=True)):
        raise KernelProblemError(MUTATION_LINE, "q, k or v was modified in place by the forward")
    result = {"out": out.detach().cpu().double().numpy()}
    if lse is not None:
        result["lse"] = lse.detach().cpu().double().numpy()
        # FlashAttention returns the LSE in float32 whatever the inputs: it is judged at its own dtype's rounding
        # when that is coarser than the inputs'
        lse_dtype = next((n for n, t in TORCH_DTYPES.items() if t == lse.dtype), dtype)
        result["lse_eps"] = np.array(max(EPS_BY_DTYPE[dtype], EPS_BY_DTYPE[lse_dtype]))
    if not backward:
        return result
    if not out.requires_grad:
        raise KernelProblemError(AUTOGRAD_LINE, "output does not require grad: no gradient flows back to q, k, v")
    try:
        out.backward(_tensor(arrays["dout"], dtype, device))
    except (Exception, SystemExit) as exc:
        raise KernelProblemError(AUTOGRAD_LINE, f"backward raised {type(exc).__name__}: {str(exc)[:300]}") from exc
    for name, t in (("dq", q), ("dk", k), ("dv", v)):
        result[name] = np.zeros(t.shape) if t.grad is None else t.grad.detach().cpu().double().numpy()
    return result


def reference_forward(case: FlashCase, arrays: dict[str, Any], **overrides: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    """The float64 reference's (out, lse, cache) of the case (dense), ``overrides`` replacing its options."""
    options = {"softmax_scale": case.scale, "causal": case.causal, "window_size": case.window,
               "softcap": case.softcap, "alibi_slopes": arrays["alibi_slopes"]} | overrides
    q, k, v = arrays["q"], arrays["k"], arrays["v"]
    if case.interface == "flash":
        return flash_attention_forward(q, k, v, **options)
    return flash_attention_varlen_forward(q, k, v, arrays["cu_seqlens_q"], arrays["cu_seqlens_k"], **options)


def _row_scales(p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row logit rounding scales (grouped rows): (per (B, Hkv, R, Lk) entry, per row (B, Hkv, R),
    per key (B, Hkv, Lk)); see the module docstring for softcap's and ALiBi's terms."""
    scores, _ = tile_scores(p, slice(None), slice(None))  # (B, Hkv, R, Lk), -inf where hidden
    seen = np.isfinite(scores)  # (B, Hkv, R, Lk)
    raw = p.scale * (p.q @ np.swapaxes(p.k, -1, -2))  # (B, Hkv, R, Lk)
    capped, _ = softcap_forward(raw, p.softcap)  # (B, Hkv, R, Lk)
    scale_ij = abs(p.scale) * (np.abs(p.q) @ np.swapaxes(np.abs(p.k), -1, -2))  # (B, Hkv, R, Lk): s|q||k|
    if p.softcap:
        scale_ij = scale_ij + np.abs(capped)
    scale_ij = scale_ij + np.abs(np.where(seen, scores - capped, 0.0))  # the ALiBi bias
    per_row = np.max(np.where(seen, scale_ij, 0.0), axis=-1, initial=0.0)  # (B, Hkv, R)
    per_key = np.max(np.where(seen, per_row[..., None], 0.0), axis=-2, initial=0.0)  # (B, Hkv, Lk)
    return np.where(seen, scores, 0.0), per_row, per_key


def flash_oracle(case: FlashCase, arrays: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float],
                                                                   dict[str, np.ndarray]]:
    """Expected out, lse, dq, dk, dv (kernel layouts), magnitudes and per-row logit scales of each."""
    out, lse, cache = reference_forward(case, arrays)
    backward = flash_attention_backward if case.interface == "flash" else flash_attention_varlen_backward
    dq, dk, dv = backward(arrays["dout"], cache)
    p, probs = cache["problem"], cache["dense"]["probs"]  # grouped rows: (B, Hkv, R, Lk)
    dout = arrays["dout"] if case.interface == "flash" else arrays["dout"][None]
    dout_rows = to_rows(dout, p.k.shape[1])  # (B, Hkv, R, dv)
    pseudo = {"q": p.q, "k": p.k, "v": p.v, "probs": probs, "probs_dropped": probs, "scale": p.scale,
              "dropout_scale": None, "attn_mask": None}
    magnitudes = attention_magnitudes(dout_rows, pseudo)
    logits, per_row, per_key = _row_scales(p)
    magnitudes["logits"] = float(np.max(np.abs(logits), initial=0.0))
    magnitudes["logit_magnitude"] = float(np.max(per_row, initial=0.0))
    expected = {"out": out, "lse": lse, "dq": dq, "dk": dk, "dv": dv}
    for name in ("out", "dq", "dk", "dv"):
        magnitudes[name] = max(magnitudes[name], float(np.max(np.abs(expected[name]), initial=0.0)))
    per_query = np.moveaxis(lse_from_rows(per_row, p.n_rep), 1, 2)  # (B, Lq, H)
    per_key = np.swapaxes(per_key, 1, 2)  # (B, Lk, Hkv)
    lse_rows = lse_from_rows(per_row, p.n_rep)  # (B, H, Lq)
    if case.interface == "varlen":
        per_query, per_key, lse_rows = per_query[0], per_key[0], lse_rows[0]
    return expected, magnitudes, {"out": per_query, "dq": per_query, "dk": per_key, "dv": per_key, "lse": lse_rows}


def lse_expected(case: FlashCase, arrays: dict[str, Any], lse: np.ndarray, convention: str) -> np.ndarray:
    """The LSE by the kernel's declared convention: FlashAttention 2's adds slope_h (i + Lk - Lq) under causal
    ALiBi (per sequence for varlen)."""
    if convention != "fa2" or not (case.alibi and case.causal):
        return lse
    return lse + alibi_lse_shift(case, arrays)


def alibi_lse_shift(case: FlashCase, arrays: dict[str, Any]) -> np.ndarray:
    """slope_h * (i + Lk_n - Lq_n) in the LSE's layout: (B, H, Lq) or (H, total_q)."""
    slopes = arrays["alibi_slopes"]  # (H,)
    anchors = np.concatenate([np.arange(lq) + lk - lq for lq, lk in zip(case.seqlens_q, case.seqlens_k, strict=True)])
    if case.interface == "flash":
        anchors = anchors[: case.Lq]
        return np.broadcast_to(slopes[None, :, None] * anchors[None, None, :], (case.B, case.H, case.Lq))
    return slopes[:, None] * anchors[None, :]  # (H, total_q)


def lse_check(actual: np.ndarray, expected: np.ndarray, baseline: np.ndarray, row_scales: np.ndarray,
              dtype: str, Lk: int, d: int) -> list[CheckResult]:
    """The LSE, absolute: an empty row (expected -inf) may be +inf or -inf; elsewhere the rule per row."""
    empty = np.isneginf(expected)
    ok_empty = bool(np.all(np.isinf(actual[empty])))
    message = "" if ok_empty else "lse: an empty row's LSE is not +inf or -inf"
    checks = [CheckResult(LSE_LINE, ok_empty, message=message)]
    a, e, b = (np.where(empty, 0.0, x) for x in (actual, expected, baseline))
    b = np.where(np.isfinite(b), b, e)
    # The LSE is absolute, of the size of the row's logits, so its floor is the logit term: KERNEL_LOGIT_FLOOR_FACTOR
    # roundings at each row's logit scale s|q||k|. Each score is also a sum of d products, whose roundings add up
    # to ~sqrt(d) more of that scale (the "Reduction length" rule of triad.tolerance, here at the logits' scale,
    # where the outputs' own term uses their magnitude), and a kernel that keeps its statistics in base 2 rounds
    # twice more at |LSE| (LSE_BASE_CHANGE_ROUNDINGS). Both are written in units of the logit term's factor.
    accumulation = ACCUMULATOR_EPS_BY_DTYPE[dtype] / EPS_BY_DTYPE[dtype] * np.sqrt(d)
    row_scales = (row_scales * (1.0 + accumulation / KERNEL_LOGIT_FLOOR_FACTOR)
                  + LSE_BASE_CHANGE_ROUNDINGS / KERNEL_LOGIT_FLOOR_FACTOR * np.abs(e))
    checks.append(rowwise_rule_check(LSE_LINE, a[..., None], e[..., None], max_abs_err(b, e), 1.0, dtype, row_scales,
                                     0.0, float(Lk)))
    return checks
