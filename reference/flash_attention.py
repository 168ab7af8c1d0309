r"""FlashAttention's interface in NumPy: GQA, causal, sliding window, softcap, ALiBi, packed sequences, the LSE.

Layouts are FlashAttention's: ``q (B, Lq, H, d)``, ``k (B, Lk, Hkv, d)``, ``v (B, Lk, Hkv, dv)``,
``out (B, Lq, H, dv)``, ``lse (B, H, Lq)``; packed (varlen): ``q (total_q, H, d)``, ``k/v (total_k, Hkv, .)``,
``lse (H, total_q)``. Everything is computed in the input dtype (float32 or float64; float64 is the
oracle), and the LSE is returned in that dtype too (FlashAttention returns float32).

**The score pipeline** (query :math:`i`, key :math:`j`, head :math:`h`, anchor :math:`a_i = i + L_k - L_q`):

.. math::

    S = s\, Q K^\top \;\to\; S \leftarrow c \tanh(S/c) \;\to\; S \leftarrow S - m_h |a_i - j|

    \;\to\; S_{ij} \leftarrow -\infty \text{ unless } a_i - \ell \le j \le a_i + r

    \;\to\; P = \mathrm{softmax}(S), \quad O = P V, \quad \mathrm{LSE}_i = \log \textstyle\sum_j e^{S_{ij}}

with :math:`s` = ``softmax_scale`` (default :math:`1/\sqrt d`), :math:`c` = ``softcap`` (0 = off),
:math:`m_h` the ALiBi slopes, :math:`(\ell, r)` = ``window_size`` (-1 = unbounded; ``causal`` sets
:math:`r = 0`), and in varlen also :math:`-\infty` between sequences. Softcap comes *before* the bias
and the masks, so a masked key stays masked. The pieces live in ``reference.score_mods``,
``reference.masks`` and ``reference.softmax``; this module only composes them.

**GQA.** Query head :math:`h = g\,r + t` (:math:`r = H / H_{kv}`) reads K/V head :math:`g`. The
:math:`r` query heads of a group are stacked as rows :math:`i\,r + t` of one matrix per K/V head
("grouped rows", ``(B, Hkv, Lq·r, d)``), so one matmul serves the group and the backward's group sum
:math:`dK_g = \sum_t dK_{g r + t}` is the matmul's own sum over rows.

**Empty rows.** A query that sees no key (``causal`` with :math:`L_q > L_k`, a window beyond the keys,
an empty key sequence) has output 0, gradients 0 and :math:`\mathrm{LSE} = -\infty` (:math:`\log 0`,
what FlashAttention 3 writes; FlashAttention 2 writes :math:`+\infty` so that its backward's
:math:`e^{S - \mathrm{LSE}}` is 0 -- the tiled backward here does the same internally).

**Dense backward** (``block_size=None``), from :math:`dO`:
:math:`dV = P^\top dO`, :math:`dP = dO\,V^\top`, :math:`dS = P \circ (dP - \mathrm{rowsum}(dP \circ P))`,
through the softcap :math:`dS \leftarrow dS \circ (1 - \tanh^2(S/c))` (the bias and the masks pass
:math:`dS` unchanged), :math:`dQ = s\, dS\, K`, :math:`dK = s\, dS^\top Q`.

**The tiled algorithm** (``block_size=b``): FlashAttention's, with tiles of :math:`b` queries and
:math:`b` keys and never an :math:`L_q \times L_k` array.

*Forward: the online softmax.* Visit the key tiles :math:`t = 1, 2, \dots` of a query tile, keeping per
row a running maximum :math:`m`, a running sum :math:`\ell` and an unnormalised output :math:`A`:

.. math::

    m^{(t)} = \max\big(m^{(t-1)}, \max_{j \in t} S_{ij}\big), \quad
    \alpha = e^{m^{(t-1)} - m^{(t)}}, \quad \tilde P_{ij} = e^{S_{ij} - m^{(t)}} \\
    \ell^{(t)} = \alpha\, \ell^{(t-1)} + \textstyle\sum_{j \in t} \tilde P_{ij}, \qquad
    A^{(t)} = \alpha\, A^{(t-1)} + \tilde P V_t

By induction :math:`\ell^{(t)} = \sum_{j \le t} e^{S_{ij} - m^{(t)}}` and
:math:`A^{(t)} = \sum_{j \le t} e^{S_{ij} - m^{(t)}} v_j`: multiplying by :math:`\alpha` moves the old
terms from the old maximum to the new one, :math:`e^{S - m^{(t-1)}} e^{m^{(t-1)} - m^{(t)}} = e^{S - m^{(t)}}`,
and no exponent is positive, so nothing overflows. At the end :math:`O = A / \ell` and
:math:`\mathrm{LSE} = m + \log \ell`, the exact :math:`\log \sum_j e^{S_{ij}}`. A row that has seen no
key yet has :math:`m = -\infty`; it uses 0 in place of :math:`m` (so :math:`\alpha = 0`, :math:`\tilde P = 0`).

*Backward: recompute P from the LSE.* :math:`P_{ij} = e^{S_{ij} - \mathrm{LSE}_i}` exactly, so the
backward recomputes each tile of :math:`S` and :math:`P` instead of storing them. The softmax term
needs :math:`\mathrm{rowsum}(dP \circ P)`, a sum over *all* keys; but
:math:`\sum_j dP_{ij} P_{ij} = \sum_j (dO_i \cdot v_j) P_{ij} = dO_i \cdot \sum_j P_{ij} v_j = dO_i \cdot O_i`,
so :math:`D = \mathrm{rowsum}(dO \circ O)` is known before the loop, and per tile

.. math::

    dV_t \mathrel{+}= P_t^\top dO, \quad dP_t = dO\, V_t^\top, \quad dS_t = P_t \circ (dP_t - D), \quad
    dQ \mathrel{+}= s\, dS_t K_t, \quad dK_t \mathrel{+}= s\, dS_t^\top Q

(with the softcap factor on :math:`dS_t` as in the dense backward). An empty row's LSE is taken as
:math:`+\infty` there, so its :math:`P` is :math:`e^{-\infty} = 0`. Tiles that the causal/window band
hides entirely are skipped (that is where the causal speed-up comes from) and tiles it covers
entirely are not masked. Memory per head: :math:`O((L_q + L_k)\,d + b^2)`. Packed sequences run the
tiled algorithm sequence by sequence, so no :math:`\mathrm{total}_q \times \mathrm{total}_k` array exists either.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController

from reference.masks import band_keep, checked_cu_seqlens, effective_window, sequence_ids, varlen_anchors
from reference.score_mods import alibi_row_bias, softcap_backward, softcap_forward
from reference.softmax import masked_softmax_forward, softmax_backward
from reference.validate import (
    check_alibi_slopes,
    check_block_size,
    check_cu_seqlens_pair,
    check_flash_dtypes,
    check_flash_shapes,
    check_softcap,
    check_softmax_scale,
)

T = TypeVar("T")

DEFAULT_BLOCK_SIZE = 512  # measured: benchmarks/flash_reference_bench.py
# The threads the tiled algorithm's row tiles run on (one per core; 1 runs them in order on this thread).
TILE_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Problem:
    """One attention problem in grouped-row layout (row ``i·r + t`` = query ``i`` of head ``g·r + t``).

    q (B, Hkv, R, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, dv) with R = Lq·r; anchors (R,) the key aligned
    with each row; row_slopes (1 or B, Hkv, R) or None; row_doc (R,) / col_doc (Lk,) sequence ids (packed
    dense only) or None.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    anchors: np.ndarray
    row_slopes: np.ndarray | None
    row_doc: np.ndarray | None
    col_doc: np.ndarray | None
    n_rep: int  # r = H // Hkv
    scale: Any  # a scalar of the input dtype
    softcap: float
    left: int
    right: int
    key_pos: np.ndarray | None = None  # (Lk,) the positions of the keys k holds, when a subset (None: 0..Lk-1)


