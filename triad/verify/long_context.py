r"""``triad verify --long``: FlashAttention-interface kernels at 8k-128k keys against the float64 oracle, sampled.

The kernel runs **once at full length** (forward and backward with a random ``dout``, in its dtype on its
device); its out, LSE and dq are judged on a few hundred sampled query positions (every head), its dk, dv on a
few hundred sampled key positions (every K/V head), against ``reference.flash_sampled`` -- exact in float64,
never an (L, L) array (its docstring has the formulas).

**What is sampled** (``sample_positions``): the first and last positions, the tile boundaries kernels block
by (multiples of 64, 128 and 256, and one either side, spread over the length), the powers of two from 1024
on and one either side (where a float16 position index stops holding integers: past 2048), the window's
edges, and random positions to fill ``n`` (a seeded generator: a case rebuilds bit for bit).

**The rule** is the verifier's (``triad.verify.judge.rowwise_rule_check`` per sampled row, with the mean
check), its magnitudes :math:`\mu` and per-row logit scales from the sampled rows' absolute sums
(``SampledAttention``), its underflow and reduction-length terms from the lengths
(``triad.tolerance.attention_length_terms``); the LSE by ``flash_judge.lse_check``. **The baseline term is
0, the floor alone.** The baseline (``scratch``, dense in the kernel's dtype) cannot run at these lengths, and
a baseline on a sub-problem (the sampled rows against every key) would judge a different computation from
the kernel's: its error depends on the row's whole softmax, which for dk, dv means every row. The floor
already holds what a correct kernel's rounding grows with at long lengths: the reduction-length term
:math:`u_\text{acc}\,\mu\sqrt{n}` (a sum over :math:`n = L` terms in the accumulator) and the logit term
:math:`4u\,\mu\,s|q||k|` (a logit's own rounding). That a correct kernel passes on the floor alone is
measured, not assumed: ``equivalence_tests/test_verify_long.py`` reports the worst ratio of native SDPA and of
an online-softmax kernel.

The cases per length (``long_cases``): causal MQA at :math:`d = 64`; causal at :math:`d = 128`; a sliding
window (not causal) with softcap and ALiBi and GQA (each only where the kernel supports the feature). Their
sizes keep ``--long`` at 32k within minutes on 2 cores: the oracle's tiled forward over every row dominates.
A kernel declines what it cannot run
(``NotImplementedError``: skipped) -- the dense built-ins decline scores over
``torch_impl.validate.DENSE_SCORES_LIMIT`` rather than exhaust the memory. The long run follows the normal
search, and only when that passed (its failures are cheaper to find and to read); the first long failure stops it.
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.flash_attention import flash_problem
from reference.flash_sampled import SampledAttention, sampled_flash_attention
from triad.tolerance import attention_length_terms
from triad.verify.flash_api import effective_support
from triad.verify.flash_cases import FlashCase
from triad.verify.flash_judge import (
    LSE_LINE,
    FlashOutcome,
    alibi_lse_shift,
    dtype_of_eps,
    lse_check,
    run_flash_kernel,
)
from triad.verify.judge import CheckResult, Kernel, agreement_checks, judged
from triad.verify.report import Report
from triad.verify.support import KernelSupport, declared_support

LONG_LENGTHS = (8192, 16384, 32768)  # ``--long``'s default
MIN_LONG_LENGTH = 257  # below it the normal search's dense oracle is the right tool
SAMPLED_POSITIONS = 256  # query positions (each with every head) and key positions (each with every K/V head)
TILE_SIZES = (64, 128, 256)
BOUNDARIES_PER_TILE = 8  # multiples of each tile size, spread over the length
LONG_WINDOW = (1024, 64)  # the sliding window case's (left, right)
LONG_SOFTCAP = 30.0


@dataclass
class LongOutcome(FlashOutcome):
    """One long case: its checks (on the sampled positions), time and the oracle's memory."""

    name: str = ""
    query_positions: int = 0
    key_positions: int = 0
    kernel_seconds: float = 0.0
    oracle_seconds: float = 0.0
    oracle_peak_bytes: int = 0

    @property
    def line(self) -> str:
        return long_line(self.case, self.name)

    @property
    def worst_margin(self) -> float:
        """The largest error / allowed error of the agreement checks (above 1 fails)."""
        return max((c.margin for c in self.checks if c.stat), default=0.0)

    def figures(self) -> str:
        peak = self.oracle_peak_bytes / 2**20
        return (f"worst error / allowed {self.worst_margin:.2g} (no baseline: the floor alone); "
                f"{self.query_positions} query / {self.key_positions} key positions; kernel {self.kernel_seconds:.1f} "
                f"s, oracle {self.oracle_seconds:.1f} s, oracle peak {peak:.0f} MiB")


