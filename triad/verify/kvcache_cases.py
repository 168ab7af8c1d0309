"""What ``triad verify --interface kvcache`` searches: one decode step of FlashAttention's ``flash_attn_with_kvcache``.

A case is the queries (``Lq`` rows per element, 1-4 and sometimes more), the tokens already cached per element
(``cache_seqlens``, 0 to thousands), the new tokens appended (``Lnew``, 0-4), the cache's layout (contiguous, or
paged with ``page_size`` rows a page, a shuffled block table and spare blocks) and the flash interface's options
(GQA/MQA, causal, window, softcap, ALiBi, scale). Element ``b`` attends its ``Lk_b = cache_seqlens[b] + Lnew``
keys, the causal/window band aligned bottom-right to ``Lk_b`` (as FlashAttention's ``test_flash_attn_kvcache``
builds its reference: a key padding mask at ``cache_seqlens + seqlen_new``).

Every case **is** a varlen case (``KvcacheCase.varlen``: sequence ``b`` = element ``b``'s queries and its
``Lk_b`` keys, cache then new), whose arrays the case lays out as a cache: the first ``cache_seqlens[b]`` keys
in the cache, the last ``Lnew`` as the new ``k``/``v``. So the varlen oracle, its rule and its LSE check apply
unchanged. The cache's other slots (past ``cache_seqlens[b]``, the table's spare entries, the spare blocks) hold
finite stale values of another size, so a kernel that reads them is caught.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from triad.verify.cases import round_to
from triad.verify.flash_cases import (
    FLASH_FAMILIES,
    FLASH_HEAD_DIMS,
    FLASH_LOGIT_SCALES,
    MAX_WORK,
    SOFTCAPS,
    FlashCase,
    draw_window,
    flash_features,
    gqa_pairs,
)
from triad.verify.support import KernelSupport

KVCACHE_MAX_LENGTH = 2048  # keys of one element by default: "thousands of tokens", bounded by MAX_WORK
CACHE_LENGTHS = (15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 2047)
STALE_K, STALE_V = 4.0, 3.0  # stale slots: keys 4x the live ones' size, values offset by +3


@dataclass(frozen=True)
class KvcacheCase:
    H: int
    Hkv: int
    Lq: int  # query rows per element
    cache_seqlens: tuple[int, ...]  # tokens already in the cache, one per element
    Lnew: int  # new tokens appended (0: k = v = None)
    page_size: int  # 0: a contiguous cache (B, Lcache, Hkv, d)
    spare: int  # slots (contiguous) or blocks (paged) beyond those the longest element needs
    d: int
    causal: bool
    window: tuple[int, int]
    softcap: float
    alibi: bool
    scale: float | None
    family: str
    logit_scale: float
    seed: int

    @property
    def B(self) -> int:  # noqa: N802 - the shapes' names
        return len(self.cache_seqlens)

    @property
    def seqlens_k(self) -> tuple[int, ...]:
        """Keys attended per element: cache then new."""
        return tuple(n + self.Lnew for n in self.cache_seqlens)

    @property
    def Lk(self) -> int:  # noqa: N802 - the shapes' names
        return max(self.seqlens_k, default=0)

    @property
    def blocks_per_element(self) -> int:
        """Entries of a block table row (paged): one slot past the longest element, and one spare entry."""
        return -(-(self.Lk + 1) // self.page_size) + 1 if self.page_size else 1

    @property
    def capacity(self) -> int:
        """Slots of one element's logical cache: Lcache (contiguous) or its table row's pages."""
        return self.blocks_per_element * self.page_size if self.page_size else self.Lk + 1 + self.spare

    @property
    def n_rep(self) -> int:
        return self.H // self.Hkv

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        layout = f"paged page_size={self.page_size}" if self.page_size else f"contiguous Lcache={self.capacity}"
        scale = "default" if self.scale is None else f"{self.scale:.3g}"
        return (f"kvcache: B={self.B} Lq={self.Lq} cache_seqlens={list(self.cache_seqlens)} Lnew={self.Lnew} "
                f"{layout} H={self.H} Hkv={self.Hkv} d={self.d} causal={self.causal} window={self.window} "
                f"softcap={self.softcap:g} alibi={self.alibi} scale={scale} inputs={self.family} "
                f"logits~{self.logit_scale:g} seed={self.seed}")

    def varlen(self) -> FlashCase:
        """The equivalent varlen case: sequence b = element b's Lq queries against its Lk_b keys."""
        return FlashCase("varlen", self.H, self.Hkv, (self.Lq,) * self.B, self.seqlens_k, self.d, self.d,
                         self.causal, self.window, self.softcap, self.alibi, self.scale, self.family,
                         self.logit_scale, self.seed)

    def arrays(self, dtype: str) -> dict[str, Any]:
        """The varlen case's arrays (``varlen``) and the kernel's inputs (float64 arrays representable in
        ``dtype``): q (B, Lq, H, d), k_cache/v_cache (B, Lcache, Hkv, d) or (num_blocks, page_size, Hkv, d),
        k/v (B, Lnew, Hkv, d) or None, cache_seqlens (B,) and block_table (B, blocks_per_element) int32 or None,
        dout (B, Lq, H, d), alibi_slopes (H,) or None."""
        packed = self.varlen().arrays(dtype)
        B, Lq, H, Hkv, d = self.B, self.Lq, self.H, self.Hkv, self.d
        cu_k = packed["cu_seqlens_k"]  # (B+1,)
        rng = np.random.default_rng([self.seed, 1])  # the stale values and the table: apart from the varlen draws
        live = float(np.max(np.abs(packed["k"]), initial=1.0))
        k_logical = round_to(STALE_K * live * rng.standard_normal((B, self.capacity, Hkv, d)), dtype)  # stale
        v_logical = round_to(STALE_V + rng.standard_normal((B, self.capacity, Hkv, d)), dtype)
        k_new, v_new = np.zeros((B, self.Lnew, Hkv, d)), np.zeros((B, self.Lnew, Hkv, d))  # (B, Lnew, Hkv, d)
        for b, cached in enumerate(self.cache_seqlens):
            keys = slice(cu_k[b], cu_k[b] + cached)
            k_logical[b, :cached], v_logical[b, :cached] = packed["k"][keys], packed["v"][keys]
            k_new[b], v_new[b] = packed["k"][cu_k[b] + cached:cu_k[b + 1]], packed["v"][cu_k[b] + cached:cu_k[b + 1]]
        arrays: dict[str, Any] = {
            "varlen": packed, "q": packed["q"].reshape(B, Lq, H, d), "dout": packed["dout"].reshape(B, Lq, H, d),
            "k": k_new if self.Lnew else None, "v": v_new if self.Lnew else None,
            "cache_seqlens": np.array(self.cache_seqlens, dtype=np.int32), "alibi_slopes": packed["alibi_slopes"],
            "k_cache": k_logical, "v_cache": v_logical, "block_table": None}
        if self.page_size:
            arrays |= paged_layout(k_logical, v_logical, self.page_size, self.spare, rng, dtype)
        return arrays


