r"""The float64 oracle at long contexts: exact out, LSE and gradients on *sampled* rows, never an (L, L) array.

At :math:`L = 32\text{k}` the dense reference needs :math:`3 L^2 \cdot 8` bytes per head (24 GiB), and even
the tiled backward over every row costs minutes. A verifier only needs a few hundred rows to be exact, so
this module computes, for sampled query positions :math:`\mathcal I` and sampled key positions
:math:`\mathcal J`, the same quantities as the dense reference (``reference.flash_attention``, grouped
rows, notation of its docstring: :math:`S_{ij}` the score after softcap, ALiBi and the masks,
:math:`-\infty` where hidden):

**1. Every row, once (O(L) memory).** The tiled forward (``tiled_forward``: the online softmax) over
:math:`V' = [V, |V|]` gives for *every* row :math:`i`

.. math::

    O_i = \sum_j P_{ij} v_j, \qquad \bar O_i = \sum_j P_{ij} |v_j|, \qquad
    \mathrm{LSE}_i = \log \sum_j e^{S_{ij}}, \qquad P_{ij} = e^{S_{ij} - \mathrm{LSE}_i}

and from them :math:`D_i = dO_i \cdot O_i` (the softmax backward's row term, see the tiled backward) and
:math:`\bar D_i = |dO_i| \cdot \bar O_i`. These are :math:`(R,)` and :math:`(R, d_v)` arrays: what the
sampled *key* columns need, since :math:`dK_j` and :math:`dV_j` sum over every query.

**2. Sampled query rows** :math:`i \in \mathcal I` (all heads of each sampled position), against every key
it sees, in chunks of keys:

.. math::

    dQ_i = s \sum_j dS_{ij}\, k_j, \qquad dS_{ij} = P_{ij} (dO_i \cdot v_j - D_i) \cdot (1 - \tanh^2(\cdot))

(the last factor only with a softcap); :math:`O_i` and :math:`\mathrm{LSE}_i` are read from step 1.

**3. Sampled key columns** :math:`j \in \mathcal J` (every K/V head), against every query row, in chunks
of rows; a K/V head's rows hold all :math:`r` query heads of its group, so the sums below are the group
sums FlashAttention's dK, dV are:

.. math::

    dV_j = \sum_i P_{ij}\, dO_i, \qquad dK_j = s \sum_i dS_{ij}\, q_i

**The verifier's magnitudes**, the same sums on absolute values (``triad.tolerance.attention_magnitudes``
computes them densely): :math:`\bar O_i` above; :math:`\overline{dQ}_i = |s| \sum_j \bar{dS}_{ij} |k_j|`,
:math:`\overline{dV}_j = \sum_i P_{ij} |dO_i|`, :math:`\overline{dK}_j = |s| \sum_i \bar{dS}_{ij} |q_i|`
with :math:`\bar{dS}_{ij} = P_{ij}(|dO_i| \cdot |v_j| + \bar D_i)` (the softcap factor :math:`\le 1` left
out: an upper bound); and the logit-rounding scale of each element,
:math:`s|q_i| \cdot |k_j| + |c \tanh(\cdot)| + |m_h (a_i - j)|` over the visible pairs, as a maximum per
sampled query row over its keys and per sampled key over its rows.

**Cost.** Step 1 is the tiled forward: :math:`O(L_q L_k (d + 2 d_v))` time (halved by a causal band) and
:math:`O((L_q + L_k) d + b^2)` memory per head; steps 2 and 3 are :math:`O((|\mathcal I| L_k +
|\mathcal J| L_q) d)` with chunks of :math:`|\mathcal I| \times c` and :math:`c \times |\mathcal J|`
scores. Everything is exact in the input dtype (float64: the oracle): it equals the dense reference on
those rows to rounding, ~1e-13 relative.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from reference.flash_attention import (
    DEFAULT_BLOCK_SIZE,
    Problem,
    exp_shifted_inplace,
    from_rows,
    key_range,
    lse_from_rows,
    tile_scores,
    tiled_forward,
    to_rows,
)
from reference.score_mods import alibi_row_bias, softcap_backward

CHUNK = 2048  # keys per chunk of the sampled rows, rows per chunk of the sampled keys


@dataclass(frozen=True)
class SampledAttention:
    """Exact results on the sampled positions, in FlashAttention's layouts (B the batch, n_q = len(query_pos),
    n_k = len(key_pos)); the ``*_abs`` arrays and the two scales are the verifier's magnitudes (docstring)."""

    query_pos: np.ndarray  # (n_q,) sorted query positions
    key_pos: np.ndarray  # (n_k,) sorted key positions
    out: np.ndarray  # (B, n_q, H, dv)
    lse: np.ndarray  # (B, H, n_q)
    dq: np.ndarray  # (B, n_q, H, d)
    dk: np.ndarray  # (B, n_k, Hkv, d)
    dv: np.ndarray  # (B, n_k, Hkv, dv)
    out_abs: np.ndarray  # (B, n_q, H, dv)
    dq_abs: np.ndarray  # (B, n_q, H, d)
    dk_abs: np.ndarray  # (B, n_k, Hkv, d)
    dv_abs: np.ndarray  # (B, n_k, Hkv, dv)
    query_scale: np.ndarray  # (B, n_q, H): max over visible keys of the logit-rounding scale
    key_scale: np.ndarray  # (B, n_k, Hkv): max over the rows that see the key


