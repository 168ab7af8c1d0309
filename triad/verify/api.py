"""``verify_attention``: search for a case where a kernel disagrees with the float64 reference.

Hypothesis draws cases (``triad.verify.cases``) the kernel declares it supports; each case is
checked by ``check_one_case`` (agreement with the oracle against the baseline, shape and dtype,
NaN/inf, input mutation, autograd, determinism, the metamorphic relations, dropout). At the first failure
hypothesis shrinks the case to a minimal one, which the report keeps with a script that replays it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis.strategies import SearchStrategy

from torch_impl.flash_kernels import FLASH_BUILTINS, INTERFACES
from torch_impl.kernels import BUILTIN_KERNELS, TORCH_DTYPES, KernelNotFoundError, resolve_kernel
from torch_impl.scratch.attention import scaled_dot_product_attention as baseline_sdpa
from triad.tolerance import max_abs_err
from triad.verify.cases import (
    FAMILIES,
    MASK_KINDS,
    VerifyCase,
    allowed_masks,
    applicable_relations,
    coverage_cases,
    verify_cases,
)
from triad.verify.dropout import DROPOUT_LINE, dropout_check
from triad.verify.flash_api import check_flash_case, run_flash_search
from triad.verify.flash_judge import flash_signature_problem, infer_interface
from triad.verify.judge import (
    AUTOGRAD_LINE,
    DETERMINISM_LINE,
    FINITE_LINE,
    MUTATION_LINE,
    RAISES_LINE,
    SHAPE_LINE,
    TENSORS,
    CaseOutcome,
    CheckResult,
    Kernel,
    KernelDeclinedError,
    KernelProblemError,
    agreement_checks,
    call_kernel,
    judged,
    mask_tensor,
    oracle,
    rule_check,
    run_kernel,
    same_bits,
)
from triad.verify.kvcache_api import check_kvcache_case, run_kvcache_search
from triad.verify.long_context import check_long_case, check_long_lengths, run_long
from triad.verify.metamorphic import RELATION_LINES, relation_logits, relation_magnitude, relation_sides
from triad.verify.report import BAD_KERNEL, FAILED, UNSUPPORTED, VERIFIED, Report, repro_script
from triad.verify.search import Outcome, Search
from triad.verify.support import DEVICES, DTYPES, KernelSupport, declared_support

DEFAULT_MAX_EXAMPLES = 200


def kernel_spec(kernel: str | Kernel) -> str | None:
    """The name a script can resolve the kernel by: the string given, or ``module:qualname`` if importable."""
    if isinstance(kernel, str):
        return kernel
    module, qualname = getattr(kernel, "__module__", None), getattr(kernel, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        return None
    spec = f"{module}:{qualname}"
    try:
        return spec if resolve_kernel(spec) is kernel else None
    except KernelNotFoundError:
        return None


def kernel_import_root(spec: str | None) -> str | None:
    """The ``sys.path`` folder the kernel's module was imported from (so a script run from elsewhere finds it),
    or None for a built-in name or a module that is not a file."""
    if not spec or ":" not in spec:
        return None
    module_name = spec.partition(":")[0]
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        return None
    root = Path(path).resolve().parent
    depth = module_name.count(".") + (1 if Path(path).name == "__init__.py" else 0)
    for _ in range(depth):
        root = root.parent
    return str(root)


def _signature_problem(kernel: Kernel) -> str:
    """Why ``kernel`` cannot be called like SDPA, or "" (also when Python cannot tell, as for some builtins)."""
    try:
        signature = inspect.signature(kernel)
    except (TypeError, ValueError):
        return ""
    try:
        signature.bind(None, None, None, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None)
    except TypeError as exc:
        return (f"kernel: expected F.scaled_dot_product_attention's signature (q, k, v, attn_mask=None, "
                f"dropout_p=0.0, is_causal=False, scale=None), got {signature}: {exc}")
    return ""


def _forward_fn(kernel: Kernel, case: VerifyCase, dtype: str, device: str) -> Callable[..., np.ndarray]:
    """A forward-only runner on float64 arrays, for the metamorphic relations."""
    def forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, is_causal: bool,
                scale: float | None = case.effective_scale) -> np.ndarray:
        tensors = [torch.tensor(np.ascontiguousarray(x), dtype=TORCH_DTYPES[dtype], device=device) for x in (q, k, v)]
        with torch.no_grad():
            out = call_kernel(kernel, *tensors, mask_tensor(mask, dtype, device), is_causal, scale)
        return out.double().cpu().numpy()
    return forward


def _relation_check(kernel: Kernel, case: VerifyCase, relation: str, arrays: dict[str, Any], dtype: str,
                    device: str, magnitudes: dict[str, float]) -> CheckResult:
    try:
        lhs, rhs = relation_sides(relation, _forward_fn(kernel, case, dtype, device), arrays, case)
    except KernelProblemError as exc:  # the call that raised is the relation's, not the case's own
        raise KernelProblemError(exc.line, f"{exc.message}, made by the relation "
                                           f"{RELATION_LINES[relation]!r}") from exc
    base_lhs, base_rhs = relation_sides(relation, _forward_fn(baseline_sdpa, case, dtype, device), arrays, case)
    return rule_check(RELATION_LINES[relation], "max", max_abs_err(lhs, rhs), max_abs_err(base_lhs, base_rhs),
                      relation_magnitude(relation, magnitudes["out"]), dtype,
                      relation_logits(relation, magnitudes["logit_magnitude"], case),
                      # two sides, each an output: twice the underflow, twice sqrt(n) for the sums
                      2.0 * relation_magnitude(relation, magnitudes["out_underflow"]),
                      4.0 * magnitudes["out_reduction"])


def check_one_case(kernel: str | Kernel, case: VerifyCase, *, device: str = "cpu", dtype: str = "float32",
                   supports: KernelSupport | None = None) -> CaseOutcome:
    """Every check of one case (what each hypothesis example runs, and what a repro script calls)."""
    kernel = resolve_kernel(kernel)
    support = declared_support(kernel, supports)
    backward = support.backward
    arrays = case.arrays(dtype)
    expected, magnitudes, row_logits = oracle(case, arrays)
    outcome = CaseOutcome(case, logits=magnitudes["logits"])  # max |S|, for the report's "logits" line
    if not backward:
        expected = {"out": expected["out"]}
    with judged(outcome):
        actual = run_kernel(kernel, case, arrays, dtype, device, backward)
        baseline = run_kernel(baseline_sdpa, case, arrays, dtype, device, backward)
        outcome.checks += agreement_checks(actual, baseline, expected, magnitudes, row_logits, dtype)
        outcome.nondeterministic = not same_bits(actual, run_kernel(kernel, case, arrays, dtype, device, backward))
        for relation in applicable_relations(case, support):
            try:  # a relation's runs (dropout, one more head dim) may be declined on their own
                if relation == "dropout":
                    check = dropout_check(kernel, case, arrays, expected["out"], magnitudes, row_logits["out"],
                                          dtype, device)
                else:
                    check = _relation_check(kernel, case, relation, arrays, dtype, device, magnitudes)
                outcome.checks.append(check)
            except KernelDeclinedError as exc:
                line = DROPOUT_LINE if relation == "dropout" else RELATION_LINES[relation]
                outcome.declined_lines[line] = str(exc)
    return outcome


HEAD_DIM_BUCKETS = ((1, 16), (17, 64), (65, 128), (129, 256))
HEAD_DIM_LINES = tuple(f"head dim {lo}-{hi}" for lo, hi in HEAD_DIM_BUCKETS)
LQ_NE_LK = "Lq != Lk"
TAIL_BLOCKS = "tail blocks: a length > 16 not a multiple of 16"
PER_ELEMENT_MASKS = "batch > 1, a different mask per element"
SCALE_OVERRIDE = "scale override"
NON_CONTIGUOUS = "non-contiguous inputs (transposed views)"
BIG_LOGITS = "logits in the hundreds or more"


def case_features(case: VerifyCase, logits: float) -> list[str]:
    """The report lines (features searched) a case counts towards."""
    features = [f"mask: {case.mask}", f"inputs: {case.family}"]
    features += [line for (lo, hi), line in zip(HEAD_DIM_BUCKETS, HEAD_DIM_LINES, strict=True) if lo <= case.E <= hi]
    conditions = {
        LQ_NE_LK: case.Lq != case.Lk,
        TAIL_BLOCKS: any(n > 16 and n % 16 for n in (case.Lq, case.Lk)),
        PER_ELEMENT_MASKS: case.B > 1 and case.mask not in ("none", "is_causal", "bool_shared", "alibi"),
        SCALE_OVERRIDE: case.effective_scale is not None,
        NON_CONTIGUOUS: case.non_contiguous,
        BIG_LOGITS: logits >= 100.0,
    }
    return features + [line for line, holds in conditions.items() if holds]


def _empty_report_lines(report: Report, support: KernelSupport) -> None:
    """Create every line up front (in reading order), marking what the kernel's declaration rules out."""
    for name in (RAISES_LINE, SHAPE_LINE, FINITE_LINE, MUTATION_LINE, AUTOGRAD_LINE, DETERMINISM_LINE, *TENSORS):
        report.line(name)
    if not support.backward:
        for name in (AUTOGRAD_LINE, "dq", "dk", "dv"):
            report.line(name).note = "kernel declares no backward"
    for relation, name in RELATION_LINES.items():
        report.line(name)
        if relation in ("row_constant", "bias_as_head_dim") and "additive" not in support.masks:
            report.line(name).note = "needs additive masks, which the kernel declares unsupported"
    drawn = allowed_masks(support)
    for mask in MASK_KINDS:
        report.line(f"mask: {mask}")
        if mask not in drawn:
            report.line(f"mask: {mask}").note = "kernel declares this mask unsupported"
    for family in FAMILIES:
        report.line(f"inputs: {family}")
    for name in (*HEAD_DIM_LINES, LQ_NE_LK, TAIL_BLOCKS, PER_ELEMENT_MASKS, SCALE_OVERRIDE, NON_CONTIGUOUS, BIG_LOGITS):
        report.line(name)
    for (lo, hi), name in zip(HEAD_DIM_BUCKETS, HEAD_DIM_LINES, strict=True):
        if hi < support.min_head_dim or lo > support.max_head_dim:
            report.line(name).note = f"kernel declares head dims {support.min_head_dim}-{support.max_head_dim}"
    ruled_out = {LQ_NE_LK: support.different_lengths, SCALE_OVERRIDE: support.scale,
                 NON_CONTIGUOUS: support.non_contiguous}
    for name, supported in ruled_out.items():
        if not supported:
            report.line(name).note = "kernel declares it unsupported"
    report.line(DROPOUT_LINE)
    if not support.dropout:
        report.line(DROPOUT_LINE).note = "kernel declares no dropout"


