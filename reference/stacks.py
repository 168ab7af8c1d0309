r"""Encoder and decoder stacks, forward and backward, in NumPy.

.. math::

    \text{encoder:}\quad & x_0 = x, \qquad x_{i+1} = \mathrm{EncoderLayer}_i(x_i;\ \text{src\_mask}), \qquad
        y = N(x_n)\ \text{or}\ x_n \\
    \text{decoder:}\quad & x_{i+1} = \mathrm{DecoderLayer}_i(x_i, M;\ \text{tgt\_mask}, \text{memory\_mask}), \qquad
        y = N(x_n)\ \text{or}\ x_n \\
    \text{causal decoder:}\quad & x_{i+1} = \mathrm{EncoderLayer}_i(x_i;\ \text{causal}), \qquad
        y = N(x_n)\ \text{or}\ x_n

The *causal decoder* is the decoder-only LM's stack (GPT): ``config.n_decoder_layers`` self-attention
layers (the encoder layer's sublayers and parameter names: no cross-attention, no ``norm3``) under a
causal mask, query i seeing keys 0..i. Its parameters are keyed ``layers.{i}.*`` like the others.

with :math:`N` the final layer norm ``norm`` when ``config.final_norm`` (``nn.Transformer`` adds one
to each stack, even in post-norm). Every layer has its own parameters ``layers.{i}.*``.

Backward: the chain rule through the layers in reverse, :math:`dx_i = \mathrm{LayerBackward}_i(dx_{i+1})`.
Every decoder layer reads the same memory :math:`M`, so :math:`dM = \sum_i dM_i`, the sum of the
layers' ``dmemory``.

Dropout keep-masks are keyed ``layers.{i}.<site>`` (sites in ``reference.layers.dropout_site_shapes``),
drawn from ``rng`` layer by layer or given as ``dropout_keeps``; the cache returns the ones used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reference.config import TransformerConfig
from reference.layer_norm import layer_norm_backward, layer_norm_forward
from reference.layers import (
    decoder_layer_backward,
    decoder_layer_forward,
    decoder_layer_param_shapes,
    draw_dropout_keeps,
    dropout_site_shapes,
    encoder_layer_backward,
    encoder_layer_forward,
    encoder_layer_param_shapes,
    norm_param_shapes,
)
from reference.masks import causal_mask
from reference.params import prefix_params, sub_params
from reference.validate import check_layer_input, check_param_shapes


def per_layer(layer_shapes: Mapping[str, tuple[int, ...]], n_layers: int) -> dict[str, tuple[int, ...]]:
    """``layers.{i}.<key>`` for each layer i and each key of one layer, layer by layer."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(n_layers):
        shapes |= prefix_params(layer_shapes, f"layers.{i}")
    return shapes


def stack_param_shapes(layer_shapes: Mapping[str, tuple[int, ...]], n_layers: int, config: TransformerConfig
                       ) -> dict[str, tuple[int, ...]]:
    """``layers.{i}.*`` for each layer, and ``norm.*`` when ``config.final_norm``."""
    final = norm_param_shapes("norm", config) if config.final_norm else {}
    return per_layer(layer_shapes, n_layers) | final


def encoder_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """The parameter keys of an encoder stack and their shapes."""
    return stack_param_shapes(encoder_layer_param_shapes(config), config.n_encoder_layers, config)


def causal_decoder_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """The parameter keys of a causal (decoder-only) stack: ``n_decoder_layers`` self-attention layers."""
    return stack_param_shapes(encoder_layer_param_shapes(config), config.n_decoder_layers, config)


def decoder_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """The parameter keys of a decoder stack and their shapes."""
    return stack_param_shapes(decoder_layer_param_shapes(config), config.n_decoder_layers, config)


def _final_norm(x: np.ndarray, params: dict[str, np.ndarray], config: TransformerConfig) -> tuple[np.ndarray, Any]:
    if not config.final_norm:
        return x, None
    return layer_norm_forward(x, params["norm.weight"], params.get("norm.bias"), config.layer_norm_eps)


