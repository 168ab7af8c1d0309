r"""Multi-head attention, self and cross, forward and backward, in NumPy.

Shapes: ``x_q (B, Lq, D)`` (the queries' source), ``x_kv (B, Lk, D)`` (keys' and values'
source; self-attention passes ``x`` twice), ``H`` heads of ``d_head = D / H``.

Forward, with :math:`\mathrm{split}` reshaping ``(B, L, D) -> (B, L, H, d_head) -> (B, H, L, d_head)``
with *each tensor's own* length ``L`` and :math:`\mathrm{merge}` its inverse:

.. math::

    Q &= \mathrm{split}(X_q W_q^\top + b_q), \quad
    K = \mathrm{split}(X_{kv} W_k^\top + b_k), \quad
    V = \mathrm{split}(X_{kv} W_v^\top + b_v) \\
    O &= \mathrm{attention}(Q, K, V;\ \text{mask}, p) \qquad (B, H, L_q, d_\text{head}) \\
    Y &= \mathrm{merge}(O)\, W_o^\top + b_o \qquad (B, L_q, D)

Parameters (biases optional, all four or none): ``q_proj.weight (D, D)``, ``q_proj.bias (D,)``,
and the same for ``k_proj``, ``v_proj``, ``out_proj``.

Backward: each step is linear in its input except the attention core, whose backward is
in ``reference/attention.py``; ``split`` and ``merge`` are permutations, so the backward of
one is the other. Reading the forward in reverse:

.. math::

    d\,\mathrm{merge}(O),\ dW_o,\ db_o &= \mathrm{linear\_backward}(dY) \\
    dQ, dK, dV &= \mathrm{attention\_backward}(\mathrm{split}(d\,\mathrm{merge}(O))) \\
    dX_q, dW_q, db_q &= \mathrm{linear\_backward}(\mathrm{merge}(dQ)) \\
    dX_{kv} &= \mathrm{linear\_backward}_k(\mathrm{merge}(dK)) + \mathrm{linear\_backward}_v(\mathrm{merge}(dV))

``X_kv`` feeds both K and V, so its gradient is the sum of the two paths. Self-attention
callers pass one ``x`` twice and add ``dX_q + dX_kv`` (the multivariate chain rule once more).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.attention import attention_backward, attention_forward
from reference.linear import linear_backward, linear_forward
from reference.validate import check_mha_inputs, check_param_shapes

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def mha_param_shapes(d_model: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    """The parameter keys of one multi-head attention and their shapes."""
    shapes: dict[str, tuple[int, ...]] = {}
    for proj in PROJECTIONS:
        shapes[f"{proj}.weight"] = (d_model, d_model)
        if bias:
            shapes[f"{proj}.bias"] = (d_model,)
    return shapes


def split_heads(x: np.ndarray, n_heads: int) -> np.ndarray:
    """(B, L, D) -> (B, H, L, d_head), with x's own length L."""
    B, L, D = x.shape
    return x.reshape(B, L, n_heads, D // n_heads).transpose(0, 2, 1, 3)  # (B, H, L, d_head)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, H, L, d_head) -> (B, L, H * d_head), the inverse of ``split_heads``."""
    B, H, L, d_head = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, H * d_head)  # (B, L, D)


def mha_forward(
    x_q: np.ndarray,
    x_kv: np.ndarray,
    params: dict[str, np.ndarray],
    n_heads: int,
    attn_mask: np.ndarray | None = None,
    dropout_p: float = 0.0,
    dropout_keep: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """x_q (B, Lq, D), x_kv (B, Lk, D) -> y (B, Lq, D); returns (y, cache).

    ``attn_mask``: a boolean keep-mask or an additive float mask broadcastable to (B, H, Lq, Lk).
    ``dropout_p`` drops attention probabilities, with the keep-mask ``dropout_keep``
    (B, H, Lq, Lk) or one drawn from ``rng``.
    """
    check_mha_inputs(x_q.shape, x_kv.shape, n_heads)
    D = x_q.shape[-1]
    check_param_shapes(params, mha_param_shapes(D, bias="q_proj.bias" in params), "params")

    caches = {}
    heads = {}
    for name, x in (("q", x_q), ("k", x_kv), ("v", x_kv)):
        projected, caches[name] = linear_forward(x, params[f"{name}_proj.weight"], params.get(f"{name}_proj.bias"))
        heads[name] = split_heads(projected, n_heads)  # (B, H, L, d_head), L = Lq for q, Lk for k and v
    out, caches["attention"] = attention_forward(heads["q"], heads["k"], heads["v"], attn_mask, dropout_p,
                                                 dropout_keep=dropout_keep, rng=rng)  # (B, H, Lq, d_head)
    y, caches["out"] = linear_forward(merge_heads(out), params["out_proj.weight"],
                                      params.get("out_proj.bias"))  # (B, Lq, D)
    caches["n_heads"] = n_heads
    return y, caches


def mha_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """dy (B, Lq, D) -> (dx_q (B, Lq, D), dx_kv (B, Lk, D), grads keyed like the parameters)."""
    n_heads = cache["n_heads"]
    grads: dict[str, np.ndarray] = {}

    dmerged, grads["out_proj.weight"], dbias = linear_backward(dy, cache["out"])  # (B, Lq, D)
    if dbias is not None:
        grads["out_proj.bias"] = dbias
    dheads = attention_backward(split_heads(dmerged, n_heads), cache["attention"])  # 3 x (B, H, L, d_head)

    dx = {}
    for name, dhead in zip(("q", "k", "v"), dheads, strict=True):
        dx[name], grads[f"{name}_proj.weight"], dbias = linear_backward(merge_heads(dhead), cache[name])  # (B, L, D)
        if dbias is not None:
            grads[f"{name}_proj.bias"] = dbias
    return dx["q"], dx["k"] + dx["v"], grads