def to_rows(x: np.ndarray, n_kv: int) -> np.ndarray:
    """(B, L, H, ...) -> (B, Hkv, L·r, ...): heads g·r + t of position i become row i·r + t of K/V head g."""
    B, L, H = x.shape[:3]
    grouped = x.reshape((B, L, n_kv, H // n_kv, *x.shape[3:]))  # (B, L, Hkv, r, ...)
    return np.ascontiguousarray(np.moveaxis(grouped, 2, 1)).reshape((B, n_kv, L * (H // n_kv), *x.shape[3:]))


def from_rows(x: np.ndarray, n_rep: int) -> np.ndarray:
    """(B, Hkv, L·r, ...) -> (B, L, H, ...), the inverse of ``to_rows``."""
    B, n_kv, R = x.shape[:3]
    grouped = x.reshape((B, n_kv, R // n_rep, n_rep, *x.shape[3:]))  # (B, Hkv, L, r, ...)
    return np.moveaxis(grouped, 1, 2).reshape((B, R // n_rep, n_kv * n_rep, *x.shape[3:]))  # (B, L, H, ...)


def lse_from_rows(lse: np.ndarray, n_rep: int) -> np.ndarray:
    """(B, Hkv, L·r) -> (B, H, L)."""
    return np.moveaxis(from_rows(lse, n_rep), 1, 2)  # (B, H, L)


def tile_scores(p: Problem, rows: slice, cols: slice, *, masked: bool = True) -> tuple[np.ndarray, Any]:
    """The score pipeline on rows x cols: (S (B, Hkv, R_t, C_t) with -inf at hidden keys, the softcap cache).

    ``masked=False`` skips the band (a tile the band covers entirely); the document mask always applies.
    """
    scores = (p.scale * p.q[:, :, rows]) @ np.swapaxes(p.k[:, :, cols], -1, -2)  # (B, Hkv, R_t, C_t)
    scores, tanh = softcap_forward(scores, p.softcap)  # (B, Hkv, R_t, C_t)
    positions = np.arange(p.k.shape[2]) if p.key_pos is None else p.key_pos  # (Lk,)
    anchors, key_idx = p.anchors[rows], positions[cols]  # (R_t,), (C_t,)
    if p.row_slopes is not None:
        scores = scores + alibi_row_bias(p.row_slopes[:, :, rows], anchors, key_idx)  # (B, Hkv, R_t, C_t)
    banded = masked and (p.left >= 0 or p.right >= 0)  # no window and no causal: nothing to hide
    keep = band_keep(anchors, key_idx, p.left, p.right) if banded else None  # (R_t, C_t)
    if p.row_doc is not None:
        same = p.row_doc[rows, None] == p.col_doc[None, cols]  # (R_t, C_t)
        keep = same if keep is None else keep & same
    if keep is not None and not keep.all():
        scores = np.where(keep, scores, -np.inf)  # (B, Hkv, R_t, C_t)
    return scores, tanh


def dense_forward(p: Problem) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """out (B, Hkv, R, dv), lse (B, Hkv, R) and the saved probabilities: the whole score matrix at once."""
    scores, tanh = tile_scores(p, slice(None), slice(None))  # (B, Hkv, R, Lk)
    probs, lse = masked_softmax_forward(scores)  # (B, Hkv, R, Lk), (B, Hkv, R)
    return probs @ p.v, lse, {"probs": probs, "tanh": tanh}  # (B, Hkv, R, dv)


def dense_backward(p: Problem, dout: np.ndarray, saved: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """dout (B, Hkv, R, dv) -> dq (B, Hkv, R, d), dk (B, Hkv, Lk, d), dv (B, Hkv, Lk, dv)."""
    probs = saved["probs"]  # (B, Hkv, R, Lk)
    dv = np.swapaxes(probs, -1, -2) @ dout  # (B, Hkv, Lk, dv): dV = P^T dO, summed over the group's rows
    dprobs = dout @ np.swapaxes(p.v, -1, -2)  # (B, Hkv, R, Lk): dP = dO V^T
    dscores = softmax_backward(dprobs, probs)  # (B, Hkv, R, Lk): dS = P o (dP - rowsum(dP o P))
    dscores = softcap_backward(dscores, saved["tanh"])  # (B, Hkv, R, Lk): dS o (1 - tanh^2)
    dq = p.scale * (dscores @ p.k)  # (B, Hkv, R, d): dQ = s dS K
    dk = p.scale * (np.swapaxes(dscores, -1, -2) @ p.q)  # (B, Hkv, Lk, d): dK = s dS^T Q
    return dq, dk, dv


def key_range(p: Problem, rows: slice) -> tuple[int, int, int, int]:
    """For a row tile: the keys [lo, hi) any of its rows may see, and [full_lo, full_hi) that all of them see.

    The anchors of a tile grow with the row (one K/V head's rows are in query order), so the band of the
    first row and of the last row bound every row's band.
    """
    Lk = p.k.shape[2]
    a_first, a_last = int(p.anchors[rows][0]), int(p.anchors[rows][-1])
    lo = 0 if p.left < 0 else max(0, a_first - p.left)
    hi = Lk if p.right < 0 else min(Lk, a_last + p.right + 1)
    full_lo = 0 if p.left < 0 else max(0, a_last - p.left)
    full_hi = Lk if p.right < 0 else min(Lk, a_first + p.right + 1)
    return lo, max(lo, hi), full_lo, full_hi


def exp_shifted_inplace(scores: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """scores <- e^(scores - shift) in place, scores (..., R, C), shift (..., R, 1); returns scores."""
    return np.exp(np.subtract(scores, shift, out=scores), out=scores)


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def on_tile_threads(work: Callable[[list[Any]], T], jobs: list[Any]) -> list[T]:
    """``[work(jobs[w::n]) for w in range(n)]`` on ``n = min(TILE_THREADS, len(jobs))`` threads, in that order.

    A tile's matmuls are small (one side is the head dim), so BLAS's own threads spend much of their time
    waiting on one another, and far more on a loaded machine; and the exponentials and the other element-wise
    steps run on one core. Row tiles are independent, so each core runs whole tiles instead, with BLAS held
    to one thread meanwhile (NumPy releases the GIL in both). The split is fixed (round robin, which
    balances the causal triangle), so the results do not depend on the threads' timing.
    """
    n = min(TILE_THREADS, len(jobs))
    if n <= 1:
        return [work(jobs)]
    with _blas().limit(limits=1, user_api="blas"), ThreadPoolExecutor(n, thread_name_prefix="flash-tiles") as pool:
        return list(pool.map(work, [jobs[w::n] for w in range(n)]))


def tiles(p: Problem, block_size: int) -> Iterator[tuple[slice, list[tuple[slice, bool]]]]:
    """Per tile of ``block_size`` queries (``block_size·r`` rows): its rows and its key tiles (cols, masked),
    only those the band does not hide entirely; ``masked`` is False where the band covers the whole tile."""
    R, step = p.q.shape[2], block_size * p.n_rep
    for r0 in range(0, R, step):
        rows = slice(r0, min(R, r0 + step))
        lo, hi, full_lo, full_hi = key_range(p, rows)
        key_tiles = []
        for c0 in range(lo, hi, block_size):
            c1 = min(hi, c0 + block_size)
            key_tiles.append((slice(c0, c1), not (full_lo <= c0 and c1 <= full_hi)))
        yield rows, key_tiles


def _forward_row_tiles(p: Problem, block_size: int, out: np.ndarray, lse: np.ndarray,
                       row_tiles: list[tuple[slice, list[tuple[slice, bool]]]]) -> None:
    """The online softmax of each row tile, written into its rows of ``out`` and ``lse``."""
    B, n_kv = p.q.shape[:2]
    for rows, key_tiles in row_tiles:
        n_rows = rows.stop - rows.start
        acc = np.zeros((B, n_kv, n_rows, p.v.shape[-1]), dtype=p.q.dtype)  # (B, Hkv, R_t, dv): A
        row_max = np.full((B, n_kv, n_rows, 1), -np.inf, dtype=p.q.dtype)  # (B, Hkv, R_t, 1): m
        row_sum = np.zeros((B, n_kv, n_rows, 1), dtype=p.q.dtype)  # (B, Hkv, R_t, 1): l
        for cols, masked in key_tiles:
            scores, _ = tile_scores(p, rows, cols, masked=masked)  # (B, Hkv, R_t, C_t)
            new_max = np.maximum(row_max, scores.max(axis=-1, keepdims=True))  # (B, Hkv, R_t, 1)
            shift = np.where(np.isfinite(new_max), new_max, 0.0)  # a row with no key yet: 0, so P~ = 0
            rescale = np.exp(row_max - shift)  # (B, Hkv, R_t, 1): alpha = e^(m_old - m_new); 0 while m = -inf
            probs = exp_shifted_inplace(scores, shift)  # (B, Hkv, R_t, C_t): P~ = e^(S - m)
            row_sum = rescale * row_sum + probs.sum(axis=-1, keepdims=True)  # l = alpha l + rowsum(P~)
            acc *= rescale
            acc += probs @ p.v[:, :, cols]  # A = alpha A + P~ V_t
            row_max = new_max
        seen = row_sum > 0  # (B, Hkv, R_t, 1); False on an empty row
        out[:, :, rows] = acc / np.where(seen, row_sum, 1.0)  # O = A / l; 0 on an empty row
        with np.errstate(divide="ignore"):
            lse[:, :, rows] = (row_max + np.log(row_sum))[..., 0]  # LSE = m + log l; -inf on an empty row


def tiled_forward(p: Problem, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """out (B, Hkv, R, dv), lse (B, Hkv, R) by the online softmax over key tiles (see the module docstring)."""
    B, n_kv, R = p.q.shape[:3]
    out = np.zeros((B, n_kv, R, p.v.shape[-1]), dtype=p.q.dtype)  # (B, Hkv, R, dv)
    lse = np.full((B, n_kv, R), -np.inf, dtype=p.q.dtype)  # (B, Hkv, R)
    on_tile_threads(functools.partial(_forward_row_tiles, p, block_size, out, lse), list(tiles(p, block_size)))
    return out, lse


def _backward_row_tiles(p: Problem, delta: np.ndarray, lse_for_p: np.ndarray, dout: np.ndarray, dq: np.ndarray,
                        row_tiles: list[tuple[slice, list[tuple[slice, bool]]]]) -> tuple[np.ndarray, np.ndarray]:
    """Each row tile's dQ, written into ``dq``; returns these row tiles' share of dK, dV (summed by the caller)."""
    dk = np.zeros(p.k.shape, dtype=p.q.dtype)  # (B, Hkv, Lk, d)
    dv = np.zeros(p.v.shape, dtype=p.q.dtype)  # (B, Hkv, Lk, dv)
    for rows, key_tiles in row_tiles:
        q_scaled = p.scale * p.q[:, :, rows]  # (B, Hkv, R_t, d)
        dout_t = dout[:, :, rows]  # (B, Hkv, R_t, dv)
        dq_t = np.zeros(q_scaled.shape, dtype=p.q.dtype)  # (B, Hkv, R_t, d)
        for cols, masked in key_tiles:
            scores, tanh = tile_scores(p, rows, cols, masked=masked)  # (B, Hkv, R_t, C_t)
            probs = exp_shifted_inplace(scores, lse_for_p[:, :, rows])  # (B, Hkv, R_t, C_t): P = e^(S - LSE)
            dv[:, :, cols] += np.swapaxes(probs, -1, -2) @ dout_t  # (B, Hkv, C_t, dv): dV_t += P^T dO
            dscores = dout_t @ np.swapaxes(p.v[:, :, cols], -1, -2)  # (B, Hkv, R_t, C_t): dP = dO V_t^T
            dscores -= delta[:, :, rows]
            dscores *= probs  # dS = P o (dP - D)
            dscores = softcap_backward(dscores, tanh)  # dS o (1 - tanh^2)
            dq_t += dscores @ p.k[:, :, cols]  # (B, Hkv, R_t, d): dQ += dS K_t (times s below)
            dk[:, :, cols] += np.swapaxes(dscores, -1, -2) @ q_scaled  # (B, Hkv, C_t, d): dK_t += s dS^T Q
        dq[:, :, rows] = p.scale * dq_t
    return dk, dv


def tiled_backward(p: Problem, out: np.ndarray, lse: np.ndarray, dout: np.ndarray,
                   block_size: int) -> tuple[np.ndarray, ...]:
    """dout (B, Hkv, R, dv) -> dq, dk, dv (grouped rows), recomputing P = e^(S - LSE) tile by tile."""
    delta = np.sum(dout * out, axis=-1)[..., None]  # (B, Hkv, R, 1): D = rowsum(dO o O)
    lse_for_p = np.where(np.isfinite(lse), lse, np.inf)[..., None]  # (B, Hkv, R, 1): empty row -> P = 0
    dq = np.zeros(p.q.shape, dtype=p.q.dtype)  # (B, Hkv, R, d)
    shares = on_tile_threads(functools.partial(_backward_row_tiles, p, delta, lse_for_p, dout, dq),
                             list(tiles(p, block_size)))
    dk, dv = shares[0]  # (B, Hkv, Lk, d), (B, Hkv, Lk, dv)
    for dk_share, dv_share in shares[1:]:
        dk += dk_share
        dv += dv_share
    return dq, dk, dv


# ----------------------------------------------------------------------------------------------------------------
# The public interface: checks, the layout change to grouped rows and back, dense or tiled.
# ----------------------------------------------------------------------------------------------------------------

def _check_inputs(q: np.ndarray, k: np.ndarray, v: np.ndarray, softmax_scale: float | None, softcap: float,
                  block_size: int | None, *, varlen: bool) -> int:
    """Returns n_rep = H // Hkv."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    check_flash_dtypes(str(q.dtype), str(k.dtype), str(v.dtype))
    n_rep = check_flash_shapes(q.shape, k.shape, v.shape, varlen=varlen)
    check_softmax_scale(softmax_scale)
    check_softcap(softcap)
    check_block_size(block_size)
    return n_rep


def _checked_slopes(alibi_slopes: np.ndarray | None, batch: int, n_heads: int, dtype: np.dtype) -> np.ndarray | None:
    """ALiBi slopes (H,) or (B, H) -> (1 or B, H) in the compute dtype, or None."""
    if alibi_slopes is None:
        return None
    slopes = np.asarray(alibi_slopes)
    finite = bool(np.all(np.isfinite(slopes))) if np.issubdtype(slopes.dtype, np.floating) else True
    check_alibi_slopes(slopes.shape, finite, str(slopes.dtype), batch, n_heads)
    return slopes.reshape((-1, n_heads)).astype(dtype)  # (1 or B, H)


def _forward(p: Problem, block_size: int | None) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    if block_size is None:
        return dense_forward(p)
    return (*tiled_forward(p, int(block_size)), None)


def _backward(p: Problem, saved: dict[str, Any], dout_rows: np.ndarray) -> tuple[np.ndarray, ...]:
    if saved["block_size"] is None:
        return dense_backward(p, dout_rows, saved["dense"])
    return tiled_backward(p, saved["out"], saved["lse"], dout_rows, int(saved["block_size"]))


def batch_problem(q: np.ndarray, k: np.ndarray, v: np.ndarray, slopes: np.ndarray | None, left: int, right: int,
                  scale: Any, softcap: float) -> Problem:
    """Checked inputs in FlashAttention's layout (q (B, Lq, H, d), k/v (B, Lk, Hkv, .), slopes (1 or B, H) or
    None) -> the Problem in grouped rows."""
    Lq, H, Lk, n_kv = q.shape[1], q.shape[2], k.shape[1], k.shape[2]
    n_rep = H // n_kv
    row_slopes = None if slopes is None else to_rows(
        np.broadcast_to(slopes[:, None, :], (slopes.shape[0], Lq, H)), n_kv)  # (1 or B, Hkv, R)
    return Problem(q=to_rows(q, n_kv), k=np.ascontiguousarray(np.swapaxes(k, 1, 2)),  # (B, Hkv, R, d), (B, Hkv, Lk, d)
                   v=np.ascontiguousarray(np.swapaxes(v, 1, 2)),  # (B, Hkv, Lk, dv)
                   anchors=np.repeat(np.arange(Lq) + (Lk - Lq), n_rep),  # (R,)
                   row_slopes=row_slopes, row_doc=None, col_doc=None, n_rep=n_rep, scale=scale, softcap=softcap,
                   left=left, right=right)


def _batch_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, slopes: np.ndarray | None, left: int, right: int,
                   scale: Any, softcap: float, block_size: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Checked inputs in FlashAttention's layout -> (out (B, Lq, H, dv), lse (B, H, Lq), cache)."""
    return _solve(batch_problem(q, k, v, slopes, left, right, scale, softcap), block_size)


def _solve(p: Problem, block_size: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(out (B, Lq, H, dv), lse (B, H, Lq), cache) of a problem, dense or tiled."""
    out_rows, lse_rows, dense = _forward(p, block_size)  # (B, Hkv, R, dv), (B, Hkv, R)
    cache = {"problem": p, "out": out_rows, "lse": lse_rows, "dense": dense, "block_size": block_size}
    return from_rows(out_rows, p.n_rep), lse_from_rows(lse_rows, p.n_rep), cache


def _batch_backward(dout: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = cache["problem"]
    dq, dk, dv = _backward(p, cache, to_rows(dout, p.k.shape[1]))  # grouped rows, (B, Hkv, Lk, .)
    return from_rows(dq, p.n_rep), np.swapaxes(dk, 1, 2), np.swapaxes(dv, 1, 2)


def _scale(softmax_scale: float | None, d: int, dtype: np.dtype) -> Any:
    return dtype.type(1.0 / np.sqrt(d) if softmax_scale is None else softmax_scale)


def flash_problem(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, *, softmax_scale: float | None = None, causal: bool = False,
    window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0, alibi_slopes: np.ndarray | None = None,
) -> Problem:
    """``flash_attention_forward``'s arguments, checked, as one Problem in grouped rows (nothing computed yet)."""
    _check_inputs(q, k, v, softmax_scale, softcap, None, varlen=False)
    left, right = effective_window(causal, window_size)
    slopes = _checked_slopes(alibi_slopes, q.shape[0], q.shape[2], q.dtype)  # (1 or B, H)
    return batch_problem(q, k, v, slopes, left, right, _scale(softmax_scale, q.shape[-1], q.dtype), float(softcap))


def flash_attention_forward(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, *, softmax_scale: float | None = None, causal: bool = False,
    window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0, alibi_slopes: np.ndarray | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """q (B, Lq, H, d), k (B, Lk, Hkv, d), v (B, Lk, Hkv, dv) -> (out (B, Lq, H, dv), lse (B, H, Lq), cache).

    FlashAttention's ``flash_attn_func`` (with ``return_attn_probs``' LSE), in the input dtype (float32 or
    float64). ``causal`` and ``window_size`` are bottom-right aligned; ``alibi_slopes`` (H,) or (B, H);
    ``block_size=None`` is the dense algorithm, an int the tiled one with tiles of that many queries and keys.
    A row with no visible key: out 0, gradients 0, lse -inf.
    """
    check_block_size(block_size)
    p = flash_problem(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                      softcap=softcap, alibi_slopes=alibi_slopes)
    return _solve(p, block_size)


def _check_dout(dout: np.ndarray, expected: tuple[int, ...], layout: str) -> None:
    if not isinstance(dout, np.ndarray) or dout.shape != expected:
        shape = getattr(dout, "shape", type(dout).__name__)
        raise ValueError(f"dout: expected {layout} = {expected} like out, got {shape}")


def flash_attention_backward(dout: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (B, Lq, H, dv) -> (dq (B, Lq, H, d), dk (B, Lk, Hkv, d), dv (B, Lk, Hkv, dv)); dk, dv sum each group."""
    p = cache["problem"]
    B, n_kv, R, dv = cache["out"].shape
    _check_dout(dout, (B, R // p.n_rep, n_kv * p.n_rep, dv), "(B, Lq, H, dv)")
    return _batch_backward(dout.astype(p.q.dtype, copy=False), cache)


def _packed_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, cu_q: np.ndarray, cu_k: np.ndarray,
                    slopes: np.ndarray | None, left: int, right: int, scale: Any, softcap: float) -> tuple:
    """The dense algorithm on the packed rows at once: the document mask keeps the sequences apart."""
    H, n_kv = q.shape[1], k.shape[1]
    n_rep = H // n_kv
    seq_q = sequence_ids(cu_q)  # (total_q,)
    row_slopes = None
    if slopes is not None:
        per_query = slopes[seq_q] if slopes.shape[0] > 1 else np.broadcast_to(slopes, (len(seq_q), H))  # (total_q, H)
        row_slopes = to_rows(per_query[None], n_kv)  # (1, Hkv, R)
    p = Problem(q=to_rows(q[None], n_kv), k=np.ascontiguousarray(np.swapaxes(k[None], 1, 2)),  # (1, Hkv, R, d)
                v=np.ascontiguousarray(np.swapaxes(v[None], 1, 2)),  # (1, Hkv, total_k, dv)
                anchors=np.repeat(varlen_anchors(cu_q, cu_k), n_rep),  # (R,)
                row_slopes=row_slopes, row_doc=np.repeat(seq_q, n_rep), col_doc=sequence_ids(cu_k),
                n_rep=n_rep, scale=scale, softcap=softcap, left=left, right=right)
    out_rows, lse_rows, dense = dense_forward(p)  # (1, Hkv, R, dv), (1, Hkv, R)
    cache = {"problem": p, "out": out_rows, "lse": lse_rows, "dense": dense, "block_size": None}
    return from_rows(out_rows, n_rep)[0], lse_from_rows(lse_rows, n_rep)[0], cache


def flash_attention_varlen_forward(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, cu_seqlens_q: np.ndarray, cu_seqlens_k: np.ndarray, *,
    softmax_scale: float | None = None, causal: bool = False, window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0, alibi_slopes: np.ndarray | None = None, block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Packed sequences: q (total_q, H, d), k (total_k, Hkv, d), v (total_k, Hkv, dv), cu_seqlens (N+1,) int
    -> (out (total_q, H, dv), lse (H, total_q), cache).

    FlashAttention's ``flash_attn_varlen_func``: sequence n is rows ``cu_seqlens[n]:cu_seqlens[n+1]`` and
    attends only inside itself, with causal/window/ALiBi aligned bottom-right on its own Lq_n, Lk_n;
    ``alibi_slopes`` (H,) or (N, H). Dense: the packed score matrix with the document mask; tiled: the
    tiled algorithm sequence by sequence (no total_q x total_k array).
    """
    _check_inputs(q, k, v, softmax_scale, softcap, block_size, varlen=True)
    cu_q = checked_cu_seqlens("cu_seqlens_q", cu_seqlens_q, q.shape[0])  # (N+1,)
    cu_k = checked_cu_seqlens("cu_seqlens_k", cu_seqlens_k, k.shape[0])  # (N+1,)
    check_cu_seqlens_pair(len(cu_q), len(cu_k))
    left, right = effective_window(causal, window_size)
    slopes = _checked_slopes(alibi_slopes, len(cu_q) - 1, q.shape[1], q.dtype)  # (1 or N, H)
    scale = _scale(softmax_scale, q.shape[-1], q.dtype)
    if block_size is None:
        return _packed_forward(q, k, v, cu_q, cu_k, slopes, left, right, scale, float(softcap))
    out = np.zeros((q.shape[0], q.shape[1], v.shape[-1]), dtype=q.dtype)  # (total_q, H, dv)
    lse = np.full((q.shape[1], q.shape[0]), -np.inf, dtype=q.dtype)  # (H, total_q)
    caches = []
    for n in range(len(cu_q) - 1):
        rows, keys = slice(cu_q[n], cu_q[n + 1]), slice(cu_k[n], cu_k[n + 1])
        seq_slopes = None if slopes is None else slopes[n if slopes.shape[0] > 1 else 0][None]  # (1, H)
        out_n, lse_n, cache_n = _batch_forward(q[None, rows], k[None, keys], v[None, keys], seq_slopes, left, right,
                                               scale, float(softcap), block_size)  # (1, Lq_n, H, dv), (1, H, Lq_n)
        out[rows], lse[:, rows] = out_n[0], lse_n[0]
        caches.append((rows, keys, cache_n))
    return out, lse, {"sequences": caches, "q_shape": q.shape, "k_shape": k.shape, "v_shape": v.shape,
                      "out_shape": out.shape, "dtype": q.dtype}


def flash_attention_varlen_backward(
    dout: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (total_q, H, dv) -> (dq (total_q, H, d), dk (total_k, Hkv, d), dv (total_k, Hkv, dv))."""
    if "problem" in cache:  # dense, packed
        p = cache["problem"]
        _, n_kv, R, dv = cache["out"].shape
        _check_dout(dout, (R // p.n_rep, n_kv * p.n_rep, dv), "(total_q, H, dv)")
        dq, dk, dv = _batch_backward(dout[None].astype(p.q.dtype, copy=False), cache)
        return dq[0], dk[0], dv[0]
    _check_dout(dout, cache["out_shape"], "(total_q, H, dv)")
    dtype = cache["dtype"]
    dq = np.zeros(cache["q_shape"], dtype=dtype)  # (total_q, H, d)
    dk = np.zeros(cache["k_shape"], dtype=dtype)  # (total_k, Hkv, d)
    dv = np.zeros(cache["v_shape"], dtype=dtype)  # (total_k, Hkv, dv)
    for rows, keys, cache_n in cache["sequences"]:
        p = cache_n["problem"]
        dq_n, dk_n, dv_n = _batch_backward(dout[None, rows].astype(p.q.dtype, copy=False), cache_n)
        dq[rows], dk[keys], dv[keys] = dq_n[0], dk_n[0], dv_n[0]
    return dq, dk, dv