def _tally(report: Report, outcome: CaseOutcome) -> None:
    report.tally(outcome, case_features(outcome.case, outcome.logits), TENSORS)


class _RefusedError(Exception):
    """A run that cannot start: bad arguments (``unsupported``) or a kernel that cannot be called (``bad kernel``)."""

    def __init__(self, verdict: str, message: str) -> None:
        super().__init__(message)
        self.verdict, self.message = verdict, message


def _accept(kernel: str | Kernel, device: str, dtype: str, max_examples: int, supports: KernelSupport | None,
            interface: str = "sdpa") -> tuple[Kernel, KernelSupport]:
    """The resolved kernel and what it supports; raises ``_RefusedError`` saying why a run cannot start."""
    if dtype not in DTYPES:
        raise _RefusedError(UNSUPPORTED, f"dtype: expected one of {DTYPES}, got {dtype!r}")
    if device not in DEVICES or (device == "cuda" and not torch.cuda.is_available()):
        raise _RefusedError(UNSUPPORTED,
                            f"device: expected one of {DEVICES} (cuda only where available), got {device!r}")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise _RefusedError(UNSUPPORTED, f"max_examples: expected a positive int, got {max_examples!r}")
    try:
        resolved = resolve_kernel(kernel)
        support = declared_support(resolved, supports)
    except (KernelNotFoundError, TypeError) as exc:
        raise _RefusedError(BAD_KERNEL, str(exc)) from exc
    problem = _signature_problem(resolved) if interface == "sdpa" else flash_signature_problem(resolved, interface)
    if problem:
        raise _RefusedError(BAD_KERNEL, problem)
    for wanted, allowed, what in ((dtype, support.dtypes, "dtypes"), (device, support.devices, "devices")):
        if wanted not in allowed:
            raise _RefusedError(UNSUPPORTED, f"{wanted}: the kernel declares {what} {allowed} only")
    return resolved, support