def long_line(case: FlashCase, name: str) -> str:
    """The report line of a long case: ``long: L = 32768 causal, H=4 Hkv=2 d=64``."""
    return f"long: L = {case.Lk} {name}"


def check_long_lengths(lengths: Sequence[int]) -> tuple[int, ...]:
    """The lengths as a tuple of ints >= MIN_LONG_LENGTH; ValueError naming ``long_lengths`` otherwise."""
    checked = tuple(lengths)
    if any(isinstance(n, bool) or not isinstance(n, int | np.integer) or n < MIN_LONG_LENGTH for n in checked):
        raise ValueError(f"long_lengths: expected ints >= {MIN_LONG_LENGTH}, got {list(lengths)!r}")
    return tuple(int(n) for n in checked)


def sample_positions(length: int, n: int, seed: int, window: tuple[int, int] = (-1, -1)) -> np.ndarray:
    """About ``n`` sorted positions in [0, length): edges, tile boundaries +-1, powers of two +-1 from 1024,
    the window's edges +-1, then random ones (seeded)."""
    picked = {0, 1, length - 2, length - 1}
    for tile in TILE_SIZES:
        multiples = np.unique(np.linspace(1, max(1, length // tile - 1), BOUNDARIES_PER_TILE).astype(int))
        picked |= {int(m) * tile + off for m in multiples for off in (-1, 0, 1)}
    power = 1024
    while power < length:
        picked |= {power - 1, power, power + 1}
        power *= 2
    for side in window:
        if side >= 0:
            picked |= {side + off for off in (-1, 0, 1)} | {length - 1 - side + off for off in (-1, 0, 1)}
    positions = np.array(sorted(p for p in picked if 0 <= p < length), dtype=np.int64)  # (n_fixed,)
    others = np.setdiff1d(np.arange(length), positions)  # (length - n_fixed,)
    extra = np.random.default_rng(seed).choice(others, size=min(max(0, n - len(positions)), len(others)),
                                               replace=False)  # (n - n_fixed,)
    return np.sort(np.concatenate([positions, extra]))  # (max(n, n_fixed),)


def long_cases(length: int, support: KernelSupport, seed: int) -> list[tuple[str, FlashCase]]:
    """The cases at one length: causal MQA at d = 64; causal at d = 128; a window (not causal) with softcap and
    ALiBi, GQA. Features the kernel does not support are left out (the window case needs "window")."""
    features = support.features or ("gqa", "window", "softcap", "alibi")
    gqa = "gqa" in features

    def case(name: str, H: int, Hkv: int, d: int, seed_offset: int, **options: Any) -> tuple[str, FlashCase]:
        H, Hkv = (H, Hkv) if gqa else (Hkv, Hkv)
        d = min(max(d, support.min_head_dim), support.max_head_dim)
        fields = {"causal": False, "window": (-1, -1), "softcap": 0.0, "alibi": False} | options
        return (f"{name}, H={H} Hkv={Hkv} d={d}",
                FlashCase("flash", H, Hkv, (length,), (length,), d, d, scale=None, family="gaussian", logit_scale=1.0,
                          seed=seed + seed_offset, **fields))

    cases = [case("causal", 2, 1, 64, 0, causal=True), case("causal", 2, 2, 128, 1, causal=True)]
    if "window" in features:
        extras = {"softcap": LONG_SOFTCAP if "softcap" in features else 0.0, "alibi": "alibi" in features}
        label = " + ".join([f"window {LONG_WINDOW}"] + [f for f in ("softcap", "alibi") if extras.get(f)])
        cases.append(case(label, 4, 2, 64, 2, window=LONG_WINDOW, **extras))
    return cases


def sampled_oracle(case: FlashCase, arrays: dict[str, Any], seed: int,
                   n: int = SAMPLED_POSITIONS) -> tuple[SampledAttention, float, int]:
    """(the sampled float64 oracle, its seconds, its peak traced memory in bytes)."""
    query_pos = sample_positions(case.Lq, n, seed, case.window)  # (n_q,)
    key_pos = sample_positions(case.Lk, n, seed + 1, case.window)  # (n_k,)
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        problem = flash_problem(arrays["q"], arrays["k"], arrays["v"], softmax_scale=case.scale, causal=case.causal,
                                window_size=case.window, softcap=case.softcap, alibi_slopes=arrays["alibi_slopes"])
        sampled = sampled_flash_attention(problem, arrays["dout"], query_pos, key_pos)
        seconds, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        if not tracing:
            tracemalloc.stop()
    return sampled, seconds, peak


def _magnitudes(case: FlashCase, arrays: dict[str, Any], expected: SampledAttention) -> dict[str, float]:
    """mu of out, dq, dk, dv from the sampled rows' absolute sums, and the lengths' terms."""
    peaks = {name: float(np.max(np.abs(arrays[name]), initial=0.0)) for name in ("q", "k", "v", "dout")}
    magnitudes = attention_length_terms(case.Lq * case.n_rep, case.Lk, case.dv, abs(case.effective_scale), peaks)
    for name in ("out", "dq", "dk", "dv"):
        exact, bar = getattr(expected, name), getattr(expected, f"{name}_abs")
        magnitudes[name] = max(float(np.max(np.abs(exact), initial=0.0)), float(np.max(bar, initial=0.0)))
    return magnitudes


def _with_position(check: CheckResult, positions: np.ndarray, axis: int) -> CheckResult:
    """A failed check's worst index names the sampled row; say which position that is."""
    if check.passed or not check.where or "index (" not in check.where:
        return check
    index = tuple(int(i) for i in check.where.split("index (")[1].split(")")[0].split(",") if i.strip())
    return dataclasses.replace(check, where=f"{check.where}; sampled position {int(positions[index[axis]])}")


def long_checks(case: FlashCase, arrays: dict[str, Any], actual: dict[str, np.ndarray], expected: SampledAttention,
                dtype: str, alibi_lse: str) -> list[CheckResult]:
    """out, dq (sampled query positions), dk, dv (sampled keys) by the rule with no baseline; the LSE if returned."""
    qp, kp = expected.query_pos, expected.key_pos
    picked = {"out": (qp, expected.out), "dq": (qp, expected.dq), "dk": (kp, expected.dk), "dv": (kp, expected.dv)}
    kernel = {name: actual[name][:, pos] for name, (pos, _) in picked.items() if name in actual}  # (B, n, heads, .)
    wanted = {name: picked[name][1] for name in kernel}
    scales = {"out": expected.query_scale, "dq": expected.query_scale, "dk": expected.key_scale,
              "dv": expected.key_scale}
    checks = agreement_checks(kernel, wanted, wanted, _magnitudes(case, arrays, expected), scales, dtype)
    checks = [_with_position(c, picked[c.line][0], 1) if c.line in picked else c for c in checks]
    if "lse" in actual:
        lse = expected.lse  # (B, H, n_q)
        if alibi_lse == "fa2" and case.alibi and case.causal:
            lse = lse + alibi_lse_shift(case, arrays)[:, :, qp]
        found = lse_check(actual["lse"][:, :, qp], lse, lse, np.swapaxes(expected.query_scale, 1, 2),
                          dtype_of_eps(float(actual["lse_eps"])), case.Lk, case.d)
        checks += [_with_position(c, qp, 2) if c.line == LSE_LINE else c for c in found]
    return checks


def check_long_case(kernel: Kernel, case: FlashCase, name: str = "", *, device: str = "cpu", dtype: str = "float32",
                    supports: KernelSupport | None = None, positions: int = SAMPLED_POSITIONS) -> LongOutcome:
    """Run the kernel once at the case's full length and judge it on the sampled positions."""
    support = effective_support(kernel, declared_support(kernel, supports))
    want_lse = "lse" in support.features
    outcome = LongOutcome(case, name=name)
    arrays = case.arrays(dtype)
    started = time.perf_counter()
    actual = None
    with judged(outcome):
        actual = run_flash_kernel(kernel, case, arrays, dtype, device, support.backward, want_lse)
    if actual is None:  # declined, or a broken contract: nothing to judge
        return outcome
    outcome.kernel_seconds = time.perf_counter() - started
    expected, outcome.oracle_seconds, outcome.oracle_peak_bytes = sampled_oracle(case, arrays, case.seed, positions)
    outcome.query_positions, outcome.key_positions = len(expected.query_pos), len(expected.key_pos)
    outcome.actual = actual
    outcome.checks = long_checks(case, arrays, actual, expected, dtype, support.alibi_lse)
    return outcome


def _tally(report: Report, outcome: LongOutcome) -> None:
    line = report.line(outcome.line)
    if outcome.declined:
        line.skipped += 1
        line.note = f"declined: {outcome.declined[:160]}"
        return
    line.examples += 1
    line.info = outcome.figures() if outcome.kernel_seconds else ""
    for check in outcome.checks:
        line.add(check)


def run_long(kernel: Kernel, support: KernelSupport, device: str, dtype: str, lengths: Sequence[int], seed: int,
             report: Report) -> LongOutcome | None:
    """Every long case into ``report`` (a line each); the first failure stops the run and is returned."""
    support = effective_support(kernel, support)
    planned = [(name, case) for length in lengths for name, case in long_cases(length, support, seed)]
    for name, case in planned:  # every line first: those after a failure read "not reached"
        report.line(long_line(case, name))
    for name, case in planned:
        if support.max_length is not None and case.Lk > support.max_length:
            report.line(long_line(case, name)).note = "not searched: longer than the declared max_length"
            continue
        outcome = check_long_case(kernel, case, name, device=device, dtype=dtype, supports=support)
        _tally(report, outcome)
        if outcome.failed:
            return outcome
    return None
