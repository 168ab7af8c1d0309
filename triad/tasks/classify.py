r"""``classify``: generated sequences for the encoder-only head, as classification and as regression.

Each sequence has ``length`` tokens drawn uniformly from ``1 .. vocab_size - 1`` (id 0 is kept
free as a pad id; all sequences have the same length, so none is padded). Tokens 1, 2 and 3 are
the *markers*.

- **classification** (3 classes): the label is the marker that occurs most often,
  :math:`c = \arg\max_{m \in \{1,2,3\}} \#\{i : x_i = m\}`, minus 1. Sequences where two markers
  tie for the most are redrawn, so every label is unambiguous. The classes are close to
  balanced (the rule is symmetric in the markers), so always guessing one class scores
  about 1/3; a counting rule (what mean pooling plus a linear layer can represent) scores
  100%. **Target: ``TARGET_ACCURACY`` = 90%** on a held-out set (another seed).
- **regression**: the target is the fraction of positions holding marker 1,
  :math:`y = \#\{i : x_i = 1\} / L`, a float in [0, 1], again linear in the mean-pooled
  one-hot tokens. **Target: ``TARGET_R2`` = 0.9**, the coefficient of determination
  :math:`R^2 = 1 - \sum (y - \hat y)^2 / \sum (y - \bar y)^2` on a held-out set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triad.tasks.common import check_positive_int

MARKERS = (1, 2, 3)
N_CLASSES = len(MARKERS)
TARGET_ACCURACY = 0.9
TARGET_R2 = 0.9


@dataclass(frozen=True)
class ClassifyData:
    tokens: np.ndarray  # (N, L) int64 in [1, vocab_size)
    labels: np.ndarray  # (N,) int64 in [0, 3): the most frequent marker minus 1
    values: np.ndarray  # (N,) float64 in [0, 1]: the fraction of positions holding marker 1


def marker_counts(tokens: np.ndarray) -> np.ndarray:
    """(N, L) -> (N, 3): how often each marker occurs in each sequence."""
    return np.stack([(tokens == m).sum(axis=-1) for m in MARKERS], axis=-1)  # (N, 3)


def classify_data(n: int, seed: int, length: int = 12, vocab_size: int = 8) -> ClassifyData:
    """n sequences drawn with np.random.default_rng(seed); the same arguments give the same arrays."""
    check_positive_int("n", n)
    check_positive_int("length", length)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= max(MARKERS):
        raise ValueError(
            f"vocab_size: expected an int > {max(MARKERS)} (pad 0 and markers 1..3), got {vocab_size!r}"
        )
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    n_kept = 0
    while n_kept < n:
        draw = rng.integers(1, vocab_size, size=(n, length))  # (n, L)
        counts = marker_counts(draw)  # (n, 3)
        top = counts.max(axis=-1, keepdims=True)  # (n, 1)
        unique_max = (counts == top).sum(axis=-1) == 1  # (n,) no tie for the most frequent marker
        kept.append(draw[unique_max])
        n_kept += int(unique_max.sum())
    tokens = np.concatenate(kept)[:n]  # (N, L)
    labels = np.argmax(marker_counts(tokens), axis=-1).astype(np.int64)  # (N,)
    values = (tokens == MARKERS[0]).mean(axis=-1)  # (N,)
    return ClassifyData(tokens=tokens, labels=labels, values=values)


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def r_squared(predicted: np.ndarray, values: np.ndarray) -> float:
    """1 - SS_res / SS_tot; 1 is perfect, 0 is no better than predicting the mean."""
    values = np.asarray(values, dtype=np.float64)
    ss_tot = float(np.sum((values - values.mean()) ** 2))
    if ss_tot == 0.0:
        raise ValueError("values: R^2 is undefined when all targets are equal")
    return 1.0 - float(np.sum((np.asarray(predicted) - values) ** 2)) / ss_tot
