r"""``copy``: the toy sequences of the ``nn.Transformer`` seq2seq tutorial, for the encoder-decoder model.

Tokens: ``0`` and ``1`` are the data, ``SOS = 2`` starts and ``EOS = 3`` ends every sequence
(vocabulary size 4; all sequences have the same length, so there is no padding). Each example
draws one of three patterns with equal probability, and a body ``x`` of ``length`` tokens:

- all ones     ``x = 1 1 ... 1``  -> ``y = x``
- all zeros    ``x = 0 0 ... 0``  -> ``y = x``
- alternating  ``x = 1 0 1 0 ...`` or ``0 1 0 1 ...`` (start drawn 0 or 1 with equal probability)
  -> ``y`` **continues** the alternation: :math:`y_0 = 1 - x_{L-1}` and
  :math:`y_i = 1 - y_{i-1}`; e.g. ``x = 1010 1010 -> y = 1010 1010`` but with an odd length
  ``x = 101 -> y = 010``.

``src = [SOS] + x + [EOS]`` and ``tgt = [SOS] + y + [EOS]``, both ``(N, length + 2)``. For a given
length there are exactly four distinct pairs (``all_pairs``), so nothing can be held out: a draw with
another seed only repeats them (the tutorial's "validation" set does). The metric is therefore exact
match of greedy decoding on each of the four pairs once: it says the model learnt the three rules, the
alternating continuation included, not that it generalises beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triad.tasks.common import check_positive_int

ZERO, ONE, SOS, EOS = 0, 1, 2, 3
VOCAB_SIZE = 4
TARGET_EXACT_MATCH = 1.0  # all four pairs decoded exactly: the three rules learnt
PATTERNS = ("ones", "zeros", "alternating")


@dataclass(frozen=True)
class CopyData:
    src: np.ndarray  # (N, length + 2) int64: SOS, x, EOS
    tgt: np.ndarray  # (N, length + 2) int64: SOS, y, EOS


def copy_target(x: np.ndarray) -> np.ndarray:
    """The rule: y = x for a constant body; an alternating body continues alternating from its last token."""
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0 or not np.isin(x, (ZERO, ONE)).all():
        raise ValueError(f"x: expected a non-empty 1-D body of 0s and 1s, got {x!r}")
    if np.all(x == x[0]):
        return x.copy()
    if np.any(x[1:] == x[:-1]):
        raise ValueError(f"x: expected all ones, all zeros or strictly alternating, got {x.tolist()}")
    first = 1 - x[-1]
    return (first + np.arange(x.size)) % 2  # (L,)  first, 1 - first, first, ...


def _pair(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(src, tgt) rows for the body ``x``."""
    return np.concatenate(([SOS], x, [EOS])), np.concatenate(([SOS], copy_target(x), [EOS]))


def all_pairs(length: int = 8) -> CopyData:
    """The four distinct examples of a length, once each: ones, zeros, alternating from 1, alternating from 0."""
    check_positive_int("length", length)
    bodies = [np.ones(length, dtype=np.int64), np.zeros(length, dtype=np.int64)]
    if length > 1:  # a body of one token is constant: there is no alternating pattern to tell apart
        bodies += [(start + np.arange(length)) % 2 for start in (1, 0)]
    src, tgt = zip(*map(_pair, bodies), strict=True)
    return CopyData(src=np.stack(src), tgt=np.stack(tgt))  # (4, L + 2) each


def copy_data(n: int, seed: int, length: int = 8) -> CopyData:
    """n examples drawn with np.random.default_rng(seed); the same (n, seed, length) gives the same arrays."""
    check_positive_int("n", n)
    check_positive_int("length", length)
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, len(PATTERNS), size=n)  # (N,) index into PATTERNS
    starts = rng.integers(0, 2, size=n)  # (N,) first token of an alternating body
    src = np.empty((n, length + 2), dtype=np.int64)  # (N, L + 2)
    tgt = np.empty((n, length + 2), dtype=np.int64)  # (N, L + 2)
    for i, (pattern, start) in enumerate(zip(patterns, starts, strict=True)):
        if PATTERNS[pattern] == "ones":
            x = np.ones(length, dtype=np.int64)
        elif PATTERNS[pattern] == "zeros":
            x = np.zeros(length, dtype=np.int64)
        else:
            x = (start + np.arange(length)) % 2  # (L,)
        src[i], tgt[i] = _pair(x)
    return CopyData(src=src, tgt=tgt)
