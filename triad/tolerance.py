r"""What "agree" means: every bound in the project lives here, with the reason for it.

**The error measure.** For a computed tensor ``a`` and the float64 oracle ``e``

.. math::  \mathrm{err}(a, e) = \frac{\max_i |a_i - e_i|}{\max(\max_i |e_i|,\ \mu)}

where :math:`\mu` is the *magnitude* of the computation: the same formula evaluated on
absolute values (``|P| |V|`` for ``P V``). Classical rounding analysis bounds the error of
a floating-point product by :math:`\gamma_n |A||B|` (:math:`\gamma_n \approx n u`), not by
:math:`|AB|`, so :math:`\mu` is the right scale when a result is small through
cancellation -- e.g. ``dq`` when logits of +-1e3 make the softmax one-hot and the
gradient vanishes. With :math:`\mu = 0` the measure is the plain normwise relative error.

**float64 across implementations: 1e-10.** Two float64 implementations of the same
maths differ only in the order of their roundings (unit roundoff :math:`u = 1.1\cdot10^{-16}`).
Reductions here are at most a few hundred terms long and softmax turns an absolute error
:math:`\delta` in a logit into a relative error :math:`\delta` of a probability, so with
logits of size :math:`|S| \le 10^3` the expected difference is
:math:`\lesssim (n + |S|)\,u \approx 10^{-13}`. 1e-10 keeps a factor of ~1000 for
unlucky accumulations and still catches any real bug (a wrong scale, mask or index is
off by :math:`10^{-3}` or more).

**Finite differences: 1e-6.** Central differences with ``h = 1e-6`` carry a truncation
error :math:`h^2 f'''/6` and a rounding error :math:`u |f| / h \approx 10^{-10}|f|`; inputs in
those tests have unit scale, so both are far below 1e-6, while a wrong backward is off by O(1).

**Adam on a zero gradient: 1e-7 absolute.** An attention key bias ``k_proj.bias`` adds :math:`q \cdot b_k`
to every score of a row, which the softmax ignores: its gradient is 0 in exact arithmetic, and each
implementation computes rounding noise :math:`g \approx 10^{-17}` instead. Adam turns noise into a step
:math:`\eta\, \hat m / (\sqrt{\hat v} + \epsilon) \approx \eta\, g / \epsilon` (with
:math:`\sqrt{\hat v} \ll \epsilon = 10^{-9}`), so after 20 steps of :math:`\eta \le 0.05` two implementations'
key biases may differ by up to :math:`20 \cdot 0.05 \cdot 10^{-16} / 10^{-9} = 10^{-7}`
(``ADAM_ZERO_GRAD_ABS_BOUND``, for the 20-step training comparison), while no output depends on them.

**Low precision (float32, fp16, bf16, a user's kernel).** No fixed number: a result in a
dtype passes when its error against the float64 oracle is at most

.. math::  2\,\mathrm{err}_\text{baseline} + u\,\mu\,(2 + 2\max|S|)

where the baseline is a plain implementation computed in the same dtype (FlashAttention's
rule, with its factor 2) and the floor is two units :math:`u` of that dtype at the magnitude
:math:`\mu` (the rounding of the result and of its inputs), widened by the logits
:math:`S`: a kernel may round each logit (absolute error :math:`u|S|`) and subtract a
rounded log-sum-exp (another :math:`u|S|`), a relative error :math:`2u|S|` in every
probability. That is exactly what flash-style kernels pay when they recompute
:math:`P = e^{S - \mathrm{LSE}}` in the backward instead of storing it, and a baseline that
stores :math:`P` can be luckier by orders of magnitude on one-hot rows.
Measured with ``benchmarks/calibrate_float32_rule.py`` (2 cores, torch 2.13 CPU, 2026-11-23):
over 7,736 float32 checks (500 hypothesis cases x scratch/native x out/dq/dk/dv, twice) with
logits up to 7.8e3, factor 2 with this floor had no violation; without the logit term 186 did.
Real bugs are off by far more (a wrong scale or mask changes the result by O(1)).

**Kernels (``triad verify``).** A blocked kernel with an online softmax rounds a logit, the
running maximum, the rescaling :math:`e^{m_\text{old} - m_\text{new}}` and the log-sum-exp: up to
four roundings at :math:`|S|` in a probability instead of two, so the verifier's floor uses
``KERNEL_LOGIT_FLOOR_FACTOR = 4``, with :math:`|S|` taken as its rounding scale
:math:`\max s|q||k|^\top` (``logit_magnitude``: a dot product's rounding error scales with the
sum of the absolute products, which cancellation can make far larger than :math:`|S|`).
Measured (``docs/verify.md``): with 2, PyTorch's own flash kernel on CPU exceeded the floor
(1.06x, a peaky float32 case); with 4 no correct kernel did.

**Per row.** The logit term belongs to a row: a probability :math:`P_{ij}` is rounded at its own
row's logits, so the verifier's floor for ``out`` and ``dq`` row :math:`i` uses row :math:`i`'s
largest logit scale, and for ``dk`` and ``dv`` row :math:`j` the largest over the query rows that
see key :math:`j` (``attention_row_logits``). One row with logits of 1e3 does not excuse a bug in
the rows beside it whose logits are of size 1.

**Reduction length.** A sum of :math:`n` terms computed in another order or blocking than the
baseline's differs from it by up to :math:`\gamma_n \approx n u` of the sum of the absolute terms,
and by about :math:`\sqrt n\, u` in practice (rounding errors of a long sum behave like a random walk:
Higham and Mary, SIAM J. Sci. Comput. 2019). The baseline's own error is no guide when it happens
to round luckily: with 127 keys, scratch's ``dv`` was 0.75 ulp off and PyTorch's SDPA 5.2 ulps, more
than twice that plus the floor (found by review). So the verifier's floor adds
:math:`u_\text{acc}\,\mu\sqrt{n}`, with :math:`n` the terms summed on the way to each result
(``attention_magnitudes``, keys ``*_reduction``): the softmax denominator and :math:`PV` for ``out``
(:math:`L_k`), and :math:`dP` and :math:`D` for ``dq`` (:math:`L_k + d_v`), the sums over queries for
``dk`` and ``dv`` (:math:`L_q + L_k + d_v`, :math:`L_q + L_k`). :math:`u_\text{acc}` is the
accumulator's unit roundoff: float32 for float32, float16 and bfloat16 (every fused kernel
accumulates in float32), float64 for float64.

**Underflow.** Below the smallest normal number a rounding is no longer relative: it errs by up to
the smallest subnormal :math:`\eta` of the dtype, whatever the size of the value (the model
:math:`\mathrm{fl}(x) = x(1 + \delta) + \eta'`, :math:`|\eta'| \le \eta`). Inputs near the
subnormals (the verifier's ``tiny`` family) make probabilities times values, and gradients
:math:`dS = P \circ (dP - D)`, land there, and a correct kernel may sum many such roundings into
one element: a kernel that lets autograd run through its softmax row max adds all :math:`L_k`
roundings of a row's :math:`dS` into the arg-max's. On a float32 case with :math:`L_k = 513` that
made ``dk`` 117x the plain kernel's error (473 :math:`\eta`, about 1.6 roundings per element of
:math:`dS`), which the relative floor alone called a bug. So the floor adds :math:`\eta` times the
number of subnormal roundings that can reach one element, each times its largest gain
(``attention_magnitudes``, keys ``*_underflow``), with :math:`r = 4 L_k + (L_k + d_v)` for one
row of :math:`dS` (``DS_ROUNDINGS = 4`` per element, plus its :math:`dP_{ij}` and :math:`D_i`
weighted by :math:`P_{ij}`, which sum to one over the row):

.. math::  \text{out}: L_k (1 + \max|v|) \quad dv: L_q (1 + \max|dO|) \quad
           dq: s\,r \max(1, |k|) + L_k \quad dk: s\,L_q\,r \max(1, |q|) + L_q

Since :math:`\eta = u \cdot` (the smallest normal number) in every IEEE format, the term matters
only for results within a factor of the gain of the subnormal range; a kernel that flushes
subnormals to zero errs by the smallest normal number itself, :math:`2^{23}` times :math:`\eta` in
float32, and still fails.

**Worst element and mean.** ``triad verify`` applies the same rule twice per tensor: to the
largest absolute error (``max_abs_err``) and to the mean absolute error (``mean_abs_err``),
each against the baseline's error of the same kind. The mean catches a kernel that is a
little worse everywhere (say, accumulating in a lower precision) while its worst element
still hides behind the baseline's worst element.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

F64_REL_BOUND = 1e-10
# One float64 reference against itself by another route (tiled vs dense, packed vs one by one, GQA vs K/V
# repeated by hand): the same maths in another summation order over a few dozen unit-scale terms, so ~1e-15 is
# expected; 1e-12 keeps a factor of 1000 and still catches any real bug (off by 1e-3 or more).
SAME_MATHS_REL_BOUND = 1e-12
FD_REL_BOUND = 1e-6
FD_STEP = 1e-6
ADAM_ZERO_GRAD_ABS_BOUND = 1e-7  # 20 Adam steps of lr <= 0.05 on a gradient that is rounding noise
LOW_PRECISION_FACTOR = 2.0
FLOOR_ULPS = 2.0
LOGIT_FLOOR_FACTOR = 2.0
# triad verify: any kernel, including blocked online-softmax ones (see "Kernels" in the docstring).
KERNEL_LOGIT_FLOOR_FACTOR = 4.0
# A returned LSE: a kernel that keeps its softmax statistics in base 2 (exp2 of scores times log2(e), as Triton
# kernels and FlexAttention do) converts them back to the natural log on the way out (x / ln 2 in, x * ln 2 out):
# two more roundings, each a relative unit roundoff of |LSE| itself.
LSE_BASE_CHANGE_ROUNDINGS = 2.0

# Unit in the last place at 1.0 (machine epsilon) of each dtype, by name.
EPS_BY_DTYPE = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
# The smallest subnormal of each dtype: the absolute error a rounding in the subnormal range may make.
SUBNORMAL_BY_DTYPE = {"float64": 2.0**-1074, "float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}
# The unit roundoff of the accumulator a kernel sums in, by the dtype of its inputs (see "Reduction length").
ACCUMULATOR_EPS_BY_DTYPE = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-23, "bfloat16": 2.0**-23}
# Roundings that produce one element of dS = P o (dP - D) (its products and, in a softmax written with exp and
# a division, the quotient's); measured: 1.6 per element on the worst case found (see "Underflow" above).
DS_ROUNDINGS = 4


def _abs_diff(actual: Any, expected: np.ndarray) -> np.ndarray | None:
    """|actual - expected| as float64, or None if shapes differ or ``actual`` is NaN/inf where ``expected`` is not."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return None
    diff = np.abs(a - e)
    return diff if np.all(np.isfinite(diff)) else None