@dataclass(frozen=True)
class _RowStats:
    """Step 1, every row (grouped): out, |P||V|, LSE, D and its absolute twin."""

    out: np.ndarray  # (B, Hkv, R, dv)
    out_abs: np.ndarray  # (B, Hkv, R, dv)
    lse_for_p: np.ndarray  # (B, Hkv, R, 1): LSE, +inf on an empty row (so P = 0)
    lse: np.ndarray  # (B, Hkv, R)
    delta: np.ndarray  # (B, Hkv, R, 1): D = rowsum(dO o O)
    delta_abs: np.ndarray  # (B, Hkv, R, 1): rowsum(|dO| o |P||V|)


def every_row(p: Problem, dout_rows: np.ndarray, block_size: int) -> _RowStats:
    """Step 1: the tiled forward over [V, |V|]; dout_rows (B, Hkv, R, dv)."""
    dv = p.v.shape[-1]
    doubled = dataclasses.replace(p, v=np.concatenate([p.v, np.abs(p.v)], axis=-1))  # v (B, Hkv, Lk, 2 dv)
    out_both, lse = tiled_forward(doubled, block_size)  # (B, Hkv, R, 2 dv), (B, Hkv, R)
    out, out_abs = out_both[..., :dv], out_both[..., dv:]  # (B, Hkv, R, dv) each
    delta = np.sum(dout_rows * out, axis=-1, keepdims=True)  # (B, Hkv, R, 1): D = rowsum(dO o O)
    delta_abs = np.sum(np.abs(dout_rows) * out_abs, axis=-1, keepdims=True)  # (B, Hkv, R, 1)
    lse_for_p = np.where(np.isfinite(lse), lse, np.inf)[..., None]  # (B, Hkv, R, 1)
    return _RowStats(out, out_abs, lse_for_p, lse, delta, delta_abs)


def _logit_scale(p: Problem, q_rows: np.ndarray, rows: slice, cols: slice, tanh: np.ndarray | None,
                 seen: np.ndarray) -> np.ndarray:
    """s|q_i||k_j| + |c tanh| + |ALiBi bias| where seen, else 0: (B, Hkv, R_t, C_t)."""
    scale_ij = abs(p.scale) * (np.abs(q_rows) @ np.swapaxes(np.abs(p.k[:, :, cols]), -1, -2))  # (B, Hkv, R_t, C_t)
    if tanh is not None:
        scale_ij += np.abs(p.softcap * tanh)
    if p.row_slopes is not None:
        positions = np.arange(p.k.shape[2]) if p.key_pos is None else p.key_pos  # (Lk,)
        scale_ij += np.abs(alibi_row_bias(p.row_slopes[:, :, rows], p.anchors[rows], positions[cols]))
    return np.where(seen, scale_ij, 0.0)  # (B, Hkv, R_t, C_t)


