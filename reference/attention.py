r"""Scaled dot-product attention, forward and backward, in NumPy.

Shapes: ``q (B, H, Lq, E)``, ``k (B, H, Lk, E)``, ``v (B, H, Lk, Ev)``; any number of
leading dims works the same way, they only have to be equal in q, k and v.

Forward, with ``s = scale`` (default :math:`1/\sqrt{E}`, the *head* dim, not d_model):

.. math::

    S = s\, Q K^\top + A, \qquad
    P = \mathrm{softmax}_{\text{row}}(S), \qquad
    \tilde P = P \circ Z / (1 - p), \qquad
    O = \tilde P V

``A`` is the mask: a boolean keep-mask puts ``-inf`` where it is False, an additive
float mask is added *after* scaling (as ``nn.MultiheadAttention`` and SDPA do).
``Z`` is the dropout keep-mask (all ones when ``p = 0``).

**Fully masked rows.** A query row whose scores are all ``-inf`` would be ``0/0``.
We define its probabilities, its output and its gradient as 0 (what
``F.scaled_dot_product_attention`` does). The max-subtraction uses ``m = 0`` on such
a row, so ``exp(-inf) = 0`` and the row sum is 0; dividing by 1 there keeps it 0.

Backward, given :math:`dO`:

.. math::

    dV &= \tilde P^\top dO \\
    d\tilde P &= dO\, V^\top \\
    dP &= d\tilde P \circ Z / (1 - p) \\
    dS &= P \circ \big(dP - \mathrm{rowsum}(dP \circ P)\big) \qquad \text{(softmax Jacobian, row by row)} \\
    dQ &= s\, dS\, K, \qquad dK = s\, dS^\top Q

The softmax step: for one row, :math:`\partial P_i/\partial S_j = P_i(\delta_{ij} - P_j)`,
so :math:`dS_j = \sum_i dP_i P_i (\delta_{ij} - P_j) = P_j (dP_j - \sum_i dP_i P_i)`.
A fully masked row has :math:`P = 0`, hence :math:`dS = 0` and no gradient reaches q, k.
Note :math:`\mathrm{rowsum}(dP \circ P) = \mathrm{rowsum}(dO \circ O)`, with or without
dropout (FlashAttention's ``D`` trick); the code uses the first form because it reads
like the derivation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.score_mods import repeat_kv_backward, repeat_kv_forward
from reference.softmax import masked_softmax_forward, softmax_backward
from reference.validate import check_attention_shapes, check_dropout_p, check_gqa_heads, check_scale

SUPPORTED_DTYPES = (np.float32, np.float64)


def _check_inputs(q: np.ndarray, k: np.ndarray, v: np.ndarray, attn_mask: np.ndarray | None, n_rep: int) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v: expected one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if attn_mask is not None:
        if not isinstance(attn_mask, np.ndarray):
            raise TypeError(f"attn_mask: expected a numpy.ndarray, got {type(attn_mask).__name__}")
        if attn_mask.dtype != np.bool_ and not np.issubdtype(attn_mask.dtype, np.floating):
            raise TypeError(
                f"attn_mask: expected a boolean keep-mask or a floating additive mask, got dtype {attn_mask.dtype}"
            )
        if attn_mask.dtype != np.bool_ and (np.isnan(attn_mask).any() or np.isposinf(attn_mask).any()):
            raise ValueError("attn_mask: an additive mask must not hold NaN or +inf")
    k_shape, v_shape = _repeated_shape(k.shape, n_rep), _repeated_shape(v.shape, n_rep)
    check_attention_shapes(q.shape, k_shape, v_shape, None if attn_mask is None else attn_mask.shape)


def _repeated_shape(shape: tuple[int, ...], n_rep: int) -> tuple[int, ...]:
    return shape if n_rep == 1 else (*shape[:-3], shape[-3] * n_rep, *shape[-2:])


def attention_forward(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    dropout_keep: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    enable_gqa: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) -> out (..., Lq, Ev); returns (out, cache).

    Arguments follow ``F.scaled_dot_product_attention``. ``is_causal`` is top-left aligned
    (as in PyTorch); for the bottom-right alignment pass ``causal_mask(Lq, Lk, "bottom_right")``.
    Dropout (``dropout_p > 0``) needs its keep-mask, either given (``dropout_keep``, boolean,
    broadcastable to ``(..., Lq, Lk)``) or drawn from ``rng``, so that runs can be compared.

    ``enable_gqa`` (as in SDPA): k, v may have ``Hkv`` heads (axis -3) with ``Hkv`` dividing ``H``; query
    head ``h`` reads K/V head ``h // (H // Hkv)``. The cache then holds the repeated ``k``, ``v`` (the keys
    and values each query head reads) and the backward sums each group's gradient.
    """
    n_rep = check_gqa_heads(q.shape, k.shape, v.shape) if enable_gqa else 1
    _check_inputs(q, k, v, attn_mask, n_rep)
    check_dropout_p(dropout_p)
    check_scale(scale)
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask: cannot be combined with is_causal=True (as in SDPA); fold causality into the mask")
    E, Lq, Lk = q.shape[-1], q.shape[-2], k.shape[-2]
    if scale is None:
        scale = 1.0 / np.sqrt(E)
    scale = q.dtype.type(scale)  # a float64 scalar would silently promote float32 work to float64
    k = repeat_kv_forward(k, n_rep, axis=-3)  # (B, H, Lk, E): query head h reads K/V head h // n_rep
    v = repeat_kv_forward(v, n_rep, axis=-3)  # (B, H, Lk, Ev)

    # Scale q before the product, not the product after: in fp16 a raw q.k above 65504 is inf.
    scores = (scale * q) @ np.swapaxes(k, -1, -2)  # (B, H, Lq, Lk)
    if is_causal:
        attn_mask = np.tril(np.ones((Lq, Lk), dtype=bool))  # (Lq, Lk), top-left
    if attn_mask is not None and attn_mask.dtype == np.bool_:
        scores = np.where(attn_mask, scores, -np.inf)  # (B, H, Lq, Lk)
    elif attn_mask is not None:
        scores = scores + attn_mask.astype(q.dtype)  # (B, H, Lq, Lk); additive, after scaling

    probs, _ = masked_softmax_forward(scores)  # (B, H, Lq, Lk); 0 on a fully masked row

    if dropout_p > 0.0:
        if dropout_keep is None:
            if rng is None:
                raise ValueError("dropout_keep: dropout_p > 0 needs an explicit keep-mask or a seeded rng")
            dropout_keep = rng.random(probs.shape) >= dropout_p  # (B, H, Lq, Lk)
        dropout_keep = np.asarray(dropout_keep)
        if dropout_keep.dtype != np.bool_:
            raise TypeError(f"dropout_keep: expected a boolean keep-mask, got dtype {dropout_keep.dtype}")
        if not np.broadcast_shapes(dropout_keep.shape, probs.shape) == probs.shape:
            raise ValueError(f"dropout_keep: expected a shape broadcastable to {probs.shape}, got {dropout_keep.shape}")
        dropout_scale = (dropout_keep / (1.0 - dropout_p)).astype(q.dtype)  # (B, H, Lq, Lk)
        probs_dropped = probs * dropout_scale  # (B, H, Lq, Lk)
    elif dropout_keep is not None:
        raise ValueError("dropout_keep: given, but dropout_p is 0")
    else:
        dropout_scale = None
        probs_dropped = probs

    out = probs_dropped @ v  # (B, H, Lq, Ev)
    cache = {"q": q, "k": k, "v": v, "attn_mask": attn_mask, "probs": probs, "probs_dropped": probs_dropped,
             "dropout_scale": dropout_scale, "scale": scale, "n_rep": n_rep}
    return out, cache


