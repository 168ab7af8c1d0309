"""The tasks: each rule holds on every generated example, generation is seeded, bad input is named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from triad.tasks.charlm import (
    EOS,
    PAD,
    WINDOW,
    CharVocab,
    animal_sentences,
    charlm_data,
    context_window,
    left_pad,
)
from triad.tasks.classify import (
    MARKERS,
    TARGET_ACCURACY,
    accuracy,
    classify_data,
    marker_counts,
    r_squared,
)
from triad.tasks.common import IGNORE_INDEX
from triad.tasks.copy import EOS as COPY_EOS
from triad.tasks.copy import SOS, all_pairs, copy_data, copy_target

# ---- copy ----


@given(n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 12))
def test_copy_examples_follow_the_tutorial_rules(n, seed, length):
    data = copy_data(n, seed, length)
    assert data.src.shape == data.tgt.shape == (n, length + 2)
    assert np.all(data.src[:, 0] == SOS) and np.all(data.tgt[:, 0] == SOS)
    assert np.all(data.src[:, -1] == COPY_EOS) and np.all(data.tgt[:, -1] == COPY_EOS)
    for x, y in zip(data.src[:, 1:-1], data.tgt[:, 1:-1], strict=True):
        if np.all(x == x[0]):
            assert np.array_equal(y, x)  # constant bodies are copied
        else:
            assert np.all(x[1:] != x[:-1])  # otherwise strictly alternating ...
            assert y[0] == 1 - x[-1] and np.all(y[1:] != y[:-1])  # ... and y continues the alternation


def test_copy_alternating_continuation_on_known_bodies():
    assert copy_target(np.array([1, 0, 1, 0, 1, 0, 1, 0])).tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert copy_target(np.array([1, 0, 1])).tolist() == [0, 1, 0]
    assert copy_target(np.array([0, 0, 0])).tolist() == [0, 0, 0]


def test_copy_data_is_seeded_and_draws_every_pattern():
    a, b, c = copy_data(300, seed=1), copy_data(300, seed=1), copy_data(300, seed=2)
    assert np.array_equal(a.src, b.src) and np.array_equal(a.tgt, b.tgt)
    assert not np.array_equal(a.src, c.src)
    bodies = {tuple(row) for row in a.src[:, 1:-1]}
    assert bodies == {(1,) * 8, (0,) * 8, (1, 0) * 4, (0, 1) * 4}


def test_copy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n: expected an int >= 1, got 0"):
        copy_data(0, seed=0)
    with pytest.raises(
        ValueError,
        match=r"x: expected all ones, all zeros or strictly alternating, got \[1, 1, 0\]",
    ):
        copy_target(np.array([1, 1, 0]))
    with pytest.raises(ValueError, match="x: expected a non-empty 1-D body of 0s and 1s"):
        copy_target(np.array([2, 0]))


# ---- charlm ----


def test_charlm_ships_thirteen_animal_sentences_one_starting_with_elephants():
    sentences = animal_sentences()
    assert len(sentences) == 13
    assert len(set(sentences)) == 13
    assert sum(s.startswith("elephants") for s in sentences) == 1


@pytest.mark.parametrize("window", [3, WINDOW, 60])
def test_charlm_examples_are_every_left_padded_window_and_its_next_token(window):
    data = charlm_data(window=window)
    sentences = animal_sentences()
    assert data.window == window
    assert data.inputs.shape == data.targets.shape == (sum(len(s) for s in sentences), window)
    assert np.all(data.targets[:, :-1] == IGNORE_INDEX)  # only the last position is scored
    row = 0
    for sentence in sentences:
        ids = [*data.vocab.encode(sentence), EOS]
        for j in range(1, len(ids)):
            n_real = min(j, window)
            inputs = data.inputs[row]
            assert np.all(inputs[: window - n_real] == PAD) and np.all(inputs[window - n_real :] != PAD)
            assert data.vocab.decode(inputs) == sentence[j - n_real : j]  # the last characters ...
            assert data.targets[row, -1] == ids[j]  # ... and the token that follows them
            row += 1


def test_charlm_windows_past_the_first_word_have_one_continuation():
    """Why the corpus can be learnt exactly: once a window holds the first word, it decides the next token."""
    data = charlm_data()
    first_word_len = [len(s.split(" ")[0]) for s in animal_sentences() for _ in range(len(s))]
    cut = np.array([j for s in animal_sentences() for j in range(1, len(s) + 1)])  # (N,) prefix lengths
    seen: dict[tuple, int] = {}
    for inputs, target, j, n in zip(data.inputs, data.targets[:, -1], cut, first_word_len, strict=True):
        if j >= n:
            assert seen.setdefault(tuple(inputs), int(target)) == target, data.vocab.decode(inputs)


def test_charlm_context_window_is_what_training_saw():
    data = charlm_data()
    ids = np.array([data.vocab.encode("elephants")])  # (1, 9)
    window = context_window(ids, data.window)  # (1, W)
    matches = np.all(data.inputs == window, axis=1)
    assert matches.sum() == 1  # the prompt is exactly one training input
    assert data.vocab.decode([data.targets[matches][0, -1]]) == " "
    assert context_window(np.array([[5, 6, 7]]), 2).tolist() == [[6, 7]]  # longer: its last ids
    assert context_window(np.array([[5], [6]]), 3).tolist() == [[PAD, PAD, 5], [PAD, PAD, 6]]


def test_char_vocab_encodes_decodes_and_serialises():
    vocab = CharVocab.from_texts(["cab", "bad"])
    assert vocab.chars == "abcd" and vocab.size == 6
    assert vocab.encode("dab") == [5, 2, 3]
    assert vocab.decode([PAD, 5, 2, 3, EOS, 4]) == "dab"  # pads skipped, stops at EOS
    assert CharVocab.from_dict(vocab.to_dict()) == vocab


def test_charlm_rejects_bad_input():
    vocab = CharVocab.from_texts(["cab"])
    with pytest.raises(ValueError, match=r"text: characters \['z'\] are not in the vocabulary 'abc'"):
        vocab.encode("az")
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 5\), got 7"):
        vocab.decode([7])
    with pytest.raises(ValueError, match="chars: expected each character once"):
        CharVocab(chars="aa")
    with pytest.raises(ValueError, match=r"length: expected at least the longest sequence \(3\), got 2"):
        left_pad([[1, 2, 3]], length=2)
    with pytest.raises(ValueError, match="vocab: expected"):
        CharVocab.from_dict({"chars": "ab", "pad": 1, "eos": 0})
    with pytest.raises(ValueError, match="window: expected an int >= 1, got 0"):
        context_window(np.array([[1]]), 0)
    with pytest.raises(ValueError, match=r"tokens: expected token ids of shape \(B, t\), got shape \(1,\)"):
        context_window(np.array([1]), 2)


# ---- classify ----


@given(
    n=st.integers(1, 60), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 16), vocab=st.integers(4, 10)
)
def test_classify_labels_and_values_follow_the_rule(n, seed, length, vocab):
    data = classify_data(n, seed, length, vocab)
    assert data.tokens.shape == (n, length)
    assert data.tokens.min() >= 1 and data.tokens.max() < vocab
    counts = marker_counts(data.tokens)  # (N, 3)
    top = counts.max(axis=-1)
    assert np.all((counts == top[:, None]).sum(axis=-1) == 1)  # no ties
    assert np.array_equal(counts[np.arange(n), data.labels], top)
    assert np.array_equal(data.values, (data.tokens == MARKERS[0]).sum(axis=-1) / length)


def test_classify_is_seeded_balanced_and_its_target_beats_the_trivial_guess():
    a, b = classify_data(3000, seed=5), classify_data(3000, seed=5)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.labels, b.labels)
    shares = np.bincount(a.labels, minlength=3) / 3000
    assert np.all(np.abs(shares - 1 / 3) < 0.05)
    best_constant = max(accuracy(np.full(3000, c), a.labels) for c in range(3))
    assert best_constant < 0.4 < TARGET_ACCURACY
    assert r_squared(np.full(3000, a.values.mean()), a.values) == pytest.approx(0.0, abs=1e-12)
    assert r_squared(a.values, a.values) == 1.0


def test_classify_rejects_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size: expected an int > 3"):
        classify_data(4, seed=0, vocab_size=3)
    with pytest.raises(ValueError, match="length: expected an int >= 1, got 0"):
        classify_data(4, seed=0, length=0)
    with pytest.raises(ValueError, match="values: R\\^2 is undefined"):
        r_squared(np.zeros(3), np.ones(3))


@pytest.mark.parametrize("length", [1, 2, 7, 8])
def test_all_pairs_are_every_distinct_example_once(length: int) -> None:
    pairs = all_pairs(length)
    drawn = copy_data(400, seed=3, length=length)
    distinct = {(tuple(s), tuple(t)) for s, t in zip(drawn.src, drawn.tgt, strict=True)}
    listed = [(tuple(s), tuple(t)) for s, t in zip(pairs.src, pairs.tgt, strict=True)]
    assert len(listed) == len(set(listed)) and set(listed) == distinct