def max_abs_err(actual: Any, expected: np.ndarray) -> float:
    """max |actual - expected|; inf on a shape mismatch or a NaN/inf where ``expected`` is finite."""
    diff = _abs_diff(actual, expected)
    return float("inf") if diff is None else float(np.max(diff, initial=0.0))


def mean_abs_err(actual: Any, expected: np.ndarray) -> float:
    """mean |actual - expected|; inf on a shape mismatch or a NaN/inf where ``expected`` is finite."""
    diff = _abs_diff(actual, expected)
    return float("inf") if diff is None else (float(np.mean(diff)) if diff.size else 0.0)


def max_rel_err(actual: Any, expected: np.ndarray, magnitude: float = 0.0) -> float:
    """max |actual - expected| / max(max |expected|, magnitude); 0 when both sides are exactly zero."""
    e = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(e))) if e.size else 0.0, float(magnitude))
    err = max_abs_err(actual, e)
    if err == 0.0:
        return 0.0
    return err / scale if scale > 0.0 else float("inf")


@dataclass(frozen=True)
class Mismatch:
    """Where a comparison fails, as ``torch.testing.assert_close`` says it: how many elements (or rows) exceed their
    bound out of how many, and the worst one (largest error over its bound): its index, both values, the error and
    the bound there."""

    count: int
    total: int
    index: tuple[int, ...]
    actual: float
    expected: float
    error: float
    allowed: float
    unit: str = "elements"

    def __str__(self) -> str:
        share = 100.0 * self.count / self.total if self.total else 0.0
        return (f"mismatched {self.unit}: {self.count} / {self.total} ({share:.1f}%); worst at index {self.index}: "
                f"{self.actual:.9g} vs {self.expected:.9g} expected, error {self.error:.3e} "
                f"(up to {self.allowed:.3e} allowed)")