def paged_layout(k_logical: np.ndarray, v_logical: np.ndarray, page_size: int, spare_blocks: int,
                 rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    """The logical caches (B, capacity, Hkv, d) as pages (num_blocks, page_size, Hkv, d) through a shuffled block
    table (B, capacity / page_size), with ``spare_blocks`` more blocks of stale values no row points at."""
    B, capacity, Hkv, d = k_logical.shape
    per_element = capacity // page_size
    num_blocks = B * per_element + spare_blocks
    order = rng.permutation(num_blocks)  # (num_blocks,)
    if num_blocks > 1 and np.array_equal(order, np.arange(num_blocks)):
        order = order[::-1]  # never the identity: a kernel reading pages in physical order must be seen
    table = order[: B * per_element].reshape(B, per_element).astype(np.int32)  # (B, blocks)
    pages = {name: np.zeros((num_blocks, page_size, Hkv, d)) for name in ("k_cache", "v_cache")}
    for name, logical, stale in (("k_cache", k_logical, STALE_K), ("v_cache", v_logical, STALE_V)):
        pages[name][:] = round_to(stale + rng.standard_normal(pages[name].shape), dtype)  # the spare blocks
        pages[name][table.reshape(-1)] = logical.reshape(B * per_element, page_size, Hkv, d)
    return pages | {"block_table": table}


def kvcache_max_length(support: KernelSupport) -> int:
    return support.max_length or KVCACHE_MAX_LENGTH


def _coverage_case(support: KernelSupport, seed: int, **options: Any) -> KvcacheCase:
    d = min(max(8, support.min_head_dim), support.max_head_dim)
    fields: dict[str, Any] = {"H": 2, "Hkv": 2, "Lq": 2, "cache_seqlens": (9, 20), "Lnew": 1, "page_size": 0,
                              "spare": 2, "d": d, "causal": False, "window": (-1, -1), "softcap": 0.0,
                              "alibi": False, "scale": None, "family": "gaussian", "logit_scale": 1.0} | options
    longest = kvcache_max_length(support) - fields["Lnew"]  # a kernel's declared max_length holds here too
    return KvcacheCase(seed=seed, **fields | {"cache_seqlens": tuple(min(n, longest) for n in fields["cache_seqlens"])})


def kvcache_coverage_cases(support: KernelSupport) -> list[tuple[str, KvcacheCase]]:
    """One small case per feature the kernel supports, each named by the report line it covers."""
    features = flash_features(support)
    named: list[tuple[str, dict[str, Any]]] = [
        ("contiguous", {}), ("append: Lnew = 3", {"Lnew": 3}), ("no append (k = v = None)", {"Lnew": 0}),
        ("decode Lq = 1", {"Lq": 1}), ("causal (bottom-right to cache_seqlens + Lnew)", {"causal": True, "Lq": 3}),
        ("empty cache", {"cache_seqlens": (0, 0), "Lnew": 2, "causal": True}),
        ("empty cache, nothing appended (no keys)", {"cache_seqlens": (0, 5), "Lnew": 0})]
    # each page size with a table row that ends on a page boundary (31 + 1 keys) and one that does not
    named += [(f"paged: page size {p}", {"page_size": p, "cache_seqlens": (31, 2 * p + 3), "causal": True})
              for p in support.page_sizes]
    if "gqa" in features:
        named += [("GQA H/Hkv = 2", {"H": 4, "Hkv": 2}), ("MQA (Hkv = 1)", {"H": 4, "Hkv": 1})]
    if "window" in features:
        named += [("window + causal", {"window": (3, -1), "causal": True, "Lq": 3}),
                  ("window: both sides", {"window": (2, 3), "Lq": 3})]
    if "softcap" in features:
        named += [("softcap", {"softcap": 2.5, "logit_scale": 10.0, "causal": True})]
    if "alibi" in features:
        named += [("ALiBi + causal", {"alibi": True, "causal": True, "Lq": 3})]
    named += [("long cache", {"cache_seqlens": (1023,), "Lq": 1})]
    return [(name, _coverage_case(support, 200 + i, **options)) for i, (name, options) in enumerate(named)]


def _cache_length(support: KernelSupport) -> st.SearchStrategy[int]:
    edges = [n for n in CACHE_LENGTHS if n <= kvcache_max_length(support) - 8]
    return st.one_of(st.integers(0, 12), st.sampled_from(edges)) if edges else st.integers(0, 12)


@st.composite
def kvcache_cases(draw: st.DrawFn, support: KernelSupport) -> KvcacheCase:
    """Cases the kernel declares it supports; the work B * H * Lq * Lk * d stays under MAX_WORK."""
    features = flash_features(support)
    H, Hkv = draw(st.sampled_from(gqa_pairs(support)))
    lo, hi = support.min_head_dim, support.max_head_dim
    d = draw(st.one_of(st.integers(lo, min(hi, max(lo, 16))), st.sampled_from([x for x in FLASH_HEAD_DIMS
                                                                                 if lo <= x <= hi] or [lo])))
    Lq = draw(st.one_of(st.integers(1, 4), st.integers(5, 16)))
    Lnew = draw(st.integers(0, 4))
    B = draw(st.integers(1, 3))
    budget = max(0, MAX_WORK // (Lq * H * d) - B * Lnew)  # keys the oracle may take, all elements together
    cached = tuple(min(n, budget // B) for n in draw(st.lists(_cache_length(support), min_size=B, max_size=B)))
    page_size = draw(st.sampled_from((0, *support.page_sizes)))
    case = KvcacheCase(
        H=H, Hkv=Hkv, Lq=Lq, cache_seqlens=cached, Lnew=Lnew, page_size=page_size, spare=draw(st.integers(0, 3)),
        d=d, causal=draw(st.booleans()), window=(-1, -1), softcap=0.0, alibi=False, scale=None,
        family=draw(st.sampled_from(FLASH_FAMILIES)), logit_scale=draw(st.sampled_from(FLASH_LOGIT_SCALES)),
        seed=draw(st.integers(0, 2**32 - 1)))
    return dataclasses.replace(
        case, window=draw_window(draw, case.Lk) if "window" in features else (-1, -1),
        softcap=draw(st.one_of(st.just(0.0), st.sampled_from(SOFTCAPS))) if "softcap" in features else 0.0,
        alibi=draw(st.booleans()) if "alibi" in features else False,
        scale=draw(st.one_of(st.none(), st.floats(0.05, 2.0))) if support.scale else None)