def _probs_and_dscores(p: Problem, scores: np.ndarray, tanh: np.ndarray | None, stats: _RowStats, rows: slice,
                       dout_t: np.ndarray, v_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, dS, |dS|-bar) of a chunk: scores (B, Hkv, R_t, C_t), dout_t (B, Hkv, R_t, dv), v_t (B, Hkv, C_t, dv)."""
    probs = exp_shifted_inplace(scores, stats.lse_for_p[:, :, rows])  # (B, Hkv, R_t, C_t): P = e^(S - LSE)
    dprobs = dout_t @ np.swapaxes(v_t, -1, -2)  # (B, Hkv, R_t, C_t): dP = dO V^T
    dscores = softcap_backward(probs * (dprobs - stats.delta[:, :, rows]), tanh)  # dS = P o (dP - D) o (1 - tanh^2)
    dprobs_abs = np.abs(dout_t) @ np.swapaxes(np.abs(v_t), -1, -2)  # (B, Hkv, R_t, C_t)
    dscores_abs = probs * (dprobs_abs + stats.delta_abs[:, :, rows])  # (B, Hkv, R_t, C_t)
    return probs, dscores, dscores_abs


def sampled_rows(p: Problem, dout_rows: np.ndarray, stats: _RowStats, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Step 2 on grouped rows ``rows`` (sorted): dq, |dQ|-bar and the rows' logit scales, (B, Hkv, R_s, .)."""
    sub = dataclasses.replace(p, q=p.q[:, :, rows], anchors=p.anchors[rows],
                              row_slopes=None if p.row_slopes is None else p.row_slopes[:, :, rows])
    sub_stats = dataclasses.replace(stats, lse_for_p=stats.lse_for_p[:, :, rows], delta=stats.delta[:, :, rows],
                                    delta_abs=stats.delta_abs[:, :, rows])
    every = slice(None)
    dout_s = dout_rows[:, :, rows]  # (B, Hkv, R_s, dv)
    dq = np.zeros(sub.q.shape)  # (B, Hkv, R_s, d)
    dq_abs = np.zeros(sub.q.shape)  # (B, Hkv, R_s, d)
    row_scale = np.zeros(sub.q.shape[:3])  # (B, Hkv, R_s)
    lo, hi, _, _ = key_range(sub, every) if len(rows) else (0, 0, 0, 0)
    for c0 in range(lo, hi, CHUNK):
        cols = slice(c0, min(hi, c0 + CHUNK))
        scores, tanh = tile_scores(sub, every, cols)  # (B, Hkv, R_s, C)
        seen = np.isfinite(scores)  # (B, Hkv, R_s, C)
        row_scale = np.maximum(row_scale, _logit_scale(sub, sub.q, every, cols, tanh, seen).max(axis=-1))
        _, dscores, dscores_abs = _probs_and_dscores(sub, scores, tanh, sub_stats, every, dout_s, sub.v[:, :, cols])
        dq += dscores @ sub.k[:, :, cols]  # (B, Hkv, R_s, d): dQ += dS K (times s below)
        dq_abs += dscores_abs @ np.abs(sub.k[:, :, cols])  # (B, Hkv, R_s, d)
    return {"dq": p.scale * dq, "dq_abs": abs(p.scale) * dq_abs, "row_scale": row_scale}


