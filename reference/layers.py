r"""Encoder and decoder layers, post-norm and pre-norm, forward and backward, in NumPy.

Every sub-layer :math:`F` (self-attention, cross-attention, feed-forward) sits in a residual
block; ``config.norm_first`` picks where its layer norm :math:`N` goes, with :math:`\mathrm{drop}`
the block's own dropout site (``dropout1..3``, as ``nn.Transformer*Layer`` names them):

.. math::

    \text{post-norm (2017 paper, torch's default):}\quad & y = N(x + \mathrm{drop}(F(x))) \\
    \text{pre-norm (norm\_first, GPT):}\quad & y = x + \mathrm{drop}(F(N(x)))

Encoder layer: ``self_attn`` with ``norm1``/``dropout1``, then ``ffn`` with ``norm2``/``dropout2``.
Decoder layer: ``self_attn`` (``norm1``), ``cross_attn`` over the memory (queries from x, keys and
values from the memory; ``norm2``), ``ffn`` (``norm3``). The FFN is
``linear2(dropout(act(linear1(x))))`` with its own inner dropout, and the attention probabilities
are dropped too: with ``training`` and ``config.dropout = p > 0`` every site uses ``p``.

Backward. Each block is split in two halves, ``residual_in`` (:math:`N` or identity) and
``residual_out`` (:math:`x + \mathrm{drop}(s)`, then :math:`N` in post-norm). With :math:`h = x + \mathrm{drop}(s)`:

.. math::

    \text{post-norm:}\quad dh &= N'^\top dy, \qquad dx = dh + F'^\top\, \mathrm{drop}'(dh) \\
    \text{pre-norm:}\quad dh &= dy, \qquad\quad\; dx = dh + N'^\top F'^\top\, \mathrm{drop}'(dh)

The skip connection carries :math:`dh` to :math:`x` unchanged and the sub-layer adds its own
path (the chain rule on a sum). Self-attention reads its input as queries *and* keys/values, so
its input gradient is ``dx_q + dx_kv``; cross-attention sends ``dx_kv`` to the memory, and a
decoder layer returns that as ``dmemory``. :math:`N'^\top`, :math:`F'^\top`, :math:`\mathrm{drop}'` are the
components' own backwards (``layer_norm``, ``multi_head_attention``, ``feed_forward``, ``dropout``).

Dropout keep-masks: drawn from ``rng`` in a fixed order (``dropout_site_shapes``), or
given as ``dropout_keeps`` (``{site: bool array}``); the cache returns the ones used, so the scratch
layers can be driven by the same masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reference.config import TransformerConfig
from reference.dropout import dropout_backward, dropout_forward
from reference.feed_forward import feed_forward_backward, feed_forward_forward
from reference.layer_norm import layer_norm_backward, layer_norm_forward
from reference.multi_head_attention import mha_backward, mha_forward, mha_param_shapes
from reference.params import prefix_params, sub_params
from reference.validate import check_layer_input, check_mask_shape, check_param_shapes, fmt_shape


def norm_param_shapes(name: str, config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """``{name}.weight`` (D,) and, when ``config.bias``, ``{name}.bias`` (D,) (torch drops norm biases too)."""
    shapes = {f"{name}.weight": (config.d_model,)}
    if config.bias:
        shapes[f"{name}.bias"] = (config.d_model,)
    return shapes


def _ffn_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    D, D_ff = config.d_model, config.d_ff
    shapes = {"ffn.linear1.weight": (D_ff, D), "ffn.linear2.weight": (D, D_ff)}
    if config.bias:
        shapes |= {"ffn.linear1.bias": (D_ff,), "ffn.linear2.bias": (D,)}
    return shapes


def encoder_layer_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """The parameter keys of one encoder layer and their shapes."""
    return (prefix_params(mha_param_shapes(config.d_model, config.bias), "self_attn")
            | norm_param_shapes("norm1", config) | norm_param_shapes("norm2", config) | _ffn_shapes(config))


def decoder_layer_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """The parameter keys of one decoder layer and their shapes."""
    attention = mha_param_shapes(config.d_model, config.bias)
    return (prefix_params(attention, "self_attn") | prefix_params(attention, "cross_attn")
            | norm_param_shapes("norm1", config) | norm_param_shapes("norm2", config)
            | norm_param_shapes("norm3", config) | _ffn_shapes(config))


def dropout_site_shapes(config: TransformerConfig, B: int, Lt: int, Ls: int | None = None
                        ) -> dict[str, tuple[int, ...]]:
    """The keep-mask shape of each dropout site, in drawing order: an encoder layer (``Ls=None``) or a decoder layer."""
    D, H, D_ff = config.d_model, config.n_heads, config.d_ff
    if Ls is None:
        return {"self_attn": (B, H, Lt, Lt), "dropout1": (B, Lt, D), "ffn": (B, Lt, D_ff), "dropout2": (B, Lt, D)}
    return {"self_attn": (B, H, Lt, Lt), "dropout1": (B, Lt, D), "cross_attn": (B, H, Lt, Ls),
            "dropout2": (B, Lt, D), "ffn": (B, Lt, D_ff), "dropout3": (B, Lt, D)}


def draw_dropout_keeps(
    shapes: Mapping[str, tuple[int, ...]],
    config: TransformerConfig,
    training: bool,
    rng: np.random.Generator | None,
    dropout_keeps: Mapping[str, np.ndarray] | None,
) -> dict[str, np.ndarray] | None:
    """The keep-mask of every site (given, or drawn from ``rng`` in the order of ``shapes``); None when off."""
    if not (training and config.dropout > 0.0):
        if dropout_keeps is not None:
            raise ValueError("dropout_keeps: given, but dropout is off (training=False or config.dropout=0)")
        return None
    if dropout_keeps is None:
        if rng is None:
            raise ValueError("rng: training with config.dropout > 0 needs a seeded np.random.Generator "
                             "(or explicit dropout_keeps)")
        return {site: rng.random(shape) >= config.dropout for site, shape in shapes.items()}
    check_param_shapes(dropout_keeps, shapes, "dropout_keeps")
    return dict(dropout_keeps)


def residual_in(x: np.ndarray, params: dict, norm: str, config: TransformerConfig) -> tuple[np.ndarray, Any]:
    """The sub-layer's input: N(x) in pre-norm, x itself in post-norm."""
    if not config.norm_first:
        return x, None
    return layer_norm_forward(x, params[f"{norm}.weight"], params.get(f"{norm}.bias"), config.layer_norm_eps)


