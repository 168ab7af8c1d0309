r"""Choosing the next token, and generating a sequence one token at a time (NumPy; used by all three).

**Greedy** (``temperature == 0``): :math:`y_t = \arg\max_v \ell_{t,v}` (the lowest id on a tie).

**Temperature sampling** (``temperature = T > 0``): draw :math:`y_t` from

.. math::  p_v = \mathrm{softmax}(\ell_t / T)_v
               = \frac{e^{(\ell_{t,v} - m)/T}}{\sum_u e^{(\ell_{t,u} - m)/T}},
           \qquad m = \max_u \ell_{t,u}

by inversion: with :math:`u \sim U[0, 1)` from a seeded ``np.random.Generator``, the token is the
first :math:`v` whose cumulative probability exceeds :math:`u`. :math:`T \to 0` tends to greedy,
:math:`T = 1` samples the model's own distribution, :math:`T > 1` flattens it.

The sampler sees only logits, so the three implementations share it: a torch model hands its
logits over as NumPy, and the same seed then draws the same tokens from the same logits.

**Generation.** ``generate`` appends ``max_tokens`` tokens to a prompt, calling ``next_logits``
with the whole sequence so far: full recomputation, the definition that the incremental decoders
(with a key/value cache) are tested against. A row that has produced ``eos_id`` keeps producing
``eos_id``; generation stops early once every row has.

**Incremental decoding with a key/value cache.** In a causal stack the output at position
:math:`t` depends on earlier positions only through the keys and values of each self-attention,
:math:`K_{\le t} = X_{\le t} W_k^\top + b_k` (likewise :math:`V`), where :math:`X` is that attention's
input (the layer input in post-norm, its normed input in pre-norm). Every other step (embedding,
layer norms, feed-forward, projections) acts position by position. So each layer keeps
:math:`K, V` of shape ``(B, H, t, d_head)``; a step with ``n`` new tokens computes their rows only,
appends their keys and values, and lets the new queries attend to all ``t + n`` keys under the
**bottom-right** causal mask ``causal_mask(n, t + n, "bottom_right")`` (new query i sees keys
``j <= t + i``). The encoder-decoder's cross-attention reads the fixed memory: its keys and values
are computed once, when the cache is made. Positions are absolute, so the new tokens get the
positional encoding of rows ``t .. t + n - 1``. Run in float64 the logits equal the full
recomputation (``reference.models``) to rounding; ``equivalence_tests/test_decode.py`` proves it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from reference.attention import attention_forward
from reference.config import TransformerConfig
from reference.embedding import embedding_forward
from reference.feed_forward import feed_forward_forward
from reference.layer_norm import layer_norm_forward
from reference.layers import residual_in, residual_out
from reference.linear import linear_forward
from reference.masks import causal_mask
from reference.models import decoder_lm_param_shapes, embedding_scale, encoder_decoder_param_shapes
from reference.multi_head_attention import merge_heads, split_heads
from reference.params import sub_params
from reference.positional_encoding import sinusoidal_table
from reference.softmax import softmax_forward
from reference.stacks import encoder_forward
from reference.validate import check_param_shapes, check_real, check_tokens, fmt_shape

Params = dict[str, np.ndarray]


def next_token(
    logits: np.ndarray, temperature: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """logits (B, V) -> token ids (B,) int64: greedy at temperature 0, else sampled with ``rng``."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] == 0 or not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(
            f"logits: expected floating (B, V) with V >= 1, got {logits.dtype} {fmt_shape(logits.shape)}"
        )
    check_real("temperature", temperature, 0.0, what="a finite float")
    if np.isnan(logits).any():
        rows = np.flatnonzero(np.isnan(logits).any(axis=-1)).tolist()
        raise ValueError(f"logits: NaN in rows {rows}: no token can be chosen (greedy would pick id 0)")
    if temperature == 0.0:
        return np.argmax(logits, axis=-1).astype(np.int64)  # (B,)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng: expected a numpy Generator to sample at temperature {temperature}, got {rng!r}"
        )
    probs, _ = softmax_forward(logits.astype(np.float64) / temperature)  # (B, V)
    cumulative = np.cumsum(probs, axis=-1)  # (B, V)
    u = rng.random(logits.shape[0])[:, None] * cumulative[:, -1:]  # (B, 1), scaled by the sum ~ 1
    return np.minimum(np.sum(cumulative <= u, axis=-1), logits.shape[1] - 1).astype(np.int64)  # (B,)