def sampled_keys(p: Problem, dout_rows: np.ndarray, stats: _RowStats, keys: np.ndarray) -> dict[str, np.ndarray]:
    """Step 3 on key positions ``keys`` (sorted): dk, dv, their bars and the keys' logit scales, (B, Hkv, n_k, .)."""
    sub = dataclasses.replace(p, k=p.k[:, :, keys], v=p.v[:, :, keys], key_pos=keys)
    every = slice(None)
    B, n_kv, R = p.q.shape[:3]
    grads = {name: np.zeros((B, n_kv, len(keys), width)) for name, width in
             (("dk", p.q.shape[-1]), ("dk_abs", p.q.shape[-1]), ("dv", p.v.shape[-1]), ("dv_abs", p.v.shape[-1]))}
    key_scale = np.zeros((B, n_kv, len(keys)))  # (B, Hkv, n_k)
    for r0 in range(0, R, CHUNK):
        rows = slice(r0, min(R, r0 + CHUNK))
        scores, tanh = tile_scores(sub, rows, every)  # (B, Hkv, R_t, n_k)
        seen = np.isfinite(scores)  # (B, Hkv, R_t, n_k)
        if not seen.any():
            continue
        q_t, dout_t = p.q[:, :, rows], dout_rows[:, :, rows]  # (B, Hkv, R_t, d), (B, Hkv, R_t, dv)
        key_scale = np.maximum(key_scale, _logit_scale(sub, q_t, rows, every, tanh, seen).max(axis=-2))
        probs, dscores, dscores_abs = _probs_and_dscores(sub, scores, tanh, stats, rows, dout_t, sub.v)
        probs_t = np.swapaxes(probs, -1, -2)  # (B, Hkv, n_k, R_t)
        grads["dv"] += probs_t @ dout_t  # (B, Hkv, n_k, dv): dV_j += sum_i P_ij dO_i
        grads["dv_abs"] += probs_t @ np.abs(dout_t)
        grads["dk"] += np.swapaxes(dscores, -1, -2) @ q_t  # (B, Hkv, n_k, d): dK_j += sum_i dS_ij q_i (times s)
        grads["dk_abs"] += np.swapaxes(dscores_abs, -1, -2) @ np.abs(q_t)
    grads["dk"] *= p.scale
    grads["dk_abs"] *= abs(p.scale)
    return grads | {"key_scale": key_scale}


def grouped_rows(query_pos: np.ndarray, n_rep: int) -> np.ndarray:
    """Query positions (n_q,) -> their grouped rows (n_q·r,): row i·r + t for each head t of a group."""
    return (np.asarray(query_pos)[:, None] * n_rep + np.arange(n_rep)[None, :]).ravel()


def sampled_flash_attention(p: Problem, dout: np.ndarray, query_pos: np.ndarray, key_pos: np.ndarray,
                            block_size: int = DEFAULT_BLOCK_SIZE) -> SampledAttention:
    """Exact out, lse, dq on ``query_pos`` and dk, dv on ``key_pos`` of the problem ``p``
    (``reference.flash_attention.flash_problem``); dout (B, Lq, H, dv). See the module docstring."""
    query_pos, key_pos = np.unique(query_pos), np.unique(key_pos)  # sorted, as the band's key ranges need
    Lq, Lk = p.q.shape[2] // p.n_rep, p.k.shape[2]
    if dout.shape != (p.q.shape[0], Lq, p.q.shape[1] * p.n_rep, p.v.shape[-1]):
        raise ValueError(f"dout: expected (B, Lq, H, dv) = {(p.q.shape[0], Lq, p.q.shape[1] * p.n_rep, p.v.shape[-1])}"
                         f" like out, got {dout.shape}")
    for name, pos, length in (("query_pos", query_pos, Lq), ("key_pos", key_pos, Lk)):
        if pos.size and not (np.issubdtype(pos.dtype, np.integer) and pos[0] >= 0 and pos[-1] < length):
            raise ValueError(f"{name}: expected integer positions in [0, {length}), got {pos.dtype} "
                             f"from {pos[0]} to {pos[-1]}")
    dout_rows = to_rows(dout.astype(p.q.dtype, copy=False), p.k.shape[1])  # (B, Hkv, R, dv)
    stats = every_row(p, dout_rows, block_size)
    rows = grouped_rows(query_pos, p.n_rep)  # (n_q·r,)
    by_row = sampled_rows(p, dout_rows, stats, rows)
    by_key = sampled_keys(p, dout_rows, stats, key_pos)
    # (B, n_k, Hkv, .) each
    keys_layout = {name: np.swapaxes(by_key[name], 1, 2) for name in ("dk", "dv", "dk_abs", "dv_abs")}
    return SampledAttention(
        query_pos=query_pos, key_pos=key_pos,
        out=from_rows(stats.out[:, :, rows], p.n_rep), lse=lse_from_rows(stats.lse[:, :, rows], p.n_rep),
        dq=from_rows(by_row["dq"], p.n_rep), out_abs=from_rows(stats.out_abs[:, :, rows], p.n_rep),
        dq_abs=from_rows(by_row["dq_abs"], p.n_rep), query_scale=from_rows(by_row["row_scale"], p.n_rep),
        key_scale=np.swapaxes(by_key["key_scale"], 1, 2), **keys_layout)
