r"""One case: run the kernel and the baseline, compare both with the float64 oracle, check the rest.

The rule (``triad.tolerance``): for each of out, dq, dk, dv, on the worst element and on the mean,

.. math::  \mathrm{err}_\text{kernel} \le 2\,\mathrm{err}_\text{baseline} + u\,\mu\,(2 + 4\max_\text{row} s|q||k|^\top)
           + u_\text{acc}\,\mu\sqrt{n_\text{sum}} + \eta\,n_\text{underflow}

where the oracle is the NumPy reference in float64 on the *same* inputs (already rounded to the
dtype, so neither side is blamed for the rounding of its inputs) and the baseline is ``scratch``,
plain PyTorch tensor ops in the same dtype on the same device.

Besides the agreement, every case checks: the output's shape, dtype and device; no NaN/inf where
the oracle is finite; the inputs (and the mask) are not modified; gradients flow through autograd;
a second run gives the same bits (a difference is reported as non-determinism, not as a failure).
Anything the kernel raises is caught here and becomes a failed check with its message.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reference.attention import attention_backward, attention_forward
from torch_impl.kernels import TORCH_DTYPES
from triad.tolerance import (
    KERNEL_LOGIT_FLOOR_FACTOR,
    Mismatch,
    attention_magnitudes,
    attention_row_logits,
    locate_mismatch,
    low_precision_bound,
    max_abs_err,
    mean_abs_err,
)
from triad.verify.cases import VerifyCase
from triad.verify.support import is_declined

TENSORS = ("out", "dq", "dk", "dv")
GRADS = ("dq", "dk", "dv")

# Report lines for the checks every case makes (the agreement lines are named after the tensor).
SHAPE_LINE = "output shape, dtype and device"
FINITE_LINE = "no NaN/inf where the oracle is finite"
MUTATION_LINE = "inputs not modified"
AUTOGRAD_LINE = "gradients through autograd"
RAISES_LINE = "kernel runs without raising"
DETERMINISM_LINE = "repeated runs agree"


# What the worst row's expected value means when it is a convention rather than a computation.
EMPTY_ROW_CONVENTION = ("that row is 0 by convention: a query that sees no key has output 0 and gradient 0, a key "
                        "no query sees has gradient 0 (SDPA's contract and FlashAttention's)")


class KernelProblemError(Exception):
    """The kernel broke a contract (raised, wrong shape or dtype, mutated an input, ...): a failed check."""

    def __init__(self, line: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class KernelDeclinedError(Exception):
    """The kernel declined this case (NotImplementedError, or a pinned SDPA backend with no kernel for it)."""


@dataclass
class CheckResult:
    """One comparison; errors are relative to the magnitude mu of the result (0 <= ratio to bound <= 1 passes)."""

    line: str
    passed: bool
    err: float = 0.0
    baseline_err: float = 0.0
    bound: float = 0.0
    stat: str = ""  # "max" or "mean" for agreement checks
    message: str = ""
    where: str = ""  # a failing "max" check: rows over their bound, the worst element's index and both values

    @property
    def ratio(self) -> float:
        """kernel error / baseline error (inf when the baseline is exact and the kernel is not)."""
        if self.err == 0.0:
            return 0.0
        return self.err / self.baseline_err if self.baseline_err > 0.0 else float("inf")

    @property
    def margin(self) -> float:
        """kernel error / allowed error: above 1 fails."""
        if self.err == 0.0:
            return 0.0
        return self.err / self.bound if self.bound > 0.0 else float("inf")

    def describe(self) -> str:
        if self.message:
            return f"{self.line}: {self.message}"
        text = (f"{self.line} ({self.stat} error): {self.err:.3e} relative, baseline {self.baseline_err:.3e}, "
                f"allowed {self.bound:.3e}, ratio to baseline {self.ratio:.3g}")
        return f"{text}; {self.where}" if self.where else text

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "passed": self.passed, "stat": self.stat, "err": self.err,
                "baseline_err": self.baseline_err, "bound": self.bound, "ratio": self.ratio, "message": self.message,
                "where": self.where}


@dataclass
class CaseOutcome:
    case: VerifyCase
    checks: list[CheckResult] = field(default_factory=list)
    declined: str = ""  # why the kernel declined the case, if it did
    declined_lines: dict[str, str] = field(default_factory=dict)  # relations declined alone: line -> why
    nondeterministic: bool = False
    logits: float = 0.0  # max |S| of the case

    @property
    def failed(self) -> bool:
        return any(not c.passed for c in self.checks)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def summary(self, verbose: bool = True) -> str:
        """The case and its failing checks (all checks if none failed). ``verbose=False`` collapses what one root
        cause produces: the first failing check in full, the others of the same case as one line of names."""
        if self.declined:
            return f"declined: {self.declined}\n  case: {self.case.describe()}"
        lines = [f"{'FAILED' if self.failed else 'passed'}: {self.case.describe()}"]
        shown = self.failures() or self.checks
        if verbose or len(shown) < 2:
            return "\n".join(lines + [f"  {c.describe()}" for c in shown])
        first = shown[0]
        others = list(dict.fromkeys(c.line + (" (mean)" if c.stat == "mean" else "") for c in shown[1:]))
        lines.append(f"  {first.describe()}")
        lines.append(f"  also failing on this case (likely the same cause; --verbose for their numbers): "
                     f"{', '.join(others)}")
        return "\n".join(lines)


Kernel = Callable[..., Any]


@contextlib.contextmanager
def judged(outcome: CaseOutcome) -> Iterator[None]:
    """Run a case's calls with warnings silenced (SDPA warns for every backend it passes over) and the kernel's
    verdicts kept: a decline (``KernelDeclinedError``) marks the case declined, a broken contract
    (``KernelProblemError``) becomes a failed check on its line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except KernelDeclinedError as exc:
            outcome.declined = str(exc)
        except KernelProblemError as exc:
            outcome.checks.append(CheckResult(exc.line, False, message=exc.message))


