r"""The three model kinds, forward and backward, in NumPy: encoder-decoder, encoder classifier, decoder LM.

Each model is assembled from components that have their own forward/backward pair; the model
only wires them and routes gradients. With :math:`s = \sqrt{D}` when ``config.scale_embedding``
(else 1), ``PE`` the sinusoidal table sliced by the *sequence* axis and ``drop`` inverted dropout
(active only when ``training`` and ``config.dropout > 0``):

**Encoder-decoder** (the 2017 paper; native: ``nn.Transformer`` plus embeddings and generator)

.. math::

    X &= \mathrm{drop}(s\,E_\text{src}[\text{src}] + PE), \qquad
    M = \mathrm{Encoder}(X;\ \text{src\_mask}) \\
    Y &= \mathrm{drop}(s\,E_\text{tgt}[\text{tgt}] + PE), \qquad
    H = \mathrm{Decoder}(Y, M;\ \text{tgt\_mask}, \text{memory\_mask}) \\
    \text{logits} &= H W_g^\top + b_g

**Encoder classifier / regressor** (``n_outputs`` classes, or 1 for a regressor: no softmax in the
model; the loss applies it). With the keep vector :math:`m_{b,l} = [\text{tokens}_{b,l} \ne \text{pad}]`
and :math:`n_b = \sum_l m_{b,l}`:

.. math::

    H = \mathrm{Encoder}(\mathrm{drop}(s\,E[\text{tokens}] + PE);\ \text{padding mask}), \qquad
    \bar h_b = \frac{1}{n_b}\sum_l m_{b,l} H_{b,l}, \qquad
    \text{out} = \bar H W_h^\top + b_h

**Decoder-only LM** (GPT style): an encoder-style stack (self-attention and FFN, no cross-attention)
under a causal mask, its final norm when ``config.final_norm``, and an LM head:

.. math::

    H = \mathrm{Stack}(\mathrm{drop}(s\,E[\text{tokens}] + PE);\ \text{causal}), \qquad
    \text{logits} = H W_g^\top + b_g

Its depth is ``config.n_decoder_layers`` and its vocabulary ``config.tgt_vocab_size``.

**Backward.** Every step is a composition, so the chain rule is applied step by step in reverse,
each component's own backward doing its part. The three steps the models add:

- *Two uses of the memory.* Each decoder layer reads :math:`M`; ``decoder_backward`` already sums
  those contributions into ``dmemory``, which is the upstream gradient of the encoder.
- *Mean pooling.* :math:`\partial \bar h_b / \partial H_{b,l} = m_{b,l}/n_b`, so
  :math:`dH_{b,l} = m_{b,l}\, d\bar h_b / n_b`: padded positions get no gradient.
- *Tied weights* (``config.tie_weights``): the generator uses the target embedding :math:`E` as
  :math:`W_g`. :math:`E` enters the loss twice, through the lookup and through the projection,
  so its gradient is the sum of both uses,
  :math:`dE = \mathrm{scatter\_add}(s\,dY_0) + d\text{logits}^\top H`.
  In the flat dictionary a tied model has **no** ``generator.weight`` (resp. ``lm_head.weight``)
  key: the one array is ``tgt_embed.weight`` (resp. ``embed.weight``), and its gradient is the sum.
  This is what the scratch modules' ``state_dict()`` holds, since they read the embedding's
  parameter in the projection instead of owning a second one.

**Parameter keys** (the scratch modules' ``state_dict()`` keys):

- encoder-decoder: ``src_embed.weight (V_src, D)``, ``tgt_embed.weight (V_tgt, D)``, ``encoder.*``,
  ``decoder.*``, ``generator.weight (V_tgt, D)`` (absent when tied), ``generator.bias (V_tgt,)``
- classifier: ``embed.weight (V_src, D)``, ``encoder.*``, ``head.weight (n_outputs, D)``,
  ``head.bias (n_outputs,)``
- LM: ``embed.weight (V_tgt, D)``, ``decoder.layers.{i}.*`` (encoder-style layers), ``decoder.norm.*``,
  ``lm_head.weight (V_tgt, D)`` (absent when tied), ``lm_head.bias (V_tgt,)``

Biases of the heads exist when ``config.bias``, like every other bias.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reference.config import TransformerConfig
from reference.dropout import dropout_backward, dropout_forward
from reference.embedding import embedding_backward, embedding_forward
from reference.linear import linear_backward, linear_forward
from reference.masks import padding_mask
from reference.params import prefix_params, sub_params
from reference.positional_encoding import (
    positional_encoding_backward,
    positional_encoding_forward,
    sinusoidal_table,
)
from reference.stacks import (
    causal_decoder_backward,
    causal_decoder_forward,
    causal_decoder_param_shapes,
    decoder_backward,
    decoder_forward,
    decoder_param_shapes,
    encoder_backward,
    encoder_forward,
    encoder_param_shapes,
)
from reference.validate import check_classifier_tokens, check_param_shapes, check_tokens, fmt_shape

Params = dict[str, np.ndarray]


def embedding_scale(config: TransformerConfig) -> float:
    """sqrt(d_model) when config.scale_embedding, else 1 (the paper multiplies; forgetting it is a classic bug)."""
    return math.sqrt(config.d_model) if config.scale_embedding else 1.0


# ---------------------------------------------------------------------------------------------------------
# Shared steps: token embedding + positional encoding + dropout, and the output projection (maybe tied).
# ---------------------------------------------------------------------------------------------------------


def _embed_forward(
    tokens: np.ndarray, weight: np.ndarray, config: TransformerConfig, training: bool, rng: np.random.Generator | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """tokens (B, L) -> drop(s * E[tokens] + PE[:L]) (B, L, D)."""
    x, embed_cache = embedding_forward(tokens, weight, scale=embedding_scale(config))  # (B, L, D)
    table = sinusoidal_table(config.max_len, config.d_model, dtype=weight.dtype)  # (max_len, D)
    x, pe_cache = positional_encoding_forward(x, table)  # (B, L, D)
    x, drop_cache = _dropout_forward(x, config, training, rng)  # (B, L, D)
    return x, {"embed": embed_cache, "pe": pe_cache, "drop": drop_cache}


def _embed_backward(dx: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
    """dx (B, L, D) -> dweight (V, D), scatter-added over repeated tokens."""
    dx = _dropout_backward(dx, cache["drop"])  # (B, L, D)
    dx = positional_encoding_backward(dx, cache["pe"])  # (B, L, D)
    return embedding_backward(dx, cache["embed"])  # (V, D)


def _dropout_forward(
    x: np.ndarray, config: TransformerConfig, training: bool, rng: np.random.Generator | None
) -> tuple[np.ndarray, Any]:
    if not training or config.dropout == 0.0:
        return x, None
    if rng is None:
        raise ValueError(f"rng: expected a numpy Generator when training with dropout={config.dropout}, got None")
    return dropout_forward(x, config.dropout, rng=rng)


def _dropout_backward(dx: np.ndarray, cache: Any) -> np.ndarray:
    return dx if cache is None else dropout_backward(dx, cache)


def _project_forward(h: np.ndarray, params: Params, head: str, tied_key: str | None) -> tuple[np.ndarray, Any]:
    """h (B, L, D) -> h @ W.T + b (B, L, V); W is params[tied_key] when tied, else params[head + '.weight']."""
    weight = params[tied_key] if tied_key is not None else params[f"{head}.weight"]
    return linear_forward(h, weight, params.get(f"{head}.bias"))  # (B, L, V)


def _project_backward(dy: np.ndarray, cache: Any, head: str, tied_key: str | None) -> tuple[np.ndarray, Params]:
    """Returns dh and the head's gradients; a tied weight's gradient is returned under tied_key (to be summed)."""
    dh, dweight, dbias = linear_backward(dy, cache)  # (B, L, D), (V, D), (V,)
    grads = {tied_key if tied_key is not None else f"{head}.weight": dweight}
    if dbias is not None:
        grads[f"{head}.bias"] = dbias
    return dh, grads


# ---------------------------------------------------------------------------------------------------------
# Each model's flat dictionary: keys and shapes (checked on every forward), and a random initialisation
# ---------------------------------------------------------------------------------------------------------


def _head_shapes(head: str, n_out: int, config: TransformerConfig, tied: bool) -> dict[str, tuple[int, ...]]:
    shapes = {} if tied else {f"{head}.weight": (n_out, config.d_model)}
    if config.bias:
        shapes[f"{head}.bias"] = (n_out,)
    return shapes


def encoder_decoder_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the encoder-decoder's flat dictionary and its shape."""
    D = config.d_model
    return {
        "src_embed.weight": (config.src_vocab_size, D),
        "tgt_embed.weight": (config.tgt_vocab_size, D),
        **prefix_params(encoder_param_shapes(config), "encoder"),
        **prefix_params(decoder_param_shapes(config), "decoder"),
        **_head_shapes("generator", config.tgt_vocab_size, config, config.tie_weights),
    }