@contextlib.contextmanager
def _tf32_off() -> Iterator[None]:
    """TF32 would make the float32 baseline ~1e-3 relative and let a kernel as imprecise pass."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def verify_attention(
    kernel: str | Kernel,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    seed: int = 0,
    supports: KernelSupport | None = None,
    on_example: Callable[[int], None] | None = None,
    interface: str | None = None,
    long_lengths: tuple[int, ...] = (),
) -> Report:
    """Search ``max_examples`` cases for a disagreement with the float64 reference; never raises for a bad kernel.

    The search is preceded by one small case per supported mask kind (``coverage_cases``), so a run checks
    ``max_examples`` plus at most ``len(MASK_KINDS)`` cases.

    ``kernel``: a built-in name (``native``, ``sdpa-math``, ...), ``package.module:function`` or a
    callable with ``F.scaled_dot_product_attention``'s signature. ``on_example(n)`` is called after
    each case (a progress bar). The report's verdict is ``verified``, ``failed`` (with the minimal
    failing case and a repro script), ``unsupported`` or ``bad kernel``.

    ``interface``: ``sdpa``, ``flash``, ``varlen`` or ``kvcache`` (FlashAttention's ``flash_attn_func``,
    ``flash_attn_varlen_func`` and ``flash_attn_with_kvcache``: ``triad.verify.flash_api``, ``kvcache_api``);
    None infers it from the signature's parameter names (``k_cache``: kvcache; ``cu_seqlens_q``: varlen;
    ``softmax_scale``, ``window_size``, ``causal``, ...: flash; else sdpa).

    ``long_lengths`` (flash interface only; e.g. ``triad.verify.long_context.LONG_LENGTHS``): after a search that
    passed, one full-length run per long case at each length, judged on sampled rows against the float64 oracle
    (``triad.verify.long_context``); other interfaces get a report line saying the long cases were not run.
    """
    name = kernel if isinstance(kernel, str) else getattr(kernel, "__qualname__", repr(kernel))
    report = Report(kernel=str(name), device=device, dtype=dtype, verdict=VERIFIED, seed=seed)
    try:
        report.interface, report.interface_inferred, kernel = _interface(kernel, interface)
        long_lengths = _long_lengths(long_lengths, report)
        if report.interface != "sdpa":
            return _verify_flash(kernel, report, device, dtype, max_examples, seed, supports, on_example,
                                 long_lengths)
        resolved, support = _accept(kernel, device, dtype, max_examples, supports)
    except _RefusedError as refusal:
        report.verdict, report.message = refusal.verdict, refusal.message
        return report
    _empty_report_lines(report, support)
    run = Search(functools.partial(check_one_case, resolved, device=device, dtype=dtype, supports=support),
                 _tally, report, "sdpa", device, on_example)

    def strategy(failed: Outcome | None) -> SearchStrategy:
        """When a coverage case fails, a search among cases of its mask kind finds the bug again and shrinks it."""
        return verify_cases(support, dtype, None if failed is None else (failed.case.mask,))

    started = time.perf_counter()
    with _tf32_off():
        run.run(((None, case) for case in coverage_cases(support)), strategy, max_examples, seed)
    report.seconds = time.perf_counter() - started
    if run.failures:
        report.verdict = FAILED
        report.failure = run.failures[-1]
        spec = kernel_spec(kernel)
        report.repro_script = repro_script(spec, report.failure, device, dtype, check_one_case, supports=supports,
                                           not_reproducible=report.not_reproducible,
                                           import_root=kernel_import_root(spec))
    elif report.examples == 0:
        report.verdict = UNSUPPORTED
        report.message = "the kernel declined every case: " + "; ".join(report.declined_reasons)
    return report


def _interface(kernel: str | Kernel, interface: str | None) -> tuple[str, bool, str | Kernel]:
    """(interface, inferred?, the kernel: a built-in name becomes its kernel for that interface)."""
    if interface is not None and interface not in INTERFACES:
        raise _RefusedError(UNSUPPORTED, f"interface: expected one of {INTERFACES}, got {interface!r}")
    if interface in FLASH_BUILTINS and isinstance(kernel, str) and kernel in BUILTIN_KERNELS:
        builtins = FLASH_BUILTINS[interface]
        if kernel not in builtins:
            raise _RefusedError(BAD_KERNEL, f"kernel: the built-in {kernel!r} has no {interface} interface "
                                            f"(those that do: {', '.join(builtins)})")
        return interface, False, builtins[kernel]
    if interface is not None:
        return interface, False, kernel
    try:
        inferred = infer_interface(resolve_kernel(kernel))
    except (KernelNotFoundError, TypeError):
        inferred = "sdpa"  # _accept reports the bad name
    return inferred, True, kernel


def _long_lengths(lengths: tuple[int, ...], report: Report) -> tuple[int, ...]:
    """The checked lengths for the flash interface; () with a report line for the others."""
    try:
        checked = check_long_lengths(lengths)
    except ValueError as exc:
        raise _RefusedError(UNSUPPORTED, str(exc)) from exc
    if checked and report.interface != "flash":
        report.line("long contexts").note = f"not run: only the flash interface has them, not {report.interface}"
        return ()
    return checked


def _verify_flash(kernel: str | Kernel, report: Report, device: str, dtype: str, max_examples: int, seed: int,
                  supports: KernelSupport | None, on_example: Callable[[int], None] | None,
                  long_lengths: tuple[int, ...] = ()) -> Report:
    """The flash/varlen search (``triad.verify.flash_api``) into ``report``, then the long cases if asked for and
    the search passed; raises ``_RefusedError``."""
    resolved, support = _accept(kernel, device, dtype, max_examples, supports, report.interface)
    started = time.perf_counter()
    with _tf32_off():
        if report.interface == "kvcache":
            failure = run_kvcache_search(resolved, support, device, dtype, report, max_examples, seed, on_example)
        else:
            failure = run_flash_search(resolved, support, report.interface, device, dtype, report, max_examples,
                                       seed, on_example)
        long_failure = None if failure is not None or not long_lengths else run_long(
            resolved, support, device, dtype, long_lengths, seed, report)
    report.seconds = time.perf_counter() - started
    if failure is not None and long_lengths:
        report.line("long contexts")  # never reached: the search failed first
    spec = kernel_spec(kernel)
    if long_failure is not None:
        report.verdict, report.failure = FAILED, long_failure
        report.repro_script = repro_script(spec, long_failure, device, dtype, check_long_case, supports=supports,
                                           import_root=kernel_import_root(spec),
                                           check_args=f"{long_failure.name!r}, ")
    if failure is not None:
        report.verdict, report.failure = FAILED, failure
        check = check_kvcache_case if report.interface == "kvcache" else check_flash_case
        report.repro_script = repro_script(spec, failure, device, dtype, check, supports=supports,
                                           not_reproducible=report.not_reproducible,
                                           import_root=kernel_import_root(spec))
    elif report.examples == 0:
        report.verdict = UNSUPPORTED
        report.message = "the kernel declined every case: " + "; ".join(report.declined_reasons)
    return report


def assert_attention_matches_reference(kernel: str | Kernel, **kwargs: Any) -> Report:
    """For a user's pytest: ``verify_attention(kernel, **kwargs)`` and fail with the minimal case unless verified."""
    report = verify_attention(kernel, **kwargs)
    if not report.passed:
        raise AssertionError(report.summary() + ("\n\n" + report.repro_script if report.repro_script else ""))
    return report
