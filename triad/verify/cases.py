"""What ``triad verify`` searches: one attention case, drawn by hypothesis, rebuilt from a seed.

A case is a handful of small choices (shapes, mask kind, input family, layout, scale) and a
seed; the arrays come from NumPy's generator with that seed, so a case printed in a report or a
repro script rebuilds bit for bit. Hypothesis shrinks the choices of a failure
towards the first entry of each list below (the simplest), which is what a reader wants to see.

Input families, beyond Gaussian noise because benign inputs hide bugs:

- ``gaussian``: q, k with logits of a chosen size (1 to several hundred), v and dout unit normal.
- ``peaky``: every query shares a direction with one key, whose logit dominates (softmax ~ one-hot).
- ``ties``: duplicated keys and queries, so logits tie exactly.
- ``fp16_overflow``: q . k before scaling exceeds the float16 range (65504) while the scaled logits
  do not: a kernel must scale before (or while) it multiplies, or accumulate wider.
- ``tiny``: v a few times the dtype's smallest normal number, so products reach the subnormals.

Mask kinds: ``none``, ``is_causal`` (SDPA's top-left flag), ``bool_shared`` (one ``(Lq, Lk)``
keep-mask), ``bool_per_batch`` (``(B, 1, Lq, Lk)``, different for each batch element),
``additive`` (finite float values and ``-inf``), ``fully_masked_rows`` (some query rows see no key),
``single_key`` (every query row sees exactly one key), ``key_padding`` (a ``(B, 1, 1, Lk)`` keep-mask
of each element's true length, broadcast over heads and queries) and ``alibi`` (a finite
``(1, H, Lq, Lk)`` additive bias, different for each head and shared by the batch). Between them
the masks arrive in every broadcast a kernel must get right: ``(Lq, Lk)``, ``(B, 1, Lq, Lk)``,
``(B, 1, 1, Lk)``, ``(1, H, Lq, Lk)`` and ``(B, H, Lq, Lk)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from torch_impl.kernels import TORCH_DTYPES
from triad.verify.support import KernelSupport

MASK_KINDS = ("none", "is_causal", "bool_shared", "bool_per_batch", "additive", "fully_masked_rows", "single_key",
              "key_padding", "alibi")
FAMILIES = ("gaussian", "peaky", "ties", "fp16_overflow", "tiny")
# Lengths around the block sizes kernels tile by (16, 64, 128), so tail blocks are partial.
BLOCK_EDGE_LENGTHS = (15, 17, 31, 33, 63, 65, 127, 129, 255, 257, 513)
HEAD_DIMS_LARGE = (40, 63, 64, 65, 80, 96, 127, 128, 129, 160, 192, 255, 256)
LOGIT_SCALES = (1.0, 10.0, 100.0, 400.0)
FP16_MAX = 65504.0
# Beyond this many multiply-adds per (batch, head) the case keeps B * H <= 2, so the float64 oracle stays cheap.
LARGE_HEAD_WORK = 2**19
SMALL_WORK = 2**14  # cases this small also run the dropout check (64 runs)
# The dropout check runs the kernel and the baseline 64 times each: a quarter of the small cases (by seed) have it,
# about 40 of a default run's 200, which halves the run's time and still meets every dropout bug many times over.
DROPOUT_EVERY = 4



def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """float64 array -> the nearest values representable in ``dtype``, as float64 (exact)."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(TORCH_DTYPES[dtype]).double().numpy()


def _mask_requirement(mask: str) -> str | None:
    """Which declared mask support a mask kind needs."""
    return {"none": None, "is_causal": "is_causal", "additive": "additive", "alibi": "additive"}.get(mask, "bool")