def encoder_classifier_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the encoder classifier's flat dictionary and its shape."""
    return {
        "embed.weight": (config.src_vocab_size, config.d_model),
        **prefix_params(encoder_param_shapes(config), "encoder"),
        **_head_shapes("head", config.n_outputs, config, tied=False),
    }


def decoder_lm_param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the decoder LM's flat dictionary and its shape."""
    return {
        "embed.weight": (config.tgt_vocab_size, config.d_model),
        **prefix_params(causal_decoder_param_shapes(config), "decoder"),
        **_head_shapes("lm_head", config.tgt_vocab_size, config, config.tie_weights),
    }


def init_params(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator, dtype: type = np.float64) -> Params:
    """Random parameters: matrices with std 1/sqrt(fan_in), layer-norm weights 1 + std 0.1, other vectors std 0.1.

    Every array differs (unlike ``nn.Transformer``'s deep-copied layers), so a test sees a mixed-up layer.
    """
    params: Params = {}
    for key, shape in shapes.items():
        scale = 1.0 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.1
        value = scale * rng.standard_normal(shape)
        if ".norm" in f".{key}" and key.endswith(".weight"):  # norm1.weight, encoder.norm.weight, ...
            value = value + 1.0
        params[key] = value.astype(dtype)
    return params


# ---------------------------------------------------------------------------------------------------------
# Encoder-decoder
# ---------------------------------------------------------------------------------------------------------