def locate_mismatch(actual: Any, expected: np.ndarray, allowed: Any, rows: bool = False) -> Mismatch | str | None:
    """Where ``|actual - expected| <= allowed`` fails; ``allowed`` broadcasts to ``expected`` (absolute bounds).

    ``rows=True`` counts rows (the last axis) over their bound, as the verifier's per-row rule does; the index
    is still the worst element's. A NaN/inf where the oracle is finite counts as an infinite error. Returns None
    when everything is within bounds, a sentence when the shapes differ.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return f"shape {a.shape} where the reference has {e.shape}"
    bound = np.broadcast_to(np.asarray(allowed, dtype=np.float64), e.shape)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - e)
    diff = np.where(np.isfinite(e) & ~np.isfinite(diff), np.inf, np.nan_to_num(diff, nan=0.0))  # NaN where e is NaN
    over = diff > bound
    if not over.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = np.where(diff == 0.0, 0.0, diff / bound)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(margin)), margin.shape))
    count, total, unit = int(over.sum()), int(over.size), "elements"
    if rows and e.ndim >= 1:
        row_over = over.any(axis=-1)
        count, total, unit = int(row_over.sum()), int(row_over.size), "rows"
    return Mismatch(count, total, worst, float(a[worst]), float(e[worst]), float(diff[worst]), float(bound[worst]),
                    unit)


def mismatch_lines(actual: Mapping[str, Any], expected: Mapping[str, np.ndarray], bounds: float | Mapping[str, float],
                   magnitudes: Mapping[str, float] | None = None) -> dict[str, str]:
    """For every tensor of ``expected`` over its relative bound (``max_rel_err``'s measure): where, as a sentence."""
    lines = {}
    for key, want in expected.items():
        bound = bounds if isinstance(bounds, (int, float)) else bounds[key]
        found = "missing" if key not in actual else describe_rel_mismatch(actual[key], want, bound,
                                                                          (magnitudes or {}).get(key, 0.0))
        if found:
            lines[key] = found
    return lines


def describe_rel_mismatch(actual: Any, expected: np.ndarray, bound: float, magnitude: float = 0.0) -> str:
    """``locate_mismatch`` for a relative bound measured as ``max_rel_err`` measures (scale: the larger of
    max |expected| and ``magnitude``); "" when within the bound."""
    e = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(e))) if e.size else 0.0, float(magnitude))
    found = locate_mismatch(actual, e, bound * scale)
    return "" if found is None else str(found)