def generate(
    next_logits: Callable[[np.ndarray], np.ndarray],
    prompt: np.ndarray,
    max_tokens: int,
    temperature: float = 0.0,
    rng: np.random.Generator | None = None,
    eos_id: int | None = None,
) -> np.ndarray:
    """prompt (B, P) int -> (B, P + n), n <= max_tokens; ``next_logits(tokens (B, t)) -> (B, V)``."""
    tokens = np.asarray(prompt)
    if tokens.ndim != 2 or tokens.shape[1] == 0 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"prompt: expected integer token ids (B, P) with P >= 1, got {tokens.dtype} "
                         f"{fmt_shape(tokens.shape)}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise ValueError(f"max_tokens: expected an int >= 0, got {max_tokens!r}")
    tokens = tokens.astype(np.int64)
    done = np.zeros(tokens.shape[0], dtype=bool)  # (B,) rows that have produced eos_id
    for _ in range(max_tokens):
        chosen = next_token(next_logits(tokens), temperature, rng)  # (B,)
        if eos_id is not None:
            chosen = np.where(done, eos_id, chosen)  # (B,)
            done |= chosen == eos_id
        tokens = np.concatenate([tokens, chosen[:, None]], axis=1)  # (B, t + 1)
        if done.all():
            break
    return tokens


# ---------------------------------------------------------------------------------------------------------
# Incremental decoding with a key/value cache
# ---------------------------------------------------------------------------------------------------------


@dataclass
class KVCache:
    """Keys and values of every self-attention so far, (B, H, t, d_head) per layer, and the position t.

    ``cross_kv`` holds the encoder-decoder's cross-attention keys and values of the memory (fixed), and
    ``memory_mask`` its keep-mask.
    """

    self_kv: list[dict[str, np.ndarray]]
    cross_kv: list[dict[str, np.ndarray]] = field(default_factory=list)
    memory_mask: np.ndarray | None = None
    t: int = 0


def _heads(x: np.ndarray, params: Params, proj: str, n_heads: int) -> np.ndarray:
    """x (B, n, D) -> proj(x) split into heads (B, H, n, d_head)."""
    y, _ = linear_forward(x, params[f"{proj}.weight"], params.get(f"{proj}.bias"))  # (B, n, D)
    return split_heads(y, n_heads)  # (B, H, n, d_head)


def _cached_attention(
    x: np.ndarray,
    params: Params,
    n_heads: int,
    kv: dict[str, np.ndarray],
    mask: np.ndarray | None,
    append: bool,
) -> np.ndarray:
    """Queries from x (B, n, D) over the cached keys/values (after appending x's own when ``append``)."""
    q = _heads(x, params, "q_proj", n_heads)  # (B, H, n, d_head)
    if append:
        for name in ("k", "v"):
            new = _heads(x, params, f"{name}_proj", n_heads)  # (B, H, n, d_head)
            kv[name] = np.concatenate([kv[name], new], axis=2)  # (B, H, t + n, d_head)
    out, _ = attention_forward(q, kv["k"], kv["v"], mask)  # (B, H, n, d_head)
    y, _ = linear_forward(merge_heads(out), params["out_proj.weight"],
                          params.get("out_proj.bias"))  # (B, n, D)
    return y


def _block(x: np.ndarray, params: Params, norm: str, config: TransformerConfig, sublayer) -> np.ndarray:
    """One residual block at inference: N(x + F(x)) in post-norm, x + F(N(x)) in pre-norm (no dropout)."""
    inner, _ = residual_in(x, params, norm, config)  # (B, n, D)
    y, _ = residual_out(x, sublayer(inner), params, norm, config, 0.0, None)  # (B, n, D)
    return y


def _layer_step(
    x: np.ndarray, params: Params, config: TransformerConfig, cache: KVCache, i: int
) -> np.ndarray:
    """Layer i on the new rows: encoder-style for the LM, a decoder layer when cache.cross_kv is set."""
    n, t = x.shape[1], cache.t
    causal = causal_mask(n, t + n, "bottom_right")  # (n, t + n): new query i sees keys j <= t + i
    self_attn = sub_params(params, "self_attn")
    x = _block(x, params, "norm1", config, lambda h: _cached_attention(
        h, self_attn, config.n_heads, cache.self_kv[i], causal, append=True))
    norm_ffn = "norm2"
    if cache.cross_kv:
        cross_attn = sub_params(params, "cross_attn")
        x = _block(x, params, "norm2", config, lambda h: _cached_attention(
            h, cross_attn, config.n_heads, cache.cross_kv[i], cache.memory_mask, append=False))
        norm_ffn = "norm3"
    ffn = sub_params(params, "ffn")
    return _block(x, params, norm_ffn, config, lambda h: feed_forward_forward(h, ffn, config.activation)[0])


def _embed_at(tokens: np.ndarray, weight: np.ndarray, config: TransformerConfig, start: int) -> np.ndarray:
    """tokens (B, n) at positions start .. start + n - 1 -> s E[tokens] + PE[start : start + n] (B, n, D)."""
    n = tokens.shape[1]
    if start + n > config.max_len:
        raise ValueError(f"tokens: positions up to {start + n - 1} exceed max_len={config.max_len}")
    x, _ = embedding_forward(tokens, weight, scale=embedding_scale(config))  # (B, n, D)
    table = sinusoidal_table(config.max_len, config.d_model, dtype=weight.dtype)  # (max_len, D)
    return x + table[start:start + n]  # (B, n, D)


