"""Hypothesis strategies for the attention core.

A case is drawn as a few small integers and a seed; the arrays come from NumPy's
generator with that seed. Hypothesis then shrinks the shape, the mask kind and the
scale of a failure (the seed shrinks too), which is what a reader needs to see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from reference.masks import causal_mask, padding_mask

MASK_KINDS = (
    "none",
    "is_causal",  # SDPA's flag: causal, top-left aligned
    "causal_top_left",
    "causal_bottom_right",
    "padding",
    "random_keep",
    "additive",
    "fully_masked_rows",
)


@dataclass(frozen=True)
class AttentionCase:
    B: int
    H: int
    Lq: int
    Lk: int
    E: int
    Ev: int
    mask_kind: str
    logit_scale: float  # typical size of a score, up to 1e3
    scale: float | None  # scale override, None = 1/sqrt(E)
    seed: int

    def arrays(self) -> tuple[dict[str, np.ndarray | None], np.ndarray]:
        """q, k, v, attn_mask and an upstream gradient dout, all float64 (masks bool or float64)."""
        rng = np.random.default_rng(self.seed)
        # For unit normal entries scale * q.k has spread scale * sqrt(E); q and k each carry the
        # square root of what brings that spread to logit_scale.
        scale = self.scale if self.scale is not None else 1.0 / np.sqrt(self.E)
        amplitude = np.sqrt(self.logit_scale / (scale * np.sqrt(self.E)))
        q = amplitude * rng.standard_normal((self.B, self.H, self.Lq, self.E))
        k = amplitude * rng.standard_normal((self.B, self.H, self.Lk, self.E))
        v = rng.standard_normal((self.B, self.H, self.Lk, self.Ev))
        dout = rng.standard_normal((self.B, self.H, self.Lq, self.Ev))
        return {"q": q, "k": k, "v": v, "attn_mask": self._mask(rng)}, dout

    def _mask(self, rng: np.random.Generator) -> np.ndarray | None:
        B, H, Lq, Lk = self.B, self.H, self.Lq, self.Lk
        kind = self.mask_kind
        if kind in ("none", "is_causal"):
            return None
        if kind == "causal_top_left":
            return causal_mask(Lq, Lk, "top_left")  # (Lq, Lk)
        if kind == "causal_bottom_right":
            return causal_mask(Lq, Lk, "bottom_right")  # (Lq, Lk)
        if kind == "padding":
            lengths = rng.integers(1, Lk + 1, size=B)  # every sequence keeps at least one key
            tokens = np.where(np.arange(Lk)[None, :] < lengths[:, None], 7, 0)  # (B, Lk), pad_id 0
            return padding_mask(tokens, pad_id=0)  # (B, 1, 1, Lk)
        if kind == "random_keep":
            return rng.random((B, H, Lq, Lk)) < 0.7  # (B, H, Lq, Lk)
        if kind == "additive":
            mask = rng.standard_normal((B, 1, Lq, Lk)) * 3.0  # (B, 1, Lq, Lk), finite values matter too
            mask[rng.random(mask.shape) < 0.2] = -np.inf
            return mask
        if kind == "fully_masked_rows":
            keep = rng.random((B, H, Lq, Lk)) < 0.7  # (B, H, Lq, Lk)
            keep[:, :, rng.random(Lq) < 0.4, :] = False  # some query rows see no key at all
            keep[..., 0, :] = False  # at least one
            return keep
        raise ValueError(f"mask_kind: unknown {kind!r}")


@st.composite
def attention_cases(
    draw: st.DrawFn,
    max_len: int = 40,
    max_head_dim: int = 64,
    max_logit_scale: float = 1e3,
    mask_kinds: tuple[str, ...] = MASK_KINDS,
) -> AttentionCase:
    E = draw(st.integers(1, max_head_dim))
    return AttentionCase(
        B=draw(st.integers(1, 3)),
        H=draw(st.integers(1, 4)),
        Lq=draw(st.integers(1, max_len)),
        Lk=draw(st.integers(1, max_len)),
        E=E,
        Ev=draw(st.one_of(st.just(E), st.integers(1, max_head_dim))),
        mask_kind=draw(st.sampled_from(mask_kinds)),
        logit_scale=draw(st.sampled_from([s for s in (1.0, 10.0, 100.0, 1e3) if s <= max_logit_scale])),
        scale=draw(st.one_of(st.none(), st.floats(0.01, 2.0))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