def encoder_decoder_forward(
    src: np.ndarray,
    tgt: np.ndarray,
    params: Params,
    config: TransformerConfig,
    src_mask: np.ndarray | None = None,
    tgt_mask: np.ndarray | None = None,
    memory_mask: np.ndarray | None = None,
    training: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """src (B, Ls), tgt (B, Lt) int -> logits (B, Lt, V_tgt); returns (logits, cache).

    Masks are keep-masks (True = may attend) broadcastable to (B, H, Lq, Lk); None = no mask. A causal
    target mask is the caller's choice (``causal_mask(Lt, Lt)``), as in ``nn.Transformer``.
    """
    check_tokens("src", src, config.src_vocab_size, config.max_len)
    check_tokens("tgt", tgt, config.tgt_vocab_size, config.max_len)
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(
            f"tgt: expected batch size {src.shape[0]} like src {fmt_shape(src.shape)}, got {fmt_shape(tgt.shape)}"
        )
    tied_key = "tgt_embed.weight" if config.tie_weights else None
    check_param_shapes(params, encoder_decoder_param_shapes(config), "params")

    x, src_embed_cache = _embed_forward(src, params["src_embed.weight"], config, training, rng)  # (B, Ls, D)
    memory, encoder_cache = encoder_forward(
        x, sub_params(params, "encoder"), config, src_mask=src_mask, training=training, rng=rng
    )  # (B, Ls, D)
    y, tgt_embed_cache = _embed_forward(tgt, params["tgt_embed.weight"], config, training, rng)  # (B, Lt, D)
    h, decoder_cache = decoder_forward(
        y, memory, sub_params(params, "decoder"), config,
        tgt_mask=tgt_mask, memory_mask=memory_mask, training=training, rng=rng,
    )  # (B, Lt, D)
    logits, generator_cache = _project_forward(h, params, "generator", tied_key)  # (B, Lt, V_tgt)
    cache = {
        "src_embed": src_embed_cache, "encoder": encoder_cache, "tgt_embed": tgt_embed_cache,
        "decoder": decoder_cache, "generator": generator_cache, "tied_key": tied_key,
    }
    return logits, cache


def encoder_decoder_backward(dlogits: np.ndarray, cache: dict[str, Any]) -> Params:
    """dlogits (B, Lt, V_tgt) -> the gradient of every parameter, keyed like the parameters."""
    tied_key = cache["tied_key"]
    dh, grads = _project_backward(dlogits, cache["generator"], "generator", tied_key)  # dh (B, Lt, D)
    dy, dmemory, decoder_grads = decoder_backward(dh, cache["decoder"])  # (B, Lt, D), (B, Ls, D)
    dtgt_embed = _embed_backward(dy, cache["tgt_embed"])  # (V_tgt, D)
    grads["tgt_embed.weight"] = grads.get("tgt_embed.weight", 0.0) + dtgt_embed  # tied: both uses summed
    dx, encoder_grads = encoder_backward(dmemory, cache["encoder"])  # (B, Ls, D)
    grads["src_embed.weight"] = _embed_backward(dx, cache["src_embed"])  # (V_src, D)
    grads.update(prefix_params(encoder_grads, "encoder"))
    grads.update(prefix_params(decoder_grads, "decoder"))
    return grads


# ---------------------------------------------------------------------------------------------------------
# Encoder classifier / regressor
# ---------------------------------------------------------------------------------------------------------


def encoder_classifier_forward(
    tokens: np.ndarray,
    params: Params,
    config: TransformerConfig,
    training: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """tokens (B, L) int -> out (B, n_outputs): class logits, or the regression value when n_outputs == 1.

    Pad tokens (``config.pad_id``) are masked as keys and left out of the mean pooling; a sequence made
    only of padding has nothing to pool and is an error.
    """
    check_classifier_tokens(tokens, config)
    keep = tokens != config.pad_id  # (B, L)
    counts = keep.sum(axis=1)  # (B,), >= 1
    check_param_shapes(params, encoder_classifier_param_shapes(config), "params")

    x, embed_cache = _embed_forward(tokens, params["embed.weight"], config, training, rng)  # (B, L, D)
    h, encoder_cache = encoder_forward(
        x, sub_params(params, "encoder"), config, src_mask=padding_mask(tokens, config.pad_id),
        training=training, rng=rng,
    )  # (B, L, D)
    weights = keep / counts[:, None]  # (B, L): m_bl / n_b
    pooled = np.einsum("bl,bld->bd", weights.astype(h.dtype), h)  # (B, D)
    out, head_cache = linear_forward(pooled, params["head.weight"], params.get("head.bias"))  # (B, n_outputs)
    cache = {"embed": embed_cache, "encoder": encoder_cache, "weights": weights.astype(h.dtype), "head": head_cache}
    return out, cache


def encoder_classifier_backward(dout: np.ndarray, cache: dict[str, Any]) -> Params:
    """dout (B, n_outputs) -> the gradient of every parameter."""
    dpooled, dhead_weight, dhead_bias = linear_backward(dout, cache["head"])  # (B, D), (n_outputs, D)
    dh = cache["weights"][:, :, None] * dpooled[:, None, :]  # (B, L, D): m_bl / n_b * dpooled_b
    dx, encoder_grads = encoder_backward(dh, cache["encoder"])  # (B, L, D)
    grads = {"embed.weight": _embed_backward(dx, cache["embed"]), "head.weight": dhead_weight}
    if dhead_bias is not None:
        grads["head.bias"] = dhead_bias
    grads.update(prefix_params(encoder_grads, "encoder"))
    return grads


# ---------------------------------------------------------------------------------------------------------
# Decoder-only language model
# ---------------------------------------------------------------------------------------------------------


def decoder_lm_forward(
    tokens: np.ndarray,
    params: Params,
    config: TransformerConfig,
    training: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """tokens (B, L) int -> next-token logits (B, L, V_tgt); position i sees tokens 0..i only."""
    check_tokens("tokens", tokens, config.tgt_vocab_size, config.max_len)
    tied_key = "embed.weight" if config.tie_weights else None
    check_param_shapes(params, decoder_lm_param_shapes(config), "params")

    x, embed_cache = _embed_forward(tokens, params["embed.weight"], config, training, rng)  # (B, L, D)
    h, stack_cache = causal_decoder_forward(x, sub_params(params, "decoder"), config, training, rng)  # (B, L, D)
    logits, head_cache = _project_forward(h, params, "lm_head", tied_key)  # (B, L, V_tgt)
    return logits, {"embed": embed_cache, "stack": stack_cache, "lm_head": head_cache, "tied_key": tied_key}


def decoder_lm_backward(dlogits: np.ndarray, cache: dict[str, Any]) -> Params:
    """dlogits (B, L, V_tgt) -> the gradient of every parameter (a tied embedding: both uses summed)."""
    dh, grads = _project_backward(dlogits, cache["lm_head"], "lm_head", cache["tied_key"])  # dh (B, L, D)
    dx, stack_grads = causal_decoder_backward(dh, cache["stack"])  # (B, L, D)
    grads["embed.weight"] = grads.get("embed.weight", 0.0) + _embed_backward(dx, cache["embed"])  # (V, D)
    grads.update(prefix_params(stack_grads, "decoder"))
    return grads