def residual_in_backward(dinner: np.ndarray, cache: Any, norm: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """d(sub-layer input) -> (dx, the norm's grads in pre-norm)."""
    if cache is None:
        return dinner, {}
    dx, dweight, dbias = layer_norm_backward(dinner, cache)
    return dx, _norm_grads(norm, dweight, dbias)


def residual_out(
    x: np.ndarray, s: np.ndarray, params: dict, norm: str, config: TransformerConfig, p: float,
    keep: np.ndarray | None,
) -> tuple[np.ndarray, Any]:
    """h = x + drop(s); the block's output is N(h) in post-norm, h in pre-norm."""
    dropped, dropout_cache = dropout_forward(s, p, keep=keep)  # (B, L, D)
    h = x + dropped  # (B, L, D)
    if config.norm_first:
        return h, (dropout_cache, None)
    y, norm_cache = layer_norm_forward(h, params[f"{norm}.weight"], params.get(f"{norm}.bias"), config.layer_norm_eps)
    return y, (dropout_cache, norm_cache)


def residual_out_backward(dy: np.ndarray, cache: Any, norm: str
                          ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """dy -> (dh: the skip path's gradient to x, ds: the sub-layer output's gradient, the norm's grads in post-norm)."""
    dropout_cache, norm_cache = cache
    grads: dict[str, np.ndarray] = {}
    dh = dy
    if norm_cache is not None:
        dh, dweight, dbias = layer_norm_backward(dy, norm_cache)
        grads = _norm_grads(norm, dweight, dbias)
    return dh, dropout_backward(dh, dropout_cache), grads


def _norm_grads(norm: str, dweight: np.ndarray, dbias: np.ndarray | None) -> dict[str, np.ndarray]:
    grads = {f"{norm}.weight": dweight}
    if dbias is not None:
        grads[f"{norm}.bias"] = dbias
    return grads


def encoder_layer_forward(
    x: np.ndarray,
    params: dict[str, np.ndarray],
    config: TransformerConfig,
    src_mask: np.ndarray | None = None,
    training: bool = False,
    rng: np.random.Generator | None = None,
    dropout_keeps: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (B, L, D) -> y (B, L, D); ``src_mask`` keep-mask (or additive) broadcastable to (B, H, L, L)."""
    check_layer_input(x.shape, config.d_model, "x")
    B, L, _ = x.shape
    check_mask_shape(src_mask, (B, config.n_heads, L, L), "src_mask")
    check_param_shapes(params, encoder_layer_param_shapes(config), "params")
    keeps = draw_dropout_keeps(dropout_site_shapes(config, B, L), config, training, rng, dropout_keeps)
    p = config.dropout if keeps is not None else 0.0
    keep = keeps or {}
    cache: dict[str, Any] = {"keeps": keeps}

    inner, cache["in1"] = residual_in(x, params, "norm1", config)  # (B, L, D)
    attended, cache["self_attn"] = mha_forward(inner, inner, sub_params(params, "self_attn"), config.n_heads,
                                               src_mask, p, keep.get("self_attn"))  # (B, L, D)
    x, cache["out1"] = residual_out(x, attended, params, "norm1", config, p, keep.get("dropout1"))  # (B, L, D)

    inner, cache["in2"] = residual_in(x, params, "norm2", config)  # (B, L, D)
    fed, cache["ffn"] = feed_forward_forward(inner, sub_params(params, "ffn"), config.activation, p,
                                             keep.get("ffn"))  # (B, L, D)
    y, cache["out2"] = residual_out(x, fed, params, "norm2", config, p, keep.get("dropout2"))  # (B, L, D)
    return y, cache


def encoder_layer_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dy (B, L, D) -> (dx (B, L, D), grads keyed like the parameters)."""
    dh, dfed, grads = residual_out_backward(dy, cache["out2"], "norm2")
    dinner, ffn_grads = feed_forward_backward(dfed, cache["ffn"])
    dx_ffn, norm_grads = residual_in_backward(dinner, cache["in2"], "norm2")
    grads |= prefix_params(ffn_grads, "ffn") | norm_grads
    dx = dh + dx_ffn  # (B, L, D): skip path + sub-layer path

    dh, dattended, norm_grads = residual_out_backward(dx, cache["out1"], "norm1")
    dx_q, dx_kv, attn_grads = mha_backward(dattended, cache["self_attn"])
    dx_attn, in_grads = residual_in_backward(dx_q + dx_kv, cache["in1"], "norm1")
    grads |= prefix_params(attn_grads, "self_attn") | norm_grads | in_grads
    return dh + dx_attn, grads


def decoder_layer_forward(
    x: np.ndarray,
    memory: np.ndarray,
    params: dict[str, np.ndarray],
    config: TransformerConfig,
    tgt_mask: np.ndarray | None = None,
    memory_mask: np.ndarray | None = None,
    training: bool = False,
    rng: np.random.Generator | None = None,
    dropout_keeps: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (B, Lt, D), memory (B, Ls, D) -> y (B, Lt, D); masks broadcastable to (B, H, Lt, Lt) / (B, H, Lt, Ls)."""
    check_layer_input(x.shape, config.d_model, "x")
    check_layer_input(memory.shape, config.d_model, "memory")
    (B, Lt, _), Ls, H = x.shape, memory.shape[1], config.n_heads
    if memory.shape[0] != B:
        raise ValueError(f"memory: expected (B, Ls, d_model) with B={B} like x, got {fmt_shape(memory.shape)}")
    check_mask_shape(tgt_mask, (B, H, Lt, Lt), "tgt_mask")
    check_mask_shape(memory_mask, (B, H, Lt, Ls), "memory_mask")
    check_param_shapes(params, decoder_layer_param_shapes(config), "params")
    keeps = draw_dropout_keeps(dropout_site_shapes(config, B, Lt, Ls), config, training, rng, dropout_keeps)
    p = config.dropout if keeps is not None else 0.0
    keep = keeps or {}
    cache: dict[str, Any] = {"keeps": keeps}

    inner, cache["in1"] = residual_in(x, params, "norm1", config)  # (B, Lt, D)
    attended, cache["self_attn"] = mha_forward(inner, inner, sub_params(params, "self_attn"), H, tgt_mask, p,
                                               keep.get("self_attn"))  # (B, Lt, D)
    x, cache["out1"] = residual_out(x, attended, params, "norm1", config, p, keep.get("dropout1"))  # (B, Lt, D)

    inner, cache["in2"] = residual_in(x, params, "norm2", config)  # (B, Lt, D)
    attended, cache["cross_attn"] = mha_forward(inner, memory, sub_params(params, "cross_attn"), H, memory_mask, p,
                                                keep.get("cross_attn"))  # (B, Lt, D); keys from memory (B, Ls, D)
    x, cache["out2"] = residual_out(x, attended, params, "norm2", config, p, keep.get("dropout2"))  # (B, Lt, D)

    inner, cache["in3"] = residual_in(x, params, "norm3", config)  # (B, Lt, D)
    fed, cache["ffn"] = feed_forward_forward(inner, sub_params(params, "ffn"), config.activation, p,
                                             keep.get("ffn"))  # (B, Lt, D)
    y, cache["out3"] = residual_out(x, fed, params, "norm3", config, p, keep.get("dropout3"))  # (B, Lt, D)
    return y, cache


def decoder_layer_backward(
    dy: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """dy (B, Lt, D) -> (dx (B, Lt, D), dmemory (B, Ls, D), grads keyed like the parameters)."""
    dh, dfed, grads = residual_out_backward(dy, cache["out3"], "norm3")
    dinner, ffn_grads = feed_forward_backward(dfed, cache["ffn"])
    dx_ffn, norm_grads = residual_in_backward(dinner, cache["in3"], "norm3")
    grads |= prefix_params(ffn_grads, "ffn") | norm_grads
    dx = dh + dx_ffn  # (B, Lt, D)

    dh, dattended, norm_grads = residual_out_backward(dx, cache["out2"], "norm2")
    dx_q, dmemory, attn_grads = mha_backward(dattended, cache["cross_attn"])  # dmemory (B, Ls, D)
    dx_attn, in_grads = residual_in_backward(dx_q, cache["in2"], "norm2")
    grads |= prefix_params(attn_grads, "cross_attn") | norm_grads | in_grads
    dx = dh + dx_attn  # (B, Lt, D)

    dh, dattended, norm_grads = residual_out_backward(dx, cache["out1"], "norm1")
    dx_q, dx_kv, attn_grads = mha_backward(dattended, cache["self_attn"])
    dx_attn, in_grads = residual_in_backward(dx_q + dx_kv, cache["in1"], "norm1")
    grads |= prefix_params(attn_grads, "self_attn") | norm_grads | in_grads
    return dh + dx_attn, dmemory, grads
