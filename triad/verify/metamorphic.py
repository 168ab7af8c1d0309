r"""Metamorphic relations: properties of attention that hold exactly in real arithmetic.

Each relation runs the kernel twice (or more) and compares two sides that must be equal:

- ``permutation``: permuting keys and values (and the mask's key axis) together leaves a
  non-causal output unchanged, :math:`f(q, \Pi k, \Pi v) = f(q, k, v)`.
- ``row_constant``: adding a constant :math:`c_i` to every logit of query row :math:`i`
  (through an additive mask) changes nothing, since :math:`\mathrm{softmax}(s + c) = \mathrm{softmax}(s)`.
- ``bias_as_head_dim``: an additive bias :math:`s\,a b^\top` gives what one more head dimension
  gives, :math:`f(q, k, v; A + s\,a b^\top) = f([q, a], [k, b], v; A)` with the scale held at
  :math:`s`: the additive-mask path is checked against the matmul path with logit-sized values.
- ``linearity``: the output is linear in v, :math:`f(q, k, v_1 + v_2) = f(q, k, v_1) + f(q, k, v_2)`.
- ``batch``: a batch element's result does not depend on the other elements,
  :math:`f(x)_b = f(x_b)`.
- ``causal_prefix``: under a (top-left) causal mask the first p queries and keys give the first
  p rows of the output, :math:`f(q_{:p}, k_{:p}, v_{:p}) = f(q, k, v)_{:p}`.

In floating point both sides round differently, so the residual :math:`\max|lhs - rhs|` of the
kernel is held to the same rule as everything else: at most the tolerance factor times the
residual of the plain baseline on the same relation, plus the floor at the output's magnitude.
No tolerance is tuned per relation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from reference.masks import causal_mask
from triad.verify.cases import VerifyCase

# forward(q, k, v, attn_mask, is_causal[, scale]) -> out (B, H, Lq, Ev) as float64; scale defaults to the case's
Forward = Callable[..., np.ndarray]

RELATION_LINES = {
    "permutation": "metamorphic: permuting keys and values together",
    "row_constant": "metamorphic: a constant added to a row's logits",
    "bias_as_head_dim": "metamorphic: an additive bias equals an extra head dimension",
    "linearity": "metamorphic: linear in v",
    "batch": "metamorphic: batch elements independent",
    "causal_prefix": "metamorphic: causal prefix gives the output's prefix",
}
ROW_CONSTANT_MAX = 8  # integer constants: exact in every dtype
BIAS_CLIP = 3.0  # a and b of bias_as_head_dim, in units of sqrt(logit_scale / s)


def _as_additive(mask: np.ndarray | None, is_causal: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Any mask as an additive float mask broadcast to ``shape`` (B, 1 or H, Lq, Lk)."""
    if is_causal:
        mask = causal_mask(shape[-2], shape[-1], "top_left")  # (Lq, Lk)
    if mask is None:
        return np.zeros(shape)  # (B, 1, Lq, Lk)
    if mask.dtype == np.bool_:
        mask = np.where(mask, 0.0, -np.inf)
    return np.broadcast_to(mask, np.broadcast_shapes(mask.shape, shape)).copy()  # (B, 1 or H, Lq, Lk)


def relation_sides(relation: str, forward: Forward, arrays: dict[str, Any], case: VerifyCase
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(lhs, rhs) of ``relation`` for this case, each an output as float64; they are equal in exact arithmetic."""
    rng = np.random.default_rng([case.seed, 1])  # the relation's own draws, the same for kernel and baseline
    q, k, v, mask, causal = arrays["q"], arrays["k"], arrays["v"], arrays["attn_mask"], case.is_causal
    B, Lq, Lk = case.B, case.Lq, case.Lk
    if relation == "permutation":
        perm = rng.permutation(Lk)  # (Lk,)
        permuted_mask = None if mask is None else mask[..., perm]  # (..., Lq, Lk)
        return forward(q, k[:, :, perm], v[:, :, perm], permuted_mask, causal), forward(q, k, v, mask, causal)
    if relation == "row_constant":
        c = rng.integers(-ROW_CONSTANT_MAX, ROW_CONSTANT_MAX + 1, size=(B, 1, Lq, 1)).astype(float)  # (B, 1, Lq, 1)
        shifted = _as_additive(mask, causal, (B, 1, Lq, Lk)) + c  # (B, 1 or H, Lq, Lk)
        return forward(q, k, v, shifted, False), forward(q, k, v, mask, causal)
    if relation == "bias_as_head_dim":
        s = case.effective_scale if case.effective_scale is not None else 1.0 / np.sqrt(case.E)
        size = np.sqrt(case.logit_scale / s)
        a = size * np.clip(rng.standard_normal((*q.shape[:-1], 1)), -BIAS_CLIP, BIAS_CLIP)  # (B, H, Lq, 1)
        b = size * np.clip(rng.standard_normal((*k.shape[:-1], 1)), -BIAS_CLIP, BIAS_CLIP)  # (B, H, Lk, 1)
        bias = s * (a @ np.swapaxes(b, -1, -2))  # (B, H, Lq, Lk)
        biased = _as_additive(mask, causal, (B, 1, Lq, Lk)) + bias  # (B, H, Lq, Lk)
        wider = forward(np.concatenate([q, a], -1), np.concatenate([k, b], -1), v, mask, causal, s)  # E + 1
        return forward(q, k, v, biased, False, s), wider
    if relation == "linearity":
        v2 = rng.standard_normal(v.shape) * max(float(np.max(np.abs(v))), np.finfo(np.float64).tiny)  # (B, H, Lk, Ev)
        return forward(q, k, v + v2, mask, causal), forward(q, k, v, mask, causal) + forward(q, k, v2, mask, causal)
    if relation == "batch":
        def element(b: int) -> np.ndarray:
            m = mask[b:b + 1] if mask is not None and mask.ndim == 4 and mask.shape[0] == B else mask
            return forward(q[b:b + 1], k[b:b + 1], v[b:b + 1], m, causal)  # (1, H, Lq, Ev)
        return forward(q, k, v, mask, causal), np.concatenate([element(b) for b in range(B)])  # (B, H, Lq, Ev)
    if relation == "causal_prefix":
        p = int(rng.integers(1, min(Lq, Lk) + 1))
        prefix = forward(q[:, :, :p], k[:, :, :p], v[:, :, :p], None, True)  # (B, H, p, Ev)
        return prefix, forward(q, k, v, None, True)[:, :, :p]
    raise ValueError(f"relation: expected one of {tuple(RELATION_LINES)}, got {relation!r}")


def relation_logits(relation: str, logits: float, case: VerifyCase) -> float:
    """The logits' magnitude in the relation's runs: row constants add ROW_CONSTANT_MAX, a bias up to
    BIAS_CLIP^2 times the case's logit size."""
    if relation == "row_constant":
        return logits + ROW_CONSTANT_MAX
    if relation == "bias_as_head_dim":
        return logits + BIAS_CLIP**2 * case.logit_scale
    return logits


def relation_magnitude(relation: str, out_magnitude: float) -> float:
    """The magnitude of the compared outputs: linearity sums two outputs of the same size."""
    return 2.0 * out_magnitude if relation == "linearity" else out_magnitude
