"""The mask builders, on cases small enough to check by eye."""

from __future__ import annotations

import numpy as np
import pytest

from reference.masks import causal_mask, padding_mask, to_additive


def test_causal_mask_top_left_is_lower_triangular_from_the_first_key() -> None:
    expected = np.array([[1, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0],
                         [1, 1, 1, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(causal_mask(3, 5, "top_left"), expected)


def test_causal_mask_bottom_right_lets_the_last_query_see_every_key() -> None:
    expected = np.array([[1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0],
                         [1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(causal_mask(3, 5, "bottom_right"), expected)


def test_causal_mask_bottom_right_with_more_queries_than_keys_has_empty_rows() -> None:
    mask = causal_mask(4, 2, "bottom_right")
    np.testing.assert_array_equal(mask.sum(axis=1), [0, 0, 1, 2])


def test_causal_alignments_agree_when_lengths_are_equal() -> None:
    np.testing.assert_array_equal(causal_mask(6, 6, "top_left"), causal_mask(6, 6, "bottom_right"))


def test_padding_mask_keeps_real_tokens_of_a_known_sentence() -> None:
    """The tutorial bug (True at pads, then blocking mask == 0) would keep only the pads."""
    pad = 0
    tokens = np.array([[12, 7, 9, pad, pad]])  # "the cat sat <pad> <pad>"
    keep = padding_mask(tokens, pad)
    assert keep.shape == (1, 1, 1, 5)
    np.testing.assert_array_equal(keep[0, 0, 0], [True, True, True, False, False])


def test_to_additive_uses_minus_infinity_not_minus_1e9() -> None:
    additive = to_additive(np.array([True, False]), np.float32)
    assert additive[0] == 0.0 and additive[1] == -np.inf


@pytest.mark.parametrize(("args", "message"), [
    ((3, 4, "left"), "align: expected 'top_left' or 'bottom_right'"),
    ((-1, 4), "Lq: expected a non-negative int"),
    ((3, 2.5), "Lk: expected a non-negative int"),
])
def test_causal_mask_bad_arguments(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        causal_mask(*args)


def test_padding_mask_bad_tokens() -> None:
    with pytest.raises(ValueError, match=r"tokens: expected integer token ids of shape \(B, L\)"):
        padding_mask(np.zeros(5), 0)
