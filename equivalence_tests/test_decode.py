"""Decoding: greedy picks the argmax, temperature sampling draws softmax(logits / T) with a seeded generator,
generation appends tokens until max_tokens or every row's EOS, and incremental decoding with a key/value
cache gives the logits of full recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference import models as ref
from reference.config import TransformerConfig
from reference.decoding import (
    cached_next_logits,
    decoder_lm_cache,
    decoder_lm_step,
    encoder_decoder_cache,
    encoder_decoder_step,
    generate,
    next_token,
)
from reference.masks import causal_mask, padding_mask
from torch_impl.convert import load_native, load_scratch
from torch_impl.registry import TORCH_MODELS
from triad.decode import TorchKVDecoder
from triad.tolerance import F64_REL_BOUND, max_rel_err


@given(seed=st.integers(0, 2**16), B=st.integers(1, 4), V=st.integers(1, 9))
def test_greedy_picks_the_argmax(seed, B, V):
    logits = np.random.default_rng(seed).standard_normal((B, V))
    assert np.array_equal(next_token(logits), np.argmax(logits, axis=-1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_sampling_draws_softmax_of_logits_over_temperature(temperature):
    logits = np.array([[2.0, 1.0, 0.0, -1.0, -np.inf]])  # the last token can never be drawn
    n = 20_000
    rng = np.random.default_rng(0)
    batch = np.repeat(logits, 1000, axis=0)  # (1000, 5)
    draws = np.concatenate([next_token(batch, temperature, rng) for _ in range(n // 1000)])
    scaled = np.exp((logits[0] - 2.0) / temperature)
    expected = scaled / scaled.sum()
    freq = np.bincount(draws, minlength=5) / n
    # 4 standard deviations of a binomial frequency: a wrong temperature (l * T, or none) is off by > 0.05
    assert np.all(np.abs(freq - expected) <= 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12)
    assert freq[4] == 0.0


def test_sampling_is_reproducible_with_a_seed_and_tends_to_greedy_at_low_temperature():
    logits = np.random.default_rng(1).standard_normal((8, 11))
    a = next_token(logits, 1.0, np.random.default_rng(7))
    b = next_token(logits, 1.0, np.random.default_rng(7))
    assert np.array_equal(a, b)
    assert np.array_equal(next_token(logits, 1e-3, np.random.default_rng(7)), np.argmax(logits, axis=-1))


def test_generate_appends_tokens_and_stops_rows_at_eos():
    V, eos = 5, 4

    def count_up(tokens: np.ndarray) -> np.ndarray:  # next token: last + 1, capped at eos
        logits = np.zeros((tokens.shape[0], V))
        logits[np.arange(tokens.shape[0]), np.minimum(tokens[:, -1] + 1, eos)] = 1.0
        return logits

    out = generate(count_up, np.array([[0], [2]]), max_tokens=10, eos_id=eos)
    assert out.tolist() == [[0, 1, 2, 3, 4], [2, 3, 4, 4, 4]]  # row 2 keeps emitting EOS; stops when all have
    assert generate(count_up, np.array([[0]]), max_tokens=2).tolist() == [[0, 1, 2]]
    assert generate(count_up, np.array([[0]]), max_tokens=0).tolist() == [[0]]


def test_decoding_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temperature: expected a finite float >= 0"):
        next_token(np.zeros((1, 3)), -1.0)
    with pytest.raises(TypeError, match=r"rng: expected a numpy Generator to sample at temperature 0\.5"):
        next_token(np.zeros((1, 3)), 0.5)
    with pytest.raises(
        ValueError,
        match=r"logits: expected floating \(B, V\) with V >= 1, got float64 \(3,\)",
    ):
        next_token(np.zeros(3))
    with pytest.raises(ValueError, match=r"prompt: expected integer token ids \(B, P\) with P >= 1"):
        generate(lambda t: np.zeros((1, 3)), np.zeros((1, 2)), 1)
    with pytest.raises(ValueError, match="max_tokens: expected an int >= 0, got -1"):
        generate(lambda t: np.zeros((1, 3)), np.zeros((1, 2), dtype=np.int64), -1)


# ---- incremental decoding with a key/value cache (reference) ----


@st.composite
def decoding_cases(draw):
    kind = draw(st.sampled_from(["decoder_lm", "encoder_decoder"]))
    n_heads = draw(st.sampled_from([1, 2]))
    config = TransformerConfig(
        d_model=4 * n_heads, n_heads=n_heads, d_ff=draw(st.integers(3, 10)),
        # at least one encoder layer: the native nn.TransformerEncoder fails with 0 layers (reported)
        n_encoder_layers=draw(st.integers(1, 2)), n_decoder_layers=draw(st.integers(1, 2)), dropout=0.0,
        activation=draw(st.sampled_from(["relu", "gelu", "gelu_tanh"])), norm_first=draw(st.booleans()),
        bias=draw(st.booleans()), final_norm=draw(st.booleans()), tie_weights=draw(st.booleans()),
        src_vocab_size=7, tgt_vocab_size=9, max_len=12,
    )
    B, Lt = draw(st.integers(1, 3)), draw(st.integers(1, 8))
    prefill = draw(st.integers(1, Lt))  # the first step feeds a whole prompt, then one token at a time
    return kind, config, B, Lt, prefill, draw(st.integers(0, 2**16))


def _reference_case(kind, config, B, Lt, seed):
    rng = np.random.default_rng(seed)
    shape_fn = ref.decoder_lm_param_shapes if kind == "decoder_lm" else ref.encoder_decoder_param_shapes
    shapes = shape_fn(config)
    params = ref.init_params(shapes, rng)
    tokens = rng.integers(0, config.tgt_vocab_size, size=(B, Lt))  # (B, Lt)
    src = rng.integers(0, config.src_vocab_size, size=(B, 5))  # (B, Ls)
    src[0, 3:] = 0  # a padded source row: its memory keys are masked
    return params, tokens, src


@given(case=decoding_cases())
def test_kv_cache_logits_equal_full_recomputation_reference(case):
    kind, config, B, Lt, prefill, seed = case
    params, tokens, src = _reference_case(kind, config, B, Lt, seed)
    if kind == "decoder_lm":
        full, _ = ref.decoder_lm_forward(tokens, params, config)  # (B, Lt, V)
        cache = decoder_lm_cache(params, config, B)

        def step(new):
            return decoder_lm_step(new, params, config, cache)
    else:
        keep = padding_mask(src, 0)  # (B, 1, 1, Ls)
        full, _ = ref.encoder_decoder_forward(src, tokens, params, config, src_mask=keep,
                                              tgt_mask=causal_mask(Lt, Lt), memory_mask=keep)  # (B, Lt, V)
        cache = encoder_decoder_cache(src, params, config, src_mask=keep, memory_mask=keep)

        def step(new):
            return encoder_decoder_step(new, params, config, cache)
    parts = [step(tokens[:, :prefill])] + [step(tokens[:, i:i + 1]) for i in range(prefill, Lt)]
    assert max_rel_err(np.concatenate(parts, axis=1), full) <= F64_REL_BOUND
    assert cache.t == Lt


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("impl", ["scratch", "native"])
@given(case=decoding_cases())
def test_kv_cache_logits_equal_full_recomputation_torch(impl, case):
    """Each torch implementation's cached decoding equals its own full forward and the reference's."""
    kind, config, B, Lt, prefill, seed = case
    params, tokens, src = _reference_case(kind, config, B, Lt, seed)
    module = TORCH_MODELS[impl][kind](config).double().eval()
    (load_scratch if impl == "scratch" else load_native)(module, params)
    keep = padding_mask(src, 0)  # (B, 1, 1, Ls)
    with torch.no_grad():
        if kind == "decoder_lm":
            own, _ = module(torch.from_numpy(tokens)), None
            expected, _ = ref.decoder_lm_forward(tokens, params, config)
            decoder = TorchKVDecoder(module, impl)
        else:
            causal = torch.ones(Lt, Lt, dtype=torch.bool).tril()  # (Lt, Lt)
            masks = {"src_mask": torch.from_numpy(keep), "memory_mask": torch.from_numpy(keep)}
            own = module(torch.from_numpy(src), torch.from_numpy(tokens), tgt_mask=causal, **masks)
            expected, _ = ref.encoder_decoder_forward(src, tokens, params, config, src_mask=keep,
                                                      tgt_mask=causal_mask(Lt, Lt), memory_mask=keep)
            decoder = TorchKVDecoder(module, impl, src=torch.from_numpy(src), **masks)
    parts = [decoder.step(tokens[:, :prefill])]
    parts += [decoder.step(tokens[:, i:i + 1]) for i in range(prefill, Lt)]
    cached = np.concatenate(parts, axis=1)  # (B, Lt, V)
    assert max_rel_err(cached, own.numpy()) <= F64_REL_BOUND
    assert max_rel_err(cached, expected) <= F64_REL_BOUND


def test_greedy_generation_with_the_cache_equals_generation_by_recomputation():
    config = TransformerConfig(d_model=8, n_heads=2, d_ff=12, n_decoder_layers=2, dropout=0.0,
                               tgt_vocab_size=9, max_len=16)
    params, tokens, _ = _reference_case("decoder_lm", config, 2, 3, seed=4)

    def recompute(prefix):
        return ref.decoder_lm_forward(prefix, params, config)[0][:, -1]  # (B, V)

    cache = decoder_lm_cache(params, config, 2)
    cached = cached_next_logits(lambda new: decoder_lm_step(new, params, config, cache))
    expected = generate(recompute, tokens, max_tokens=10)
    assert np.array_equal(generate(cached, tokens, max_tokens=10), expected)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    cache = decoder_lm_cache(params, config, 2)
    cached = cached_next_logits(lambda new: decoder_lm_step(new, params, config, cache))
    sampled = generate(cached, tokens, 10, 1.0, rng_a)
    assert np.array_equal(sampled, generate(recompute, tokens, 10, 1.0, rng_b))


def test_kv_cache_refuses_positions_past_max_len():
    config = TransformerConfig(d_model=4, n_heads=1, d_ff=4, n_decoder_layers=1, dropout=0.0,
                               tgt_vocab_size=9, max_len=4)
    params, tokens, _ = _reference_case("decoder_lm", config, 1, 3, seed=0)
    cache = decoder_lm_cache(params, config, 1)
    decoder_lm_step(tokens, params, config, cache)
    with pytest.raises(ValueError, match="tokens: positions up to 4 exceed max_len=4"):
        decoder_lm_step(tokens[:, :2], params, config, cache)
