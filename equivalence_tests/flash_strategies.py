"""Hypothesis strategies for FlashAttention's interface (GQA, causal, windows, softcap, ALiBi, varlen).

As for the attention core (``strategies.py``), a case is a few small integers and a seed; the arrays come
from NumPy's generator with that seed, so hypothesis shrinks shapes and features, and a reader sees them.
Arrays are in FlashAttention's layout: q (B, Lq, H, d), k/v (B, Lk, Hkv, d); packed: (total, H, d).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from reference.score_mods import alibi_slopes_geometric

WINDOW_KINDS = ("none", "both", "left", "right", "zero", "beyond")
ALIBI_KINDS = ("none", "geometric", "random_h", "random_bh")


@dataclass(frozen=True)
class FlashCase:
    B: int
    Lq: int
    Lk: int
    n_kv: int  # Hkv
    n_rep: int  # H // Hkv (1 = MHA, H = MQA when n_kv = 1)
    d: int
    dv: int
    causal: bool
    window: tuple[int, int]
    softcap: float
    alibi: str
    softmax_scale: float | None
    seed: int

    @property
    def n_heads(self) -> int:
        return self.n_kv * self.n_rep

    def arrays(self) -> dict[str, np.ndarray]:
        """q, k, v, dout (float64, FlashAttention's layout)."""
        rng = np.random.default_rng(self.seed)
        return {"q": rng.standard_normal((self.B, self.Lq, self.n_heads, self.d)),
                "k": rng.standard_normal((self.B, self.Lk, self.n_kv, self.d)),
                "v": rng.standard_normal((self.B, self.Lk, self.n_kv, self.dv)),
                "dout": rng.standard_normal((self.B, self.Lq, self.n_heads, self.dv))}

    def kwargs(self) -> dict[str, Any]:
        """The keywords of flash_attention_forward for this case (no block_size)."""
        return {"softmax_scale": self.softmax_scale, "causal": self.causal, "window_size": self.window,
                "softcap": self.softcap, "alibi_slopes": alibi_slopes(self.alibi, self.B, self.n_heads, self.seed)}


def alibi_slopes(kind: str, batch: int, n_heads: int, seed: int) -> np.ndarray | None:
    """None, the standard geometric slopes (H,), or random slopes (H,) / (B, H) in [0, 1)."""
    rng = np.random.default_rng(seed + 1)
    if kind == "none":
        return None
    if kind == "geometric":
        return alibi_slopes_geometric(n_heads)
    return rng.random(n_heads) if kind == "random_h" else rng.random((batch, n_heads))


def window_from(kind: str, a: int, b: int, length: int) -> tuple[int, int]:
    """A window of the given kind: both sides, one side, zero width, or wider than every sequence."""
    return {"none": (-1, -1), "both": (a, b), "left": (a, -1), "right": (-1, b), "zero": (0, 0),
            "beyond": (length + a, length + b)}[kind]


@st.composite
def flash_cases(draw: st.DrawFn, max_len: int = 24, max_head_dim: int = 9, max_kv_heads: int = 3,
                max_rep: int = 4, allow_empty_rows: bool = True) -> FlashCase:
    d = draw(st.integers(1, max_head_dim))
    Lq, Lk = draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    kind = draw(st.sampled_from(WINDOW_KINDS))
    window = window_from(kind, draw(st.integers(0, max_len)), draw(st.integers(0, max_len)), max(Lq, Lk))
    causal = draw(st.booleans())
    if not allow_empty_rows:  # every query sees at least the key aligned with it (or the last key)
        causal, window = False, (-1, -1)
    return FlashCase(
        B=draw(st.integers(1, 2)), Lq=Lq, Lk=Lk, n_kv=draw(st.integers(1, max_kv_heads)),
        n_rep=draw(st.integers(1, max_rep)), d=d, dv=draw(st.one_of(st.just(d), st.integers(1, max_head_dim))),
        causal=causal, window=window,
        softcap=draw(st.sampled_from([0.0, 0.0, 1.0, 2.5, 5.0, 50.0])),
        alibi=draw(st.sampled_from(ALIBI_KINDS)),
        softmax_scale=draw(st.one_of(st.none(), st.floats(0.05, 2.0))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@dataclass(frozen=True)
class VarlenCase:
    lengths_q: tuple[int, ...]
    lengths_k: tuple[int, ...]
    n_kv: int
    n_rep: int
    d: int
    dv: int
    causal: bool
    window: tuple[int, int]
    softcap: float
    alibi: str
    seed: int
    cu_dtype: Any = field(default=np.int32)

    @property
    def n_heads(self) -> int:
        return self.n_kv * self.n_rep

    def cu_seqlens(self) -> tuple[np.ndarray, np.ndarray]:
        """cu_seqlens_q, cu_seqlens_k (N+1,) int32, from 0."""
        return tuple(np.concatenate([[0], np.cumsum(lengths)]).astype(self.cu_dtype)
                     for lengths in (self.lengths_q, self.lengths_k))

    def arrays(self) -> dict[str, np.ndarray]:
        """q (total_q, H, d), k (total_k, Hkv, d), v (total_k, Hkv, dv), dout (total_q, H, dv), float64."""
        rng = np.random.default_rng(self.seed)
        total_q, total_k = sum(self.lengths_q), sum(self.lengths_k)
        return {"q": rng.standard_normal((total_q, self.n_heads, self.d)),
                "k": rng.standard_normal((total_k, self.n_kv, self.d)),
                "v": rng.standard_normal((total_k, self.n_kv, self.dv)),
                "dout": rng.standard_normal((total_q, self.n_heads, self.dv))}

    def kwargs(self) -> dict[str, Any]:
        return {"causal": self.causal, "window_size": self.window, "softcap": self.softcap,
                "alibi_slopes": alibi_slopes(self.alibi, len(self.lengths_q), self.n_heads, self.seed)}


@st.composite
def varlen_cases(draw: st.DrawFn, max_sequences: int = 5, max_len: int = 9) -> VarlenCase:
    """1-5 sequences, empty ones and length 1 included, Lq_n != Lk_n."""
    n = draw(st.integers(1, max_sequences))
    lengths = st.lists(st.integers(0, max_len), min_size=n, max_size=n).map(tuple)
    kind = draw(st.sampled_from(WINDOW_KINDS))
    d = draw(st.integers(1, 6))
    return VarlenCase(
        lengths_q=draw(lengths), lengths_k=draw(lengths), n_kv=draw(st.integers(1, 2)),
        n_rep=draw(st.integers(1, 3)), d=d, dv=draw(st.one_of(st.just(d), st.integers(1, 6))),
        causal=draw(st.booleans()),
        window=window_from(kind, draw(st.integers(0, max_len)), draw(st.integers(0, max_len)), max_len),
        softcap=draw(st.sampled_from([0.0, 2.0, 50.0])), alibi=draw(st.sampled_from(ALIBI_KINDS)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