def _leaf(x: np.ndarray, dtype: str, device: str, transposed: bool,
          requires_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(leaf, view): the view is what the kernel gets; for ``transposed`` a (B, H, L, E) view of (B, L, H, E)."""
    t_dtype = TORCH_DTYPES[dtype]
    if transposed:
        base = torch.tensor(np.ascontiguousarray(x.transpose(0, 2, 1, 3)), dtype=t_dtype, device=device)  # (B, L, H, E)
        base.requires_grad_(requires_grad)
        return base, base.transpose(1, 2)  # (B, H, L, E), non-contiguous
    # torch.tensor keeps a NumPy array's strides; a "contiguous" case must really be contiguous
    base = torch.tensor(np.ascontiguousarray(x), dtype=t_dtype, device=device).requires_grad_(requires_grad)
    return base, base


def mask_tensor(mask: np.ndarray | None, dtype: str, device: str) -> torch.Tensor | None:
    if mask is None:
        return None
    mask = np.ascontiguousarray(mask)
    if mask.dtype == np.bool_:
        return torch.tensor(mask, device=device)
    return torch.tensor(mask, dtype=TORCH_DTYPES[dtype], device=device)


def _describe_tensor(t: torch.Tensor | None) -> str:
    return "None" if t is None else f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def describe_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool,
                  scale: float | None, dropout_p: float) -> str:
    """The call as the kernel saw it: shapes and dtypes of the tensors, the other arguments' values."""
    return (f"kernel(q {_describe_tensor(q)}, k {_describe_tensor(k)}, v {_describe_tensor(v)}, "
            f"attn_mask={_describe_tensor(attn_mask)}, dropout_p={dropout_p}, is_causal={is_causal}, scale={scale})")


def call_kernel(kernel: Kernel, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                is_causal: bool, scale: float | None, dropout_p: float = 0.0) -> torch.Tensor:
    """kernel(q, k, v, ...) with SDPA's keywords; checks the result is a tensor of the right shape/dtype/device.

    A kernel that raises is blamed on this call, named with its arguments (a relation's call may carry a mask
    the case itself has not)."""
    try:
        out = kernel(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    except (Exception, SystemExit) as exc:  # whatever the kernel raises (sys.exit too) is the kernel's verdict
        if is_declined(exc):
            raise KernelDeclinedError(f"{type(exc).__name__}: {str(exc).strip()[:200]}") from exc
        call = describe_call(q, k, v, attn_mask, is_causal, scale, dropout_p)
        raise KernelProblemError(RAISES_LINE, f"raised {type(exc).__name__}: {str(exc).strip()[:300]} "
                                              f"in the call {call}") from exc
    if not isinstance(out, torch.Tensor):
        raise KernelProblemError(SHAPE_LINE, f"returned a {type(out).__name__}, expected a torch.Tensor")
    if out.layout != torch.strided or out.is_nested:
        raise KernelProblemError(SHAPE_LINE, f"output: expected a dense (strided) tensor, got layout {out.layout}")
    expected = (*q.shape[:-1], v.shape[-1])
    if tuple(out.shape) != expected:
        raise KernelProblemError(SHAPE_LINE,
                                 f"output: expected shape {expected} (B, H, Lq, d_v), got {tuple(out.shape)}")
    if out.dtype != q.dtype:
        raise KernelProblemError(SHAPE_LINE, f"output: expected dtype {q.dtype} like q, got {out.dtype}")
    if out.device != q.device:
        raise KernelProblemError(SHAPE_LINE, f"output: expected device {q.device} like q, got {out.device}")
    return out


def run_kernel(kernel: Kernel, case: VerifyCase, arrays: dict[str, Any], dtype: str, device: str,
               backward: bool) -> dict[str, np.ndarray]:
    """out (and dq, dk, dv when ``backward``) as float64 arrays; raises KernelProblemError or KernelDeclinedError."""
    leaves = {n: _leaf(arrays[n], dtype, device, case.non_contiguous, backward) for n in ("q", "k", "v")}
    q, k, v = (leaves[n][1] for n in ("q", "k", "v"))
    attn_mask = mask_tensor(arrays["attn_mask"], dtype, device)
    before = {n: t.detach().clone() for n, t in (("q", q), ("k", k), ("v", v), ("attn_mask", attn_mask))
              if t is not None}

    def check_unmodified(when: str) -> None:
        now = {"q": q, "k": k, "v": v, "attn_mask": attn_mask}
        for name, snapshot in before.items():
            if not torch.equal(now[name].detach(), snapshot):
                raise KernelProblemError(MUTATION_LINE, f"{name} was modified in place {when}")

    out = call_kernel(kernel, q, k, v, attn_mask, case.is_causal, case.effective_scale)
    check_unmodified("by the forward")
    result = {"out": out.detach().cpu().double().numpy()}
    if not backward:
        return result
    if not out.requires_grad:
        raise KernelProblemError(AUTOGRAD_LINE, "output does not require grad: no gradient flows back to q, k, v")
    try:
        out.backward(torch.tensor(arrays["dout"], dtype=TORCH_DTYPES[dtype], device=device))
    except (Exception, SystemExit) as exc:  # the kernel's backward
        message = f"backward raised {type(exc).__name__}: {str(exc).strip()[:300]}"
        raise KernelProblemError(AUTOGRAD_LINE, message) from exc
    check_unmodified("by the backward")
    for name, grad_name in (("q", "dq"), ("k", "dk"), ("v", "dv")):
        base = leaves[name][0]
        # None: the output does not depend on this input (a kernel may shortcut, e.g. one key gives out = v),
        # which is a zero gradient; if the oracle's is not zero, the agreement check says so.
        grad = torch.zeros_like(base) if base.grad is None else base.grad
        grad = grad.transpose(1, 2) if case.non_contiguous else grad  # (B, H, L, E)
        result[grad_name] = grad.detach().cpu().double().numpy()
    return result


def oracle(case: VerifyCase, arrays: dict[str, Any]
           ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    """The float64 reference's out, dq, dk, dv on the case's (dtype-rounded) inputs, their magnitudes mu
    (``attention_magnitudes``) and the per-row logit scales of each: (B, H, Lq) for out, dq; (B, H, Lk) for dk, dv."""
    out, cache = attention_forward(arrays["q"], arrays["k"], arrays["v"], arrays["attn_mask"],
                                   is_causal=case.is_causal, scale=case.effective_scale)
    dq, dk, dv = attention_backward(arrays["dout"], cache)
    expected = {"out": out, "dq": dq, "dk": dk, "dv": dv}
    magnitudes = attention_magnitudes(arrays["dout"], cache)
    for name in TENSORS:
        magnitudes[name] = max(magnitudes[name], float(np.max(np.abs(expected[name]))) if expected[name].size else 0.0)
    per_query, per_key = attention_row_logits(cache)
    row_logits = {"out": per_query, "dq": per_query, "dk": per_key, "dv": per_key}
    return expected, magnitudes, row_logits


def rule_check(line: str, stat: str, err_abs: float, baseline_abs: float, mu: float, dtype: str,
               logits: float, underflow: float = 0.0, reduction: float = 0.0) -> CheckResult:
    """The tolerance rule on absolute errors; reported relative to mu. A non-finite baseline leaves the floor."""
    usable_baseline = baseline_abs if np.isfinite(baseline_abs) else 0.0
    allowed = low_precision_bound(usable_baseline, mu, dtype, logits, KERNEL_LOGIT_FLOOR_FACTOR, underflow,
                                  reduction)
    passed = bool(np.isfinite(err_abs) and err_abs <= allowed)
    rel = 1.0 / mu if mu > 0.0 else 1.0
    return CheckResult(line, passed, err_abs * rel, baseline_abs * rel, allowed * rel, stat)


def rowwise_rule_check(line: str, actual: np.ndarray, expected: np.ndarray, baseline_abs: float, mu: float,
                       dtype: str, row_logits: np.ndarray, underflow: float, reduction: float = 0.0) -> CheckResult:
    """The rule on the worst element, each row (axis -2) with its own logit term; reports the row nearest its bound.

    ``row_logits`` has the tensor's shape without the last axis.
    """
    diff = np.abs(actual - expected)  # (B, H, L, d)
    diff = np.where(np.isnan(diff) | ~np.isfinite(expected), np.inf, diff)  # NaN/inf where the oracle is finite
    row_err = np.max(diff, axis=-1, initial=0.0)  # (B, H, L)
    usable_baseline = baseline_abs if np.isfinite(baseline_abs) else 0.0
    allowed = low_precision_bound(usable_baseline, mu, dtype, row_logits, KERNEL_LOGIT_FLOOR_FACTOR,
                                  underflow, reduction)  # (B, H, L)
    if row_err.size == 0:
        return rule_check(line, "max", 0.0, baseline_abs, mu, dtype, 0.0, underflow, reduction)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = np.where(row_err == 0.0, 0.0, row_err / allowed)  # (B, H, L)
    worst = np.unravel_index(int(np.argmax(margin)), margin.shape)
    rel = 1.0 / mu if mu > 0.0 else 1.0
    passed = bool(np.all(margin <= 1.0))
    found = None if passed else locate_mismatch(actual, expected, allowed[..., None], rows=True)
    where = "" if found is None else str(found)
    if isinstance(found, Mismatch) and not np.any(expected[found.index[:-1]]):
        where += f"; {EMPTY_ROW_CONVENTION}"
    return CheckResult(line, passed, float(row_err[worst]) * rel, baseline_abs * rel, float(allowed[worst]) * rel,
                       "max", where=where)


def agreement_checks(actual: dict[str, np.ndarray], baseline: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                     magnitudes: dict[str, float], row_logits: dict[str, np.ndarray], dtype: str) -> list[CheckResult]:
    """For each tensor: no NaN/inf where the oracle is finite, the rule per row on the worst element, and on the mean
    (its floor at the mean of the rows' logit scales)."""
    checks = []
    for name in actual:
        finite = np.isfinite(expected[name])
        bad = int(np.sum(finite & ~np.isfinite(actual[name])))
        checks.append(CheckResult(FINITE_LINE, bad == 0,
                                  message=f"{name}: {bad} NaN/inf where the oracle is finite" if bad else ""))
        mu, underflow, reduction = magnitudes[name], magnitudes[f"{name}_underflow"], magnitudes[f"{name}_reduction"]
        baseline_max = max_abs_err(baseline[name], expected[name])
        checks.append(rowwise_rule_check(name, actual[name], expected[name], baseline_max, mu, dtype, row_logits[name],
                                         underflow, reduction))
        mean_logits = float(np.mean(row_logits[name])) if row_logits[name].size else 0.0
        checks.append(rule_check(name, "mean", mean_abs_err(actual[name], expected[name]),
                                 mean_abs_err(baseline[name], expected[name]), mu, dtype, mean_logits, underflow,
                                 reduction))
    return checks


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[n], b[n], equal_nan=True) for n in a)