def _empty_kv(
    batch: int, n_layers: int, config: TransformerConfig, dtype: np.dtype
) -> list[dict[str, np.ndarray]]:
    empty = np.zeros((batch, config.n_heads, 0, config.d_head), dtype=dtype)  # (B, H, 0, d_head)
    return [{"k": empty, "v": empty} for _ in range(n_layers)]


def _decode_step(
    tokens: np.ndarray,
    params: Params,
    config: TransformerConfig,
    cache: KVCache,
    embed: str,
    stack: str,
    head: str,
) -> np.ndarray:
    """New tokens (B, n) -> their logits (B, n, V), through the cached stack; advances cache.t by n."""
    h = _embed_at(tokens, params[f"{embed}.weight"], config, cache.t)  # (B, n, D)
    for i in range(len(cache.self_kv)):
        h = _layer_step(h, sub_params(params, f"{stack}.layers.{i}"), config, cache, i)  # (B, n, D)
    if config.final_norm:
        h, _ = layer_norm_forward(h, params[f"{stack}.norm.weight"], params.get(f"{stack}.norm.bias"),
                                  config.layer_norm_eps)  # (B, n, D)
    weight = params[f"{embed}.weight"] if config.tie_weights else params[f"{head}.weight"]
    logits, _ = linear_forward(h, weight, params.get(f"{head}.bias"))  # (B, n, V)
    cache.t += tokens.shape[1]
    return logits


def decoder_lm_cache(params: Params, config: TransformerConfig, batch: int) -> KVCache:
    """An empty cache for the decoder-only LM."""
    check_param_shapes(params, decoder_lm_param_shapes(config), "params")
    return KVCache(self_kv=_empty_kv(batch, config.n_decoder_layers, config, params["embed.weight"].dtype))


def decoder_lm_step(
    tokens: np.ndarray, params: Params, config: TransformerConfig, cache: KVCache
) -> np.ndarray:
    """The next tokens (B, n) -> their logits (B, n, V_tgt), as ``decoder_lm_forward`` on the whole prefix."""
    check_tokens("tokens", tokens, config.tgt_vocab_size, config.max_len)
    return _decode_step(tokens, params, config, cache, "embed", "decoder", "lm_head")


def encoder_decoder_cache(
    src: np.ndarray, params: Params, config: TransformerConfig, src_mask: np.ndarray | None = None,
    memory_mask: np.ndarray | None = None,
) -> KVCache:
    """Encode ``src`` (B, Ls) once; the cache holds each decoder layer's cross-attention keys and values."""
    check_tokens("src", src, config.src_vocab_size, config.max_len)
    check_param_shapes(params, encoder_decoder_param_shapes(config), "params")
    x = _embed_at(src, params["src_embed.weight"], config, 0)  # (B, Ls, D)
    memory, _ = encoder_forward(x, sub_params(params, "encoder"), config, src_mask=src_mask)  # (B, Ls, D)
    cross_kv = []
    for i in range(config.n_decoder_layers):
        cross_attn = sub_params(params, f"decoder.layers.{i}.cross_attn")
        cross_kv.append({"k": _heads(memory, cross_attn, "k_proj", config.n_heads),  # (B, H, Ls, d_head)
                         "v": _heads(memory, cross_attn, "v_proj", config.n_heads)})  # (B, H, Ls, d_head)
    dtype = params["tgt_embed.weight"].dtype
    return KVCache(self_kv=_empty_kv(src.shape[0], config.n_decoder_layers, config, dtype), cross_kv=cross_kv,
                   memory_mask=memory_mask)


def encoder_decoder_step(
    tgt: np.ndarray, params: Params, config: TransformerConfig, cache: KVCache
) -> np.ndarray:
    """The next target tokens (B, n) -> their logits (B, n, V_tgt), equal to ``encoder_decoder_forward`` with
    a causal target mask on the whole prefix."""
    check_tokens("tgt", tgt, config.tgt_vocab_size, config.max_len)
    return _decode_step(tgt, params, config, cache, "tgt_embed", "decoder", "generator")


def cached_next_logits(step: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Adapt ``step(new tokens (B, n)) -> logits (B, n, V)`` to ``generate``'s ``next_logits(all tokens)``:
    it feeds only the tokens the cache has not seen and returns the last position's logits (B, V)."""
    seen = 0

    def next_logits(tokens: np.ndarray) -> np.ndarray:
        nonlocal seen
        logits = step(tokens[:, seen:])  # (B, n, V)
        seen = tokens.shape[1]
        return logits[:, -1]  # (B, V)

    return next_logits