def low_precision_bound(baseline_abs_err: float, magnitude: float, dtype: str, logits: Any = 0.0,
                        logit_factor: float = LOGIT_FLOOR_FACTOR, underflow: float = 0.0,
                        reduction: float = 0.0) -> Any:
    """Largest absolute error allowed for a result in ``dtype`` whose baseline has ``baseline_abs_err``.

    ``magnitude`` is mu (at least max |oracle|); ``logits`` is max |S| for attention results, 0 otherwise
    (a float, or an array of per-row scales for a per-row bound of the same shape);
    ``logit_factor`` the roundings at |S| a probability may carry (KERNEL_LOGIT_FLOOR_FACTOR for any kernel);
    ``underflow`` the number of subnormal roundings that can reach one element, times their gain;
    ``reduction`` the number of terms summed on the way to the result (any kernel: see "Reduction length").
    """
    floor = EPS_BY_DTYPE[dtype] * magnitude * (FLOOR_ULPS + logit_factor * logits)
    floor = floor + ACCUMULATOR_EPS_BY_DTYPE[dtype] * magnitude * np.sqrt(reduction)
    return LOW_PRECISION_FACTOR * baseline_abs_err + floor + SUBNORMAL_BY_DTYPE[dtype] * underflow


def _logits(cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(S, s |q||k|^T), each (B, H, Lq, Lk): the logits, finite additive mask values included, and the scale
    of each logit's rounding error (a dot product errs in proportion to the sum of its absolute products)."""
    scale = abs(cache["scale"])
    logits = scale * (cache["q"] @ np.swapaxes(cache["k"], -1, -2))  # (B, H, Lq, Lk)
    logit_magnitude = scale * (np.abs(cache["q"]) @ np.swapaxes(np.abs(cache["k"]), -1, -2))  # (B, H, Lq, Lk)
    mask = cache["attn_mask"]
    if mask is not None and mask.dtype != np.bool_:
        finite_mask = np.where(np.isfinite(mask), mask, 0.0)  # finite additive mask values are logits too
        logits = logits + finite_mask
        logit_magnitude = logit_magnitude + np.abs(finite_mask)
    return logits, logit_magnitude


def _peak(x: np.ndarray) -> float:
    return float(np.max(x)) if x.size else 0.0


def attention_magnitudes(dout: np.ndarray, cache: dict[str, Any]) -> dict[str, float]:
    """The scale mu of out, dq, dk, dv (the reference's backward on absolute values), max |S| ("logits"),
    max s |q||k|^T ("logit_magnitude", the scale of the rounding error of each logit's dot product) and,
    for each of out, dq, dk, dv, the subnormal roundings that can reach one element times their gain
    ("out_underflow", ...; see "Underflow" above) and the number of terms summed on the way
    ("out_reduction", ...; see "Reduction length").

    ``cache`` is the float64 reference's attention cache, ``dout`` the upstream gradient.
    """
    q, k, v = np.abs(cache["q"]), np.abs(cache["k"]), np.abs(cache["v"])
    probs, probs_dropped = cache["probs"], cache["probs_dropped"]  # >= 0 already
    scale = abs(cache["scale"])
    dout = np.abs(dout)
    out = probs_dropped @ v  # (B, H, Lq, Ev)
    dv = np.swapaxes(probs_dropped, -1, -2) @ dout  # (B, H, Lk, Ev)
    dprobs = dout @ np.swapaxes(v, -1, -2)  # (B, H, Lq, Lk)
    if cache["dropout_scale"] is not None:
        dprobs = dprobs * cache["dropout_scale"]
    dscores = probs * (dprobs + np.sum(dprobs * probs, axis=-1, keepdims=True))  # (B, H, Lq, Lk)
    dq = scale * (dscores @ k)  # (B, H, Lq, E)
    dk = scale * (np.swapaxes(dscores, -1, -2) @ q)  # (B, H, Lk, E)
    logits, logit_magnitude = _logits(cache)
    dropout_gain = 1.0 if cache["dropout_scale"] is None else max(1.0, _peak(cache["dropout_scale"]))
    lengths = attention_length_terms(q.shape[-2], k.shape[-2], v.shape[-1], scale,
                                     {"q": _peak(q), "k": _peak(k), "v": _peak(v), "dout": _peak(dout)}, dropout_gain)
    return {"out": _peak(out), "dq": _peak(dq), "dk": _peak(dk), "dv": _peak(dv), "logits": _peak(np.abs(logits)),
            "logit_magnitude": _peak(logit_magnitude), **lengths}


def attention_length_terms(Lq: int, Lk: int, Ev: int, scale: float, peaks: Mapping[str, float],
                           dropout_gain: float = 1.0) -> dict[str, float]:
    """The magnitudes' terms that need only the lengths and the inputs' peaks ``max |q|, |k|, |v|, |dout|``:
    "out_underflow", ... (see "Underflow") and "out_reduction", ... (see "Reduction length"); ``scale`` is |s|."""
    # subnormal roundings in one row of dS: DS_ROUNDINGS per element, and the P_ij-weighted dP_ij (Ev) and D_i (Lk)
    ds_row = DS_ROUNDINGS * Lk + Lk + Ev
    underflow = {
        "out_underflow": Lk * dropout_gain * (1.0 + peaks["v"]),  # each P_ij (times v_j) and each P_ij v_j
        "dv_underflow": Lq * dropout_gain * (1.0 + peaks["dout"]),  # each P_ij (times dO_i) and each P_ij dO_i
        "dq_underflow": scale * ds_row * max(1.0, peaks["k"]) + Lk,  # row i's dS (times k_j), and each dS_ij k_j
        "dk_underflow": scale * Lq * ds_row * max(1.0, peaks["q"]) + Lq,  # every row may fold its dS into key j
    }
    reduction = {"out_reduction": Lk, "dq_reduction": Lk + Ev, "dk_reduction": Lq + Lk + Ev, "dv_reduction": Lq + Lk}
    return underflow | reduction


def attention_row_logits(cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row logit scales for the per-row floor: (per query (B, H, Lq), per key (B, H, Lk)).

    A query row's is its largest s |q_i||k_j| (plus |mask|) over the keys it sees (0 for a fully masked row);
    a key's is the largest of those over the query rows that see it.
    """
    _, logit_magnitude = _logits(cache)  # (B, H, Lq, Lk)
    mask = cache["attn_mask"]
    seen = np.ones(logit_magnitude.shape, dtype=bool) if mask is None else np.broadcast_to(
        mask if mask.dtype == np.bool_ else np.isfinite(mask), logit_magnitude.shape)  # (B, H, Lq, Lk)
    per_query = np.max(np.where(seen, logit_magnitude, 0.0), axis=-1, initial=0.0)  # (B, H, Lq)
    per_key = np.max(np.where(seen, per_query[..., None], 0.0), axis=-2, initial=0.0)  # (B, H, Lk)
    return per_query, per_key
