"""The Triton programs: forward, the backward's preprocess, dK/dV and dQ (FlashAttention-2's algorithm).

Notation (one batch element, one query head ``h`` reading K/V head ``h // G``, G = H / Hkv):

    S = scale · Q Kᵀ                       (Lq, Lk), never stored whole
    S ← c · tanh(S / c)                     softcap c > 0, before the mask
    S_ij = −inf unless  i + diag − left ≤ j ≤ i + diag + right   (left/right = −1: unbounded)
    P = softmax(S) row-wise,  O = P V,  LSE_i = log Σ_j exp S_ij

**Forward** (one program per query tile of BLOCK_M rows): the key tiles the window can reach, one
after the other, with the online softmax: a running row max ``m``, a running sum ``l`` and an
unnormalised accumulator ``acc``; a new tile with scores ``S_t`` gives

    m' = max(m, rowmax S_t),  α = exp(m − m'),  P_t = exp(S_t − m')
    l' = α l + rowsum P_t,    acc' = α acc + P_t V_t

and at the end ``O = acc / l`` and ``LSE = m + log l``. A row that sees no key keeps ``l = 0``: its
output is written as 0 and its LSE as −inf (log 0). Natural ``exp``/``log`` throughout (no ``exp2``
rescaling), so the LSE is in natural log as FlashAttention returns it.

**Backward** (``D_i = Σ_d dO_id O_id`` from a preprocess program), P recomputed tile by tile from
the saved LSE, ``P_ij = exp(S_ij − LSE_i)``:

    dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP − D),   dS ← dS ∘ (1 − tanh²)  (softcap)
    dQ = scale · dS K,   dK = scale · dSᵀ Q

dK/dV are one program per key tile (and K/V head), looping over the query tiles that can see it and,
for GQA, over the G query heads of the group; dQ is one program per query tile, looping over key
tiles. So every output element is written by exactly one program, in a fixed order: no atomics, the
gradients are deterministic run to run, and the same code runs under Triton's interpreter. The price
is that S and P are recomputed twice in the backward (once per kernel) instead of once.

Head dims are padded to ``PAD_QK``/``PAD_V`` (powers of two ≥ 16) with masked loads, sequence tails
are masked in-kernel. Scores, softmax statistics and accumulators are float32; P and dS are cast to
the input dtype before their matrix products, as FlashAttention does. ``UPCAST_DOT`` multiplies in
float32 (exact for fp16/bf16 products): Triton 3.9's interpreter gets ``tl.dot`` on bfloat16 wrong.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _dot(a, b, UPCAST_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """a @ b with a float32 accumulator."""
    if UPCAST_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=DOT_PRECISION)


@triton.jit
def _tanh(x):
    """tanh in float32: odd Taylor series (to x¹¹) for |x| < 1/4, else (1 − e)/(1 + e) with e = exp(−2|x|)."""
    x2 = x * x
    series = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (
        62.0 / 2835.0 + x2 * (-1382.0 / 155925.0))))))
    e = tl.exp(-2.0 * tl.abs(x))
    far = (1.0 - e) / (1.0 + e)
    return tl.where(tl.abs(x) < 0.25, series, tl.where(x < 0, -far, far))


@triton.jit
def _scores(qk, scale, softcap, HAS_SOFTCAP: tl.constexpr):
    """scale · QKᵀ, soft-capped; also tanh(·) (for the backward; 0 without softcap)."""
    s = qk * scale
    if HAS_SOFTCAP:
        t = _tanh(s / softcap)
        return softcap * t, t
    return s, s * 0.0


@triton.jit
def _visible(i, j, Lq, Lk, diag, left, right, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """Key j visible to query i (broadcast): inside both lengths and the window around i + diag."""
    keep = (i < Lq) & (j < Lk)
    if HAS_LEFT:
        keep = keep & (j >= i + diag - left)
    if HAS_RIGHT:
        keep = keep & (j <= i + diag + right)
    return keep


@triton.jit
def _key_range(m_start, Lk, diag, left, right, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """[lo, hi): the keys any query of rows m_start .. m_start + BLOCK_M − 1 may see; lo on a tile edge."""
    lo = 0
    hi = Lk
    if HAS_LEFT:
        lo = tl.maximum(m_start + diag - left, 0)
        lo = (lo // BLOCK_N) * BLOCK_N
    if HAS_RIGHT:
        hi = tl.minimum(m_start + BLOCK_M - 1 + diag + right + 1, Lk)
    return lo, hi


@triton.jit
def _query_range(n_start, Lq, diag, left, right, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """[lo, hi): the queries that may see any key of n_start .. n_start + BLOCK_N − 1; lo on a tile edge."""
    lo = 0
    hi = Lq
    if HAS_RIGHT:  # j <= i + diag + right  <=>  i >= j - diag - right
        lo = tl.maximum(n_start - diag - right, 0)
        lo = (lo // BLOCK_M) * BLOCK_M
    if HAS_LEFT:  # j >= i + diag - left  <=>  i <= j - diag + left
        hi = tl.minimum(n_start + BLOCK_N - 1 - diag + left + 1, Lq)
    return lo, hi


@triton.jit
def attention_forward_kernel(
    Q, K, V, Out, Lse,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om,
    H, GROUP, Lq, Lk, scale, softcap, diag, left, right,
    HEAD_DIM_QK: tl.constexpr, HEAD_DIM_V: tl.constexpr, PAD_QK: tl.constexpr, PAD_V: tl.constexpr,
    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    UPCAST_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (cdiv(Lq, BLOCK_M), B·H): out (B, H, Lq, d_v) and lse (B, H, Lq) float32."""
    m_start = tl.program_id(0) * BLOCK_M
    b = tl.program_id(1) // H
    h = tl.program_id(1) % H
    offs_m = m_start + tl.arange(0, BLOCK_M)  # (BM,)
    offs_dk = tl.arange(0, PAD_QK)  # (PAD_QK,)
    offs_dv = tl.arange(0, PAD_V)  # (PAD_V,)
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + (h // GROUP).to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + (h // GROUP).to(tl.int64) * stride_vh
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_dk[None, :],
                mask=(offs_m[:, None] < Lq) & (offs_dk[None, :] < HEAD_DIM_QK), other=0.0)  # (BM, PAD_QK)
    row_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)  # (BM,)
    row_sum = tl.zeros((BLOCK_M,), tl.float32)  # (BM,)
    acc = tl.zeros((BLOCK_M, PAD_V), tl.float32)  # (BM, PAD_V)
    lo, hi = _key_range(m_start, Lk, diag, left, right, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for n_start in range(lo, hi, BLOCK_N):
        offs_n = n_start + tl.arange(0, BLOCK_N)  # (BN,)
        k_t = tl.load(k_base + offs_n[None, :] * stride_kn + offs_dk[:, None],
                      mask=(offs_n[None, :] < Lk) & (offs_dk[:, None] < HEAD_DIM_QK), other=0.0)  # (PAD_QK, BN)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_dv[None, :],
                    mask=(offs_n[:, None] < Lk) & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)  # (BN, PAD_V)
        s, _ = _scores(_dot(q, k_t, UPCAST_DOT, DOT_PRECISION), scale, softcap, HAS_SOFTCAP)  # (BM, BN)
        visible = _visible(offs_m[:, None], offs_n[None, :], Lq, Lk, diag, left, right, HAS_LEFT, HAS_RIGHT)
        s = tl.where(visible, s, float("-inf"))  # (BM, BN)
        new_max = tl.maximum(row_max, tl.max(s, 1))  # (BM,) m' = max(m, rowmax S_t)
        safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)  # rows with no visible key yet
        p = tl.exp(s - safe_max[:, None])  # (BM, BN) P_t = exp(S_t − m')
        alpha = tl.exp(row_max - safe_max)  # (BM,) α = exp(m − m')
        row_sum = row_sum * alpha + tl.sum(p, 1)  # l' = α l + rowsum P_t
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, UPCAST_DOT, DOT_PRECISION)  # acc' = α acc + P_t V_t
        row_max = new_max
    seen = row_sum > 0.0  # (BM,)
    out = acc / tl.where(seen, row_sum, 1.0)[:, None]  # (BM, PAD_V) O = acc / l; 0 where no key is seen
    lse = tl.where(seen, row_max + tl.log(tl.where(seen, row_sum, 1.0)), float("-inf"))  # (BM,) m + log l
    o_base = Out + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_om + offs_dv[None, :], out.to(Out.dtype.element_ty),
             mask=(offs_m[:, None] < Lq) & (offs_dv[None, :] < HEAD_DIM_V))
    tl.store(Lse + tl.program_id(1).to(tl.int64) * Lq + offs_m, lse, mask=offs_m < Lq)


