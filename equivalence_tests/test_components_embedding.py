"""Token embedding and sinusoidal positional encoding: the three implementations agree in float64 (output,
input gradient, the embedding table's gradient), the reference backward matches finite differences, repeated
tokens accumulate, the sqrt(d_model) scale is applied exactly once, the PE table matches a hand-computed one
(even and odd d_model), PE is added along the sequence axis, and bad input is refused by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.component_helpers import assert_agree, assert_matches_finite_differences
from reference.embedding import embedding_backward, embedding_forward
from reference.positional_encoding import positional_encoding_backward, positional_encoding_forward, sinusoidal_table
from torch_impl.native.embedding import Embedding as NativeEmbedding
from torch_impl.native.positional_encoding import PositionalEncoding as NativePositionalEncoding
from torch_impl.scratch.embedding import Embedding
from torch_impl.scratch.positional_encoding import PositionalEncoding
from triad.harness.blocks import run_torch_block

seeds = st.integers(0, 2**32 - 1)


def _embedding_case(B: int, L: int, V: int, D: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, L)), rng.standard_normal((V, D)), rng.standard_normal((B, L, D))


@given(B=st.integers(1, 3), L=st.integers(1, 6), V=st.integers(1, 5), D=st.integers(1, 7),
       scaled=st.booleans(), seed=seeds)
def test_embedding_output_and_grads_agree_across_implementations(B, L, V, D, scaled, seed) -> None:
    # V <= 5 with up to 18 tokens: most cases repeat a token, the scatter-add case.
    tokens, weight, dy = _embedding_case(B, L, V, D, seed)
    scale = math.sqrt(D) if scaled else 1.0
    y, cache = embedding_forward(tokens, weight, scale)
    expected = {"out": y, "weight": embedding_backward(dy, cache)}
    tokens_t = torch.tensor(tokens)
    for label, module in (("scratch", Embedding(V, D, scale)), ("native", NativeEmbedding(V, D, scale))):
        actual = run_torch_block(module, {"weight": weight}, {}, dy, lambda t, m=module: m(tokens_t))
        assert_agree(actual, expected, label)


@given(B=st.integers(1, 2), L=st.integers(1, 4), V=st.integers(1, 4), D=st.integers(1, 3), seed=seeds)
def test_embedding_backward_matches_finite_differences(B, L, V, D, seed) -> None:
    tokens, weight, dy = _embedding_case(B, L, V, D, seed)
    analytic = {"weight": embedding_backward(dy, embedding_forward(tokens, weight, 1.7)[1])}
    assert_matches_finite_differences(lambda: embedding_forward(tokens, weight, 1.7)[0], {"weight": weight}, dy,
                                      analytic)


def test_embedding_gradient_accumulates_repeated_tokens() -> None:
    """Token 2 three times and token 0 once: row 2 collects the sum of its three upstream gradients
    (an assignment ``dW[tokens] = dy`` would keep only the last one), rows 1 and 3 stay zero."""
    tokens = np.array([[2, 0, 2, 2]])
    dy = np.arange(1.0, 9.0).reshape(1, 4, 2)  # rows [1, 2], [3, 4], [5, 6], [7, 8]
    want = np.array([[3.0, 4.0], [0.0, 0.0], [1.0 + 5.0 + 7.0, 2.0 + 6.0 + 8.0], [0.0, 0.0]])
    weight = np.zeros((4, 2))
    np.testing.assert_array_equal(embedding_backward(dy, embedding_forward(tokens, weight)[1]), want)
    for module in (Embedding(4, 2), NativeEmbedding(4, 2)):
        actual = run_torch_block(module, {"weight": weight}, {}, dy, lambda t, m=module: m(torch.tensor(tokens)))
        np.testing.assert_array_equal(actual["weight"], want)


def test_embedding_scale_is_applied_exactly_once() -> None:
    """With scale = sqrt(D) every output row is sqrt(D) times its table row: not 1x (forgotten), not D x
    (applied twice)."""
    D = 9
    weight = np.random.default_rng(0).standard_normal((5, D))
    tokens = np.array([[4, 1, 3]])
    want = 3.0 * weight[[4, 1, 3]][None]  # sqrt(9) = 3
    np.testing.assert_allclose(embedding_forward(tokens, weight, math.sqrt(D))[0], want, rtol=1e-15)
    for module in (Embedding(5, D, math.sqrt(D)), NativeEmbedding(5, D, math.sqrt(D))):
        module.double().load_state_dict({"weight": torch.tensor(weight)})
        np.testing.assert_allclose(module(torch.tensor(tokens)).detach().numpy(), want, rtol=1e-15)


def test_sinusoidal_table_matches_hand_computed_values() -> None:
    """Pair index i, both sin and cos at p / 10000^(2i/d). d = 4: frequencies 1, 1/100. d = 5 (odd): frequencies
    1, 10000^-0.4, 10000^-0.8 and a last sine without its cosine. Catches the doubled exponent (4i/d) and the
    shifted cosine exponent (2(i+1)/d) of popular tutorials."""
    want_4 = [[math.sin(p), math.cos(p), math.sin(p / 100.0), math.cos(p / 100.0)] for p in range(3)]
    np.testing.assert_allclose(sinusoidal_table(3, 4), np.array(want_4), rtol=1e-14, atol=1e-16)
    want_5 = [[math.sin(p), math.cos(p), math.sin(p / 10000.0**0.4), math.cos(p / 10000.0**0.4),
               math.sin(p / 10000.0**0.8)] for p in range(4)]
    np.testing.assert_allclose(sinusoidal_table(4, 5), np.array(want_5), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(sinusoidal_table(2, 1), np.array([[0.0], [math.sin(1.0)]]), rtol=1e-15)


@pytest.mark.parametrize("module_class", [PositionalEncoding, NativePositionalEncoding])
def test_positional_encoding_is_added_along_the_sequence_axis(module_class) -> None:
    """B = 3, L = 5: every batch element gets PE rows 0..4 (slicing by x.shape[0] would add rows 0..2)."""
    B, L, D = 3, 5, 6
    x = np.random.default_rng(1).standard_normal((B, L, D))
    table = sinusoidal_table(7, D)
    for y in (positional_encoding_forward(x, table)[0],
              module_class(D, 7).double()(torch.tensor(x)).numpy()):
        for b in range(B):
            np.testing.assert_allclose(y[b] - x[b], table[:L], rtol=0, atol=1e-15)


@given(B=st.integers(1, 3), L=st.integers(1, 6), D=st.integers(1, 7), extra=st.integers(0, 3), seed=seeds)
def test_positional_encoding_output_and_grads_agree_across_implementations(B, L, D, extra, seed) -> None:
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((B, L, D)), rng.standard_normal((B, L, D))
    table = sinusoidal_table(L + extra, D)
    y, cache = positional_encoding_forward(x, table)
    expected = {"out": y, "dx": positional_encoding_backward(dy, cache)}
    for label, module in (("scratch", PositionalEncoding(D, L + extra)),
                          ("native", NativePositionalEncoding(D, L + extra))):
        assert module.state_dict() == {}  # a non-persistent buffer: nothing to save or load
        actual = run_torch_block(module, {}, {"x": x}, dy, lambda t, m=module: m(t["x"]))
        assert_agree(actual, expected, label)


@given(L=st.integers(1, 4), D=st.integers(1, 4), seed=seeds)
def test_positional_encoding_backward_matches_finite_differences(L, D, seed) -> None:
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((2, L, D)), rng.standard_normal((2, L, D))
    table = sinusoidal_table(L, D)
    analytic = {"x": positional_encoding_backward(dy, positional_encoding_forward(x, table)[1])}
    assert_matches_finite_differences(lambda: positional_encoding_forward(x, table)[0], {"x": x}, dy, analytic)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: embedding_forward(np.array([[0, 5]]), np.ones((5, 2))), ValueError,
         r"tokens: expected ids in \[0, 5\) for a vocabulary of V=5, got ids from 0 to 5"),
        (lambda: embedding_forward(np.array([[-1, 2]]), np.ones((5, 2))), ValueError,
         r"tokens: expected ids in \[0, 5\) .* got ids from -1 to 2"),
        (lambda: embedding_forward(np.array([[0.0, 1.0]]), np.ones((5, 2))), TypeError,
         r"tokens: expected an integer dtype, got float64"),
        (lambda: embedding_forward(np.array([0, 1]), np.ones((5, 2))), ValueError,
         r"tokens: expected \(B, L\), got \(2,\)"),
        (lambda: embedding_forward(np.array([[0, 1]]), np.ones(5)), ValueError,
         r"weight: expected \(V, D\), got \(5,\)"),
        (lambda: Embedding(5, 2)(torch.tensor([[0, 7]])), ValueError, r"tokens: expected ids in \[0, 5\)"),
        (lambda: embedding_forward(np.zeros((2, 0), int), np.ones((5, 2))), ValueError,
         r"tokens: expected a non-empty \(B, L\), got \(2, 0\)"),
        (lambda: positional_encoding_forward(np.ones((1, 6, 4)), sinusoidal_table(5, 4)), ValueError,
         r"x: sequence length L=6 exceeds the table's max_len=5"),
        (lambda: PositionalEncoding(4, 5)(torch.ones(1, 6, 4)), ValueError,
         r"x: sequence length L=6 exceeds the table's max_len=5"),
        (lambda: positional_encoding_forward(np.ones((1, 2, 3)), sinusoidal_table(5, 4)), ValueError,
         r"x: expected \(B, L, D\) with D=4 like the table, got \(1, 2, 3\)"),
        (lambda: positional_encoding_forward(np.ones((2, 4)), sinusoidal_table(5, 4)), ValueError,
         r"x: expected \(B, L, D\) \(batch first\), got \(2, 4\)"),
        (lambda: sinusoidal_table(0, 4), ValueError, r"max_len: expected a positive int, got 0"),
        (lambda: sinusoidal_table(4, 0), ValueError, r"d_model: expected a positive int, got 0"),
    ],
)
def test_embedding_and_positional_encoding_reject_bad_input_naming_the_argument(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