def _final_norm_backward(dy: np.ndarray, cache: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if cache is None:
        return dy, {}
    dx, dweight, dbias = layer_norm_backward(dy, cache)
    return dx, {"norm.weight": dweight} | ({} if dbias is None else {"norm.bias": dbias})


def _self_attention_stack_forward(
    x: np.ndarray,
    params: dict[str, np.ndarray],
    config: TransformerConfig,
    n_layers: int,
    mask: np.ndarray | None,
    training: bool,
    rng: np.random.Generator | None,
    dropout_keeps: Mapping[str, np.ndarray] | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (B, L, D) -> y (B, L, D) through ``n_layers`` self-attention (encoder) layers under ``mask``."""
    check_layer_input(x.shape, config.d_model, "x")
    check_param_shapes(params, stack_param_shapes(encoder_layer_param_shapes(config), n_layers, config), "params")
    B, L, _ = x.shape
    keeps = draw_dropout_keeps(per_layer(dropout_site_shapes(config, B, L), n_layers), config, training, rng,
                               dropout_keeps)
    layer_caches = []
    for i in range(n_layers):
        layer_keeps = None if keeps is None else sub_params(keeps, f"layers.{i}")
        x, layer_cache = encoder_layer_forward(x, sub_params(params, f"layers.{i}"), config, mask, training,
                                               dropout_keeps=layer_keeps)  # (B, L, D)
        layer_caches.append(layer_cache)
    y, norm_cache = _final_norm(x, params, config)  # (B, L, D)
    return y, {"layers": layer_caches, "norm": norm_cache, "keeps": keeps}


def encoder_forward(
    x: np.ndarray,
    params: dict[str, np.ndarray],
    config: TransformerConfig,
    src_mask: np.ndarray | None = None,
    training: bool = False,
    rng: np.random.Generator | None = None,
    dropout_keeps: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (B, L, D) -> y (B, L, D) through ``config.n_encoder_layers`` layers; returns (y, cache)."""
    return _self_attention_stack_forward(x, params, config, config.n_encoder_layers, src_mask, training, rng,
                                         dropout_keeps)


def encoder_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dy (B, L, D) -> (dx (B, L, D), grads keyed like the parameters)."""
    dx, grads = _final_norm_backward(dy, cache["norm"])
    for i in reversed(range(len(cache["layers"]))):
        dx, layer_grads = encoder_layer_backward(dx, cache["layers"][i])  # (B, L, D)
        grads |= prefix_params(layer_grads, f"layers.{i}")
    return dx, grads


def causal_decoder_forward(
    x: np.ndarray,
    params: dict[str, np.ndarray],
    config: TransformerConfig,
    training: bool = False,
    rng: np.random.Generator | None = None,
    dropout_keeps: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (B, L, D) -> y (B, L, D) through ``config.n_decoder_layers`` causal self-attention layers."""
    check_layer_input(x.shape, config.d_model, "x")
    L = x.shape[1]
    return _self_attention_stack_forward(x, params, config, config.n_decoder_layers, causal_mask(L, L), training,
                                         rng, dropout_keeps)


def causal_decoder_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dy (B, L, D) -> (dx (B, L, D), grads): the same chain rule as the encoder's (the mask is a constant)."""
    return encoder_backward(dy, cache)


def decoder_forward(
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
    """x (B, Lt, D), memory (B, Ls, D) -> y (B, Lt, D) through ``config.n_decoder_layers`` layers."""
    check_layer_input(x.shape, config.d_model, "x")
    check_layer_input(memory.shape, config.d_model, "memory")
    check_param_shapes(params, decoder_param_shapes(config), "params")
    (B, Lt, _), Ls = x.shape, memory.shape[1]
    keeps = draw_dropout_keeps(per_layer(dropout_site_shapes(config, B, Lt, Ls), config.n_decoder_layers), config,
                               training, rng, dropout_keeps)
    layer_caches = []
    for i in range(config.n_decoder_layers):
        layer_keeps = None if keeps is None else sub_params(keeps, f"layers.{i}")
        x, layer_cache = decoder_layer_forward(x, memory, sub_params(params, f"layers.{i}"), config, tgt_mask,
                                               memory_mask, training, dropout_keeps=layer_keeps)  # (B, Lt, D)
        layer_caches.append(layer_cache)
    y, norm_cache = _final_norm(x, params, config)  # (B, Lt, D)
    return y, {"layers": layer_caches, "norm": norm_cache, "keeps": keeps, "memory_shape": memory.shape}


def decoder_backward(
    dy: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """dy (B, Lt, D) -> (dx (B, Lt, D), dmemory (B, Ls, D), grads keyed like the parameters)."""
    dx, grads = _final_norm_backward(dy, cache["norm"])
    dmemory = np.zeros(cache["memory_shape"], dtype=dy.dtype)  # (B, Ls, D)
    for i in reversed(range(len(cache["layers"]))):
        dx, dmemory_i, layer_grads = decoder_layer_backward(dx, cache["layers"][i])  # (B, Lt, D), (B, Ls, D)
        dmemory = dmemory + dmemory_i  # every layer reads the memory: the gradients add up
        grads |= prefix_params(layer_grads, f"layers.{i}")
    return dx, dmemory, grads