@triton.jit
def attention_backward_preprocess_kernel(
    Out, DOut, Delta, stride_ob, stride_oh, stride_om, stride_db, stride_dh, stride_dm, H, Lq,
    HEAD_DIM_V: tl.constexpr, PAD_V: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Grid (cdiv(Lq, BLOCK_M), B·H): delta (B, H, Lq) float32, D = rowsum(dO ∘ O)."""
    b = tl.program_id(1) // H
    h = tl.program_id(1) % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
    offs_d = tl.arange(0, PAD_V)  # (PAD_V,)
    mask = (offs_m[:, None] < Lq) & (offs_d[None, :] < HEAD_DIM_V)  # (BM, PAD_V)
    o = tl.load(Out + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh + offs_m[:, None] * stride_om
                + offs_d[None, :], mask=mask, other=0.0)  # (BM, PAD_V)
    do = tl.load(DOut + b.to(tl.int64) * stride_db + h.to(tl.int64) * stride_dh + offs_m[:, None] * stride_dm
                 + offs_d[None, :], mask=mask, other=0.0)  # (BM, PAD_V)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)  # (BM,)
    tl.store(Delta + tl.program_id(1).to(tl.int64) * Lq + offs_m, delta, mask=offs_m < Lq)


@triton.jit
def _load_row_stats(Lse, Delta, row, offs_m, Lq):
    """LSE (+inf for rows that see no key and for the tail, so that P = exp(S − LSE) = 0) and D, (BM,) each."""
    lse = tl.load(Lse + row * Lq + offs_m, mask=offs_m < Lq, other=float("inf"))  # (BM,)
    lse = tl.where(lse == float("-inf"), float("inf"), lse)
    delta = tl.load(Delta + row * Lq + offs_m, mask=offs_m < Lq, other=0.0)  # (BM,)
    return lse, delta


@triton.jit
def attention_backward_dkdv_kernel(
    Q, K, V, DOut, Lse, Delta, DK, DV,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_db, stride_dh, stride_dm, stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn,
    H, GROUP, Lq, Lk, scale, softcap, diag, left, right,
    HEAD_DIM_QK: tl.constexpr, HEAD_DIM_V: tl.constexpr, PAD_QK: tl.constexpr, PAD_V: tl.constexpr,
    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    UPCAST_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (cdiv(Lk, BLOCK_N), B·Hkv): dk (B, Hkv, Lk, d), dv (B, Hkv, Lk, d_v), summed over the group."""
    n_start = tl.program_id(0) * BLOCK_N
    Hkv = H // GROUP
    b = tl.program_id(1) // Hkv
    kv_head = tl.program_id(1) % Hkv
    offs_n = n_start + tl.arange(0, BLOCK_N)  # (BN,)
    offs_dk = tl.arange(0, PAD_QK)  # (PAD_QK,)
    offs_dv = tl.arange(0, PAD_V)  # (PAD_V,)
    k_mask = (offs_n[:, None] < Lk) & (offs_dk[None, :] < HEAD_DIM_QK)  # (BN, PAD_QK)
    v_mask = (offs_n[:, None] < Lk) & (offs_dv[None, :] < HEAD_DIM_V)  # (BN, PAD_V)
    k = tl.load(K + b.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh + offs_n[:, None] * stride_kn
                + offs_dk[None, :], mask=k_mask, other=0.0)  # (BN, PAD_QK)
    v = tl.load(V + b.to(tl.int64) * stride_vb + kv_head.to(tl.int64) * stride_vh + offs_n[:, None] * stride_vn
                + offs_dv[None, :], mask=v_mask, other=0.0)  # (BN, PAD_V)
    dk = tl.zeros((BLOCK_N, PAD_QK), tl.float32)  # (BN, PAD_QK)
    dv = tl.zeros((BLOCK_N, PAD_V), tl.float32)  # (BN, PAD_V)
    lo, hi = _query_range(n_start, Lq, diag, left, right, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for g in range(GROUP):  # the query heads that read this K/V head: dK, dV sum over them
        h = kv_head * GROUP + g
        q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
        do_base = DOut + b.to(tl.int64) * stride_db + h.to(tl.int64) * stride_dh
        row = b.to(tl.int64) * H + h
        for m_start in range(lo, hi, BLOCK_M):
            offs_m = m_start + tl.arange(0, BLOCK_M)  # (BM,)
            q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_dk[None, :],
                        mask=(offs_m[:, None] < Lq) & (offs_dk[None, :] < HEAD_DIM_QK), other=0.0)  # (BM, PAD_QK)
            do = tl.load(do_base + offs_m[:, None] * stride_dm + offs_dv[None, :],
                         mask=(offs_m[:, None] < Lq) & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)  # (BM, PAD_V)
            lse, delta = _load_row_stats(Lse, Delta, row, offs_m, Lq)  # (BM,), (BM,)
            s_t, tanh_t = _scores(_dot(k, tl.trans(q), UPCAST_DOT, DOT_PRECISION), scale, softcap,
                                  HAS_SOFTCAP)  # (BN, BM) Sᵀ
            visible = _visible(offs_m[None, :], offs_n[:, None], Lq, Lk, diag, left, right, HAS_LEFT, HAS_RIGHT)
            p_t = tl.where(visible, tl.exp(s_t - lse[None, :]), 0.0)  # (BN, BM) Pᵀ = exp(Sᵀ − LSE)
            dv += _dot(p_t.to(do.dtype), do, UPCAST_DOT, DOT_PRECISION)  # dV += Pᵀ dO
            dp_t = _dot(v, tl.trans(do), UPCAST_DOT, DOT_PRECISION)  # (BN, BM) dPᵀ = V dOᵀ
            ds_t = p_t * (dp_t - delta[None, :])  # (BN, BM) dSᵀ = Pᵀ ∘ (dPᵀ − D)
            if HAS_SOFTCAP:
                ds_t = ds_t * (1.0 - tanh_t * tanh_t)  # through S = c · tanh(S₀ / c)
            dk += _dot(ds_t.to(q.dtype), q, UPCAST_DOT, DOT_PRECISION)  # dK += dSᵀ Q
    dk = dk * scale  # dK = scale · dSᵀ Q
    tl.store(DK + b.to(tl.int64) * stride_dkb + kv_head.to(tl.int64) * stride_dkh + offs_n[:, None] * stride_dkn
             + offs_dk[None, :], dk.to(DK.dtype.element_ty), mask=k_mask)
    tl.store(DV + b.to(tl.int64) * stride_dvb + kv_head.to(tl.int64) * stride_dvh + offs_n[:, None] * stride_dvn
             + offs_dv[None, :], dv.to(DV.dtype.element_ty), mask=v_mask)


@triton.jit
def attention_backward_dq_kernel(
    Q, K, V, DOut, Lse, Delta, DQ,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_db, stride_dh, stride_dm, stride_dqb, stride_dqh, stride_dqm,
    H, GROUP, Lq, Lk, scale, softcap, diag, left, right,
    HEAD_DIM_QK: tl.constexpr, HEAD_DIM_V: tl.constexpr, PAD_QK: tl.constexpr, PAD_V: tl.constexpr,
    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    UPCAST_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (cdiv(Lq, BLOCK_M), B·H): dq (B, H, Lq, d)."""
    m_start = tl.program_id(0) * BLOCK_M
    b = tl.program_id(1) // H
    h = tl.program_id(1) % H
    offs_m = m_start + tl.arange(0, BLOCK_M)  # (BM,)
    offs_dk = tl.arange(0, PAD_QK)  # (PAD_QK,)
    offs_dv = tl.arange(0, PAD_V)  # (PAD_V,)
    q_mask = (offs_m[:, None] < Lq) & (offs_dk[None, :] < HEAD_DIM_QK)  # (BM, PAD_QK)
    q = tl.load(Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh + offs_m[:, None] * stride_qm
                + offs_dk[None, :], mask=q_mask, other=0.0)  # (BM, PAD_QK)
    do = tl.load(DOut + b.to(tl.int64) * stride_db + h.to(tl.int64) * stride_dh + offs_m[:, None] * stride_dm
                 + offs_dv[None, :], mask=(offs_m[:, None] < Lq) & (offs_dv[None, :] < HEAD_DIM_V),
                 other=0.0)  # (BM, PAD_V)
    lse, delta = _load_row_stats(Lse, Delta, tl.program_id(1).to(tl.int64), offs_m, Lq)  # (BM,), (BM,)
    k_base = K + b.to(tl.int64) * stride_kb + (h // GROUP).to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + (h // GROUP).to(tl.int64) * stride_vh
    dq = tl.zeros((BLOCK_M, PAD_QK), tl.float32)  # (BM, PAD_QK)
    lo, hi = _key_range(m_start, Lk, diag, left, right, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for n_start in range(lo, hi, BLOCK_N):
        offs_n = n_start + tl.arange(0, BLOCK_N)  # (BN,)
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_dk[None, :],
                    mask=(offs_n[:, None] < Lk) & (offs_dk[None, :] < HEAD_DIM_QK), other=0.0)  # (BN, PAD_QK)
        v_t = tl.load(v_base + offs_n[None, :] * stride_vn + offs_dv[:, None],
                      mask=(offs_n[None, :] < Lk) & (offs_dv[:, None] < HEAD_DIM_V), other=0.0)  # (PAD_V, BN)
        s, tanh_s = _scores(_dot(q, tl.trans(k), UPCAST_DOT, DOT_PRECISION), scale, softcap,
                            HAS_SOFTCAP)  # (BM, BN)
        visible = _visible(offs_m[:, None], offs_n[None, :], Lq, Lk, diag, left, right, HAS_LEFT, HAS_RIGHT)
        p = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)  # (BM, BN) P = exp(S − LSE)
        dp = _dot(do, v_t, UPCAST_DOT, DOT_PRECISION)  # (BM, BN) dP = dO Vᵀ
        ds = p * (dp - delta[:, None])  # (BM, BN) dS = P ∘ (dP − D)
        if HAS_SOFTCAP:
            ds = ds * (1.0 - tanh_s * tanh_s)  # through S = c · tanh(S₀ / c)
        dq += _dot(ds.to(k.dtype), k, UPCAST_DOT, DOT_PRECISION)  # dQ += dS K
    dq = dq * scale  # dQ = scale · dS K
    tl.store(DQ + b.to(tl.int64) * stride_dqb + h.to(tl.int64) * stride_dqh + offs_m[:, None] * stride_dqm
             + offs_dk[None, :], dq.to(DQ.dtype.element_ty), mask=q_mask)
