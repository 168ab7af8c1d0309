"""What ``triad verify --interface flash|varlen`` searches: one case of FlashAttention's interface.

A case is a handful of small choices (heads and K/V heads, lengths or packed sequence lengths, head dim,
causal, window, softcap, ALiBi, scale, input family) and a seed; the arrays come from NumPy's generator
with that seed, so a case rebuilds bit for bit. Hypothesis shrinks towards the first entry of each
choice (the simplest). Before the search, ``flash_coverage_cases`` checks one small case per feature,
as the SDPA interface does per mask kind, so that no feature goes unseen.

Lengths come from 1-12 and from the tile boundaries kernels block by (multiples of 16, 64 and 128,
and one either side), up to ``KernelSupport.max_length`` keys (``FLASH_MAX_LENGTH`` = 300 when not declared).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from torch_impl.kernels import FEATURES
from triad.verify.cases import round_to
from triad.verify.support import KernelSupport

FLASH_FAMILIES = ("gaussian", "peaky", "ties")
TILE_LENGTHS = (15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257)
FLASH_HEAD_DIMS = (32, 64, 65, 128)
SOFTCAPS = (1.0, 2.5, 5.0, 50.0)
FLASH_LOGIT_SCALES = (1.0, 10.0, 100.0)
FLASH_MAX_LENGTH = 300  # "a few hundred keys" by default: every tile boundary up to 257
MAX_WORK = 2**21  # multiply-adds B * H * Lq * Lk * d of one case (the float64 oracle stays cheap)


@dataclass(frozen=True)
class FlashCase:
    interface: str  # "flash" or "varlen"
    H: int
    Hkv: int
    seqlens_q: tuple[int, ...]  # flash: B equal lengths; varlen: one per sequence
    seqlens_k: tuple[int, ...]
    d: int
    dv: int
    causal: bool
    window: tuple[int, int]  # (-1, -1) = none
    softcap: float  # 0 = off
    alibi: bool
    scale: float | None  # softmax_scale; None = 1/sqrt(d)
    family: str
    logit_scale: float
    seed: int

    @property
    def B(self) -> int:  # noqa: N802 - the shapes' names
        return len(self.seqlens_q)

    @property
    def Lq(self) -> int:  # noqa: N802 - the shapes' names
        return max(self.seqlens_q, default=0)

    @property
    def Lk(self) -> int:  # noqa: N802 - the shapes' names
        return max(self.seqlens_k, default=0)

    @property
    def n_rep(self) -> int:
        return self.H // self.Hkv

    @property
    def effective_scale(self) -> float:
        return 1.0 / np.sqrt(self.d) if self.scale is None else self.scale

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        lengths = (f"B={self.B} Lq={self.Lq} Lk={self.Lk}" if self.interface == "flash" else
                   f"seqlens_q={list(self.seqlens_q)} seqlens_k={list(self.seqlens_k)}")
        scale = "default" if self.scale is None else f"{self.scale:.3g}"
        return (f"{self.interface}: {lengths} H={self.H} Hkv={self.Hkv} d={self.d} dv={self.dv} "
                f"causal={self.causal} window={self.window} softcap={self.softcap:g} alibi={self.alibi} "
                f"scale={scale} inputs={self.family} logits~{self.logit_scale:g} seed={self.seed}")

    def arrays(self, dtype: str) -> dict[str, Any]:
        """q, k, v, dout (float64, representable in ``dtype``), the ALiBi slopes (float32 values) or None,
        and for varlen cu_seqlens_q/k; flash layout (B, L, H, d), varlen (total, H, d)."""
        rng = np.random.default_rng(self.seed)
        if self.interface == "flash":
            lead_q, lead_k = (self.B, self.Lq), (self.B, self.Lk)
        else:
            lead_q, lead_k = (sum(self.seqlens_q),), (sum(self.seqlens_k),)
        q = rng.standard_normal((*lead_q, self.H, self.d))  # (B, Lq, H, d) or (total_q, H, d)
        k = rng.standard_normal((*lead_k, self.Hkv, self.d))  # (B, Lk, Hkv, d)
        v = rng.standard_normal((*lead_k, self.Hkv, self.dv))  # (B, Lk, Hkv, dv)
        dout = rng.standard_normal((*lead_q, self.H, self.dv))  # like out
        amplitude = np.sqrt(self.logit_scale / (self.effective_scale * np.sqrt(self.d)))
        if self.family == "peaky" and k.shape[-3] > 0:
            direction = rng.standard_normal(self.d)  # (d,)
            q = direction + 0.3 * q
            k[..., int(rng.integers(0, k.shape[-3])), :, :] = 3.0 * direction  # one dominant key per element
        elif self.family == "ties" and k.shape[-3] > 1:
            k = np.take(k, rng.integers(0, max(1, k.shape[-3] // 2), size=k.shape[-3]), axis=-3)  # duplicated keys
        arrays: dict[str, Any] = {"q": round_to(amplitude * q, dtype), "k": round_to(amplitude * k, dtype),
                                  "v": round_to(v, dtype), "dout": round_to(dout, dtype), "alibi_slopes": None}
        if self.alibi:
            # geometric slopes sized so that the bias over the keys is as large as the logits
            size = max(1.0, self.logit_scale) / max(1, self.Lk)
            arrays["alibi_slopes"] = (size * 2.0 ** -np.arange(self.H)).astype(np.float32).astype(np.float64)  # (H,)
        if self.interface == "varlen":
            arrays["cu_seqlens_q"] = np.concatenate([[0], np.cumsum(self.seqlens_q)]).astype(np.int32)  # (N+1,)
            arrays["cu_seqlens_k"] = np.concatenate([[0], np.cumsum(self.seqlens_k)]).astype(np.int32)  # (N+1,)
        return arrays


def longest(support: KernelSupport) -> int:
    """The longest length drawn: the declared ``max_length``, else ``FLASH_MAX_LENGTH``."""
    return support.max_length or FLASH_MAX_LENGTH


def flash_features(support: KernelSupport) -> tuple[str, ...]:
    """The family features searched: those declared (all when none are declared)."""
    return support.features or FEATURES


def gqa_pairs(support: KernelSupport) -> list[tuple[int, int]]:
    """(H, Hkv) pairs: no GQA first, then ratios 2..8 with Hkv >= 2, then MQA (Hkv = 1)."""
    pairs = [(2, 2), (1, 1)]
    if "gqa" in flash_features(support):
        pairs += [(2 * r, 2) for r in support.gqa_ratios if r > 1] + [(r, 1) for r in support.gqa_ratios if r > 1]
    return pairs


def _case(interface: str, seqlens: tuple[tuple[int, ...], tuple[int, ...]], support: KernelSupport,
          seed: int, **options: Any) -> FlashCase:
    d = min(max(8, support.min_head_dim), support.max_head_dim)
    fields: dict[str, Any] = {"H": 2, "Hkv": 2, "d": d, "dv": d, "causal": False, "window": (-1, -1),
                              "softcap": 0.0, "alibi": False, "scale": None, "family": "gaussian",
                              "logit_scale": 1.0} | options
    return FlashCase(interface=interface, seqlens_q=seqlens[0], seqlens_k=seqlens[1], seed=seed, **fields)


def flash_coverage_cases(support: KernelSupport, interface: str) -> list[tuple[str, FlashCase]]:
    """One small case per feature the kernel supports, each named by the report line it covers."""
    features = flash_features(support)
    lengths = ((7,) * 2, (17,) * 2) if support.different_lengths else ((17,) * 2, (17,) * 2)
    if interface == "varlen":
        lengths = ((5, 0, 1, 9, 3), (4, 2, 1, 17, 0)) if support.different_lengths else ((5, 0, 1, 9), (5, 0, 1, 9))
    named: list[tuple[str, dict[str, Any]]] = [("plain", {}), ("causal (bottom-right)", {"causal": True})]
    if "gqa" in features:
        named += [(f"GQA H/Hkv = {r}", {"H": 2 * r, "Hkv": 2}) for r in support.gqa_ratios if r > 1]
        named += [("MQA (Hkv = 1)", {"H": 4, "Hkv": 1})]
    if "window" in features:
        named += [("window: left only", {"window": (3, -1)}), ("window: right only", {"window": (-1, 2)}),
                  ("window: both sides", {"window": (2, 3)}), ("window: 0", {"window": (0, 0)}),
                  ("window >= L", {"window": (40, 40)}), ("window + causal", {"window": (3, -1), "causal": True})]
    if "softcap" in features:
        named += [(f"softcap {c:g}", {"softcap": c, "logit_scale": 10.0}) for c in (1.0, 5.0, 50.0)]
        named += [("softcap + causal", {"softcap": 2.5, "logit_scale": 10.0, "causal": True})]
    if "alibi" in features:
        named += [("ALiBi", {"alibi": True}), ("ALiBi + causal", {"alibi": True, "causal": True})]
    cases = [(name, _case(interface, lengths, support, i, **options)) for i, (name, options) in enumerate(named)]
    if support.different_lengths and interface == "flash":
        cases.append(("Lq > Lk, causal", _case(interface, ((17,) * 2, (7,) * 2), support, 90, causal=True)))
        if "window" in features:
            cases.append(("Lq > Lk + 1, window left only",
                          _case(interface, ((17,) * 2, (7,) * 2), support, 91, window=(3, -1))))
    if interface == "flash":
        for i, n in enumerate(t for t in (64, 65, 128, 129) if t <= longest(support)):
            case = _case(interface, ((n,), (n,)), support, 100 + i, causal=i % 2 == 1)
            cases.append((f"tile boundary L = {n}", case))
    return cases


def _lengths(support: KernelSupport) -> st.SearchStrategy[int]:
    edges = [n for n in TILE_LENGTHS if n <= longest(support)]
    return st.one_of(st.integers(1, 12), st.sampled_from(edges)) if edges else st.integers(1, 12)


def draw_window(draw: st.DrawFn, Lk: int) -> tuple[int, int]:
    kind = draw(st.sampled_from(("none", "left", "right", "both", "zero", "wide")))
    side = st.integers(0, max(1, Lk))
    return {"none": (-1, -1), "left": (draw(side), -1), "right": (-1, draw(side)), "both": (draw(side), draw(side)),
            "zero": (0, 0), "wide": (Lk + draw(st.integers(0, 3)), Lk + draw(st.integers(0, 3)))}[kind]


@st.composite
def flash_cases(draw: st.DrawFn, support: KernelSupport, interface: str) -> FlashCase:
    """Cases the kernel declares it supports."""
    features = flash_features(support)
    H, Hkv = draw(st.sampled_from(gqa_pairs(support)))
    lengths = _lengths(support)
    if interface == "flash":
        B, Lq = draw(st.integers(1, 3)), draw(lengths)
        Lk = draw(lengths) if support.different_lengths else Lq
        seqlens = ((Lq,) * B, (Lk,) * B)
    else:
        n = draw(st.integers(1, 5))
        edges = [t for t in TILE_LENGTHS if t <= min(65, longest(support))]
        short = st.one_of(st.integers(0, 12), st.sampled_from(edges))
        seq_q = tuple(draw(st.lists(short, min_size=n, max_size=n)))
        seq_k = tuple(draw(st.lists(short, min_size=n, max_size=n))) if support.different_lengths else seq_q
        seqlens = (seq_q, seq_k)
    lo, hi = support.min_head_dim, support.max_head_dim
    d = draw(st.one_of(st.integers(lo, min(hi, max(lo, 16))), st.sampled_from([x for x in FLASH_HEAD_DIMS
                                                                                 if lo <= x <= hi] or [lo])))
    dv = draw(st.one_of(st.just(d), st.integers(lo, min(hi, max(lo, 16))))) if support.different_value_dim else d
    work = sum(a * b for a, b in zip(*seqlens, strict=True)) * H * max(d, dv)
    if work > MAX_WORK and interface == "flash":
        seqlens = (seqlens[0][:1], seqlens[1][:1])
    Lk = max(seqlens[1], default=0)
    return FlashCase(
        interface=interface, H=H, Hkv=Hkv, seqlens_q=seqlens[0], seqlens_k=seqlens[1], d=d, dv=dv,
        causal=draw(st.booleans()),
        window=draw_window(draw, Lk) if "window" in features else (-1, -1),
        softcap=draw(st.one_of(st.just(0.0), st.sampled_from(SOFTCAPS))) if "softcap" in features else 0.0,
        alibi=draw(st.booleans()) if "alibi" in features else False,
        scale=draw(st.one_of(st.none(), st.floats(0.05, 2.0))) if support.scale else None,
        family=draw(st.sampled_from(FLASH_FAMILIES)), logit_scale=draw(st.sampled_from(FLASH_LOGIT_SCALES)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