def attention_backward(
    dout: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (..., Lq, Ev) -> (dq (..., Lq, E), dk (..., Lk, E), dv (..., Lk, Ev)); with enable_gqa dk, dv have
    the K/V heads (..., Hkv, Lk, .), each the sum over its group of query heads."""
    q, k, v = cache["q"], cache["k"], cache["v"]
    probs, probs_dropped, scale = cache["probs"], cache["probs_dropped"], cache["scale"]
    if dout.shape != probs.shape[:-1] + v.shape[-1:]:
        raise ValueError(f"dout: expected shape {probs.shape[:-1] + v.shape[-1:]} like out, got {dout.shape}")

    dv = np.swapaxes(probs_dropped, -1, -2) @ dout  # (B, H, Lk, Ev)
    dprobs = dout @ np.swapaxes(v, -1, -2)  # (B, H, Lq, Lk)
    if cache["dropout_scale"] is not None:
        dprobs = dprobs * cache["dropout_scale"]  # (B, H, Lq, Lk)
    dscores = softmax_backward(dprobs, probs)  # (B, H, Lq, Lk): P o (dP - rowsum(dP o P))
    dq = scale * (dscores @ k)  # (B, H, Lq, E)
    dk = scale * (np.swapaxes(dscores, -1, -2) @ q)  # (B, H, Lk, E)
    n_rep = cache.get("n_rep", 1)
    if n_rep > 1:
        dk = repeat_kv_backward(dk, n_rep, axis=-3)  # (B, Hkv, Lk, E): the group sum
        dv = repeat_kv_backward(dv, n_rep, axis=-3)  # (B, Hkv, Lk, Ev)
    return dq, dk, dv