@dataclass(frozen=True)
class VerifyCase:
    B: int
    H: int
    Lq: int
    Lk: int
    E: int  # d_head of q and k
    Ev: int  # d_v
    mask: str
    family: str
    logit_scale: float  # typical size of a logit
    scale: float | None  # scale override; None = 1/sqrt(E)
    non_contiguous: bool  # q, k, v as transposed views of (B, L, H, E) tensors
    seed: int

    @property
    def is_causal(self) -> bool:
        return self.mask == "is_causal"

    @property
    def is_small(self) -> bool:
        """Small enough for the dropout check's 64 runs."""
        return self.B * self.H * max(self.Lq, self.Lk) ** 2 * max(self.E, self.Ev) <= SMALL_WORK

    @property
    def effective_scale(self) -> float | None:
        """The scale passed to the kernel: the override, or for fp16_overflow the one that makes it overflow."""
        if self.family == "fp16_overflow":
            return self.logit_scale / (4.0 * FP16_MAX)
        return self.scale

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        scale = "default" if self.effective_scale is None else f"{self.effective_scale:.3g}"
        layout = "transposed views" if self.non_contiguous else "contiguous"
        return (f"B={self.B} H={self.H} Lq={self.Lq} Lk={self.Lk} d_head={self.E} d_v={self.Ev} mask={self.mask} "
                f"inputs={self.family} logits~{self.logit_scale:g} scale={scale} {layout} seed={self.seed}")

    def arrays(self, dtype: str) -> dict[str, Any]:
        """q, k, v, attn_mask (bool, float or None) and dout, float64 values representable in ``dtype``."""
        rng = np.random.default_rng(self.seed)
        B, H, Lq, Lk, E, Ev = self.B, self.H, self.Lq, self.Lk, self.E, self.Ev
        q = rng.standard_normal((B, H, Lq, E))  # (B, H, Lq, E)
        k = rng.standard_normal((B, H, Lk, E))  # (B, H, Lk, E)
        v = rng.standard_normal((B, H, Lk, Ev))  # (B, H, Lk, Ev)
        dout = rng.standard_normal((B, H, Lq, Ev))  # (B, H, Lq, Ev)
        scale = self.effective_scale if self.effective_scale is not None else 1.0 / np.sqrt(E)
        # Unit normal q, k give logits of spread scale * sqrt(E); each carries the square root of the rest.
        amplitude = np.sqrt(self.logit_scale / (scale * np.sqrt(E)))
        if self.family == "peaky":
            direction = rng.standard_normal((B, H, 1, E))  # (B, H, 1, E)
            q = direction + 0.3 * q  # (B, H, Lq, E)
            dominant = rng.integers(0, Lk, size=(B, H))  # (B, H)
            k[np.arange(B)[:, None], np.arange(H)[None, :], dominant] = 3.0 * direction[:, :, 0]
        elif self.family == "ties":
            k = k[:, :, rng.integers(0, max(1, Lk // 2), size=Lk)]  # (B, H, Lk, E), duplicated keys
            q = q[:, :, rng.integers(0, max(1, Lq // 2), size=Lq)]  # (B, H, Lq, E), duplicated queries
        elif self.family == "tiny":
            v = v * 4.0 * float(torch.finfo(TORCH_DTYPES[dtype]).tiny)  # (B, H, Lk, Ev)
        q, k = amplitude * q, amplitude * k
        return {"q": round_to(q, dtype), "k": round_to(k, dtype), "v": round_to(v, dtype),
                "attn_mask": self._mask(rng, dtype), "dout": round_to(dout, dtype)}

    def _mask(self, rng: np.random.Generator, dtype: str) -> np.ndarray | None:
        B, H, Lq, Lk = self.B, self.H, self.Lq, self.Lk
        if self.mask in ("none", "is_causal"):
            return None
        if self.mask in ("bool_shared", "bool_per_batch"):
            shape = (Lq, Lk) if self.mask == "bool_shared" else (B, 1, Lq, Lk)
            keep = rng.random(shape) < 0.6  # (Lq, Lk) or (B, 1, Lq, Lk)
            return _keep_one_per_row(keep, rng)
        if self.mask == "additive":
            # finite values as large as the logits (as ALiBi-style biases are), so that they matter
            additive = max(3.0, self.logit_scale) * rng.standard_normal((B, 1, Lq, Lk))  # (B, 1, Lq, Lk)
            blocked = ~_keep_one_per_row(rng.random((B, 1, Lq, Lk)) < 0.8, rng)
            return round_to(np.where(blocked, -np.inf, additive), dtype)
        if self.mask == "fully_masked_rows":
            keep = _keep_one_per_row(rng.random((B, H, Lq, Lk)) < 0.6, rng)  # (B, H, Lq, Lk)
            empty = rng.random((B, H, Lq)) < 0.3  # (B, H, Lq)
            empty[..., 0] = True  # at least one empty row in every (batch, head)
            keep[empty] = False
            return keep
        if self.mask == "single_key":
            chosen = rng.integers(0, Lk, size=(B, H, Lq, 1))  # (B, H, Lq, 1)
            return np.arange(Lk) == chosen  # (B, H, Lq, Lk)
        if self.mask == "key_padding":
            lengths = rng.integers(1, Lk + 1, size=(B, 1, 1, 1))  # (B, 1, 1, 1), each element's true length
            lengths[0] = max(1, Lk - 1)  # at least one element is padded (when Lk > 1)
            return np.arange(Lk) < lengths  # (B, 1, 1, Lk)
        if self.mask == "alibi":
            # ALiBi: -slope_h |i - j| with a geometric slope per head, sized so the bias matters against the logits
            slopes = max(1.0, self.logit_scale) * 2.0 ** -np.arange(H).reshape(1, H, 1, 1)  # (1, H, 1, 1)
            distance = np.abs(np.arange(Lq)[:, None] - np.arange(Lk)[None, :]) / max(Lq, Lk)  # (Lq, Lk)
            return round_to(-slopes * distance, dtype)  # (1, H, Lq, Lk)
        raise ValueError(f"mask: expected one of {MASK_KINDS}, got {self.mask!r}")


def _keep_one_per_row(keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make sure every query row keeps at least one key (fully masked rows are their own mask kind)."""
    Lk = keep.shape[-1]
    chosen = rng.integers(0, Lk, size=(*keep.shape[:-1], 1))  # (..., Lq, 1)
    return keep | (np.arange(Lk) == chosen)  # (..., Lq, Lk)


def applicable_relations(case: VerifyCase, support: KernelSupport) -> list[str]:
    """The relations checked on this case (all that hold for its mask and batch size).

    ``dropout`` (the statistical check of ``triad.verify.dropout``) runs the kernel 64 times: small cases only.
    """
    mask, B = case.mask, case.B
    relations = []
    if mask != "is_causal":
        relations.append("permutation")  # a causal mask pins keys to positions
    if "additive" in support.masks:
        relations.append("row_constant")  # every mask kind can be rewritten as an additive one
        if support.scale and support.max_head_dim > case.E:
            relations.append("bias_as_head_dim")  # one more head dim, the scale held by an override
    relations.append("linearity")
    if B > 1:
        relations.append("batch")
    if mask == "is_causal":
        relations.append("causal_prefix")
    if support.dropout and case.is_small and case.seed % DROPOUT_EVERY == 0:
        relations.append("dropout")
    return relations


def allowed_masks(support: KernelSupport) -> list[str]:
    """The mask kinds drawn: those whose mask form (bool, additive, is_causal) the kernel declares."""
    masks = [m for m in MASK_KINDS if _mask_requirement(m) is None or _mask_requirement(m) in support.masks]
    return [m for m in masks if m != "fully_masked_rows" or support.fully_masked_rows]


def _allowed_families(support: KernelSupport) -> list[str]:
    return [f for f in FAMILIES if f != "fp16_overflow" or support.scale]


def coverage_cases(support: KernelSupport) -> list[VerifyCase]:
    """One small case per mask kind the kernel supports, checked before the search, whatever hypothesis draws.

    The search is not uniform (it favours simple cases and, through ``target``, the neighbourhood of the
    worst margin so far), so a mask kind can go unseen in 200 examples; these cases make sure none does.
    They cycle through the input families, with logits of size 1 (so that every key, masked or not, carries
    weight: with logits in the hundreds one key takes it all and a wrong mask on the others hides), a tail
    block (17 keys), Lq != Lk, batch 2 and, every other case, transposed views.
    """
    families = _allowed_families(support)
    E = min(max(8, support.min_head_dim), support.max_head_dim)
    Lq, Lk = (7, 17) if support.different_lengths else (17, 17)
    return [
        VerifyCase(B=2, H=2, Lq=Lq, Lk=Lk, E=E, Ev=E, mask=mask, family=families[i % len(families)],
                   logit_scale=LOGIT_SCALES[0], scale=None,
                   non_contiguous=support.non_contiguous and i % 2 == 1, seed=i)
        for i, mask in enumerate(allowed_masks(support))
    ]


@st.composite
def verify_cases(draw: st.DrawFn, support: KernelSupport, dtype: str,
                 only_masks: tuple[str, ...] | None = None) -> VerifyCase:
    """Cases the kernel declares it supports (the rest are reported as skipped, never drawn); ``only_masks``
    narrows the mask kinds further."""
    masks, families = allowed_masks(support), _allowed_families(support)
    masks = [m for m in masks if only_masks is None or m in only_masks]
    longest = support.max_length or BLOCK_EDGE_LENGTHS[-1]
    lengths = st.one_of(st.integers(1, 12), st.sampled_from([n for n in BLOCK_EDGE_LENGTHS if n <= longest]))
    lo, hi = support.min_head_dim, support.max_head_dim
    head_dims = st.one_of(st.integers(lo, min(hi, max(lo, 32))),
                          st.sampled_from([d for d in HEAD_DIMS_LARGE if lo <= d <= hi] or [lo]))

    B = draw(st.integers(1, 3))
    H = draw(st.integers(1, 3))
    Lq = draw(lengths)
    Lk = draw(lengths) if support.different_lengths else Lq
    E = draw(head_dims)
    Ev = draw(st.one_of(st.just(E), head_dims)) if support.different_value_dim else E
    work = max(Lq, Lk) ** 2 * max(E, Ev)  # multiply-adds per (batch, head), within a factor 2
    if work > LARGE_HEAD_WORK and B * H > 2:
        B, H = 2, 1
    mask = draw(st.sampled_from(masks))
    return VerifyCase(
        B=B, H=H, Lq=Lq, Lk=Lk, E=E, Ev=Ev, mask=mask,
        family=draw(st.sampled_from(families)),
        logit_scale=draw(st.sampled_from(LOGIT_SCALES)),
        scale=draw(st.one_of(st.none(), st.floats(0.05, 2.0))) if support.scale else None,
        non_contiguous=draw(st.booleans()) if support.non_contiguous else False,
        seed=draw(st.integers(0, 2**32 - 1)),
    )
