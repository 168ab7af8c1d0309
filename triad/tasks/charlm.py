"""``charlm``: a character-level language model on thirteen short sentences about animals.

The corpus ships with the package (``animals.txt``, one sentence a line; one of them starts with
"elephants", the prompt of the generation workflow). Nothing is downloaded.

Vocabulary: id ``0`` is the pad token, id ``1`` the end-of-sentence token (EOS), then every
character of the corpus in sorted order.

**Examples: one per next character, left-padded windows.** A sentence is encoded as
``c = chars + [EOS]``. For every cut ``j = 1 .. len(c) - 1`` there is one example: the last ``W``
tokens of the prefix ``c[:j]``, **left-padded** to the window ``W`` (``WINDOW`` = 16 by default),
whose target is the next token ``c[j]``, scored at the last position only:

    inputs  (N, W)   pad ... pad  e l e p h a n t s      (right-aligned prefix)
    targets (N, W)   IGNORE ... IGNORE                 " "  (only the last column is scored)

Why windows and left padding: the model then always predicts at the last position, from a
right-aligned context at fixed positions, which is exactly what generation does (the prompt and
what has been generated so far, the last ``W`` tokens of it, left-padded to ``W``: ``context_window``).
Training on whole left-padded sentences instead would put a prompt at positions the sentence never
occupied in training. Pads are ordinary tokens here: the decoder-only LM takes no padding mask,
so it sees them and learns that they carry nothing. N = sum over sentences of len(c) - 1.

Why 16: in the shipped corpus every window of 12 or more tokens that holds at least a sentence's
first word is followed by one token only (shorter windows are not: " their b" goes on as "ellies"
and as "acks"), so the corpus can be memorised exactly; 16 leaves a margin. Only a one-letter
prompt is ambiguous ("f" starts "fish" and "frogs").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from triad.tasks.common import IGNORE_INDEX

PAD, EOS = 0, 1
N_SPECIAL = 2
WINDOW = 16
TARGET_REPRODUCED = 0.9  # share of the corpus sentences regenerated exactly from their first word


def animal_sentences() -> list[str]:
    """The thirteen sentences shipped in ``triad/tasks/animals.txt``."""
    text = resources.files("triad.tasks").joinpath("animals.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


@dataclass(frozen=True)
class CharVocab:
    """Character vocabulary: id 0 pad, id 1 EOS, then ``chars`` (each once, in order) from id 2."""

    chars: str

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError(f"chars: expected each character once, got {self.chars!r}")

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> CharVocab:
        return cls(chars="".join(sorted(set("".join(texts)))))

    @property
    def size(self) -> int:
        return N_SPECIAL + len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self.chars))
        if unknown:
            raise ValueError(f"text: characters {unknown} are not in the vocabulary {self.chars!r}")
        return [N_SPECIAL + self.chars.index(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Characters of ``ids``, skipping pads and stopping at the first EOS."""
        out = []
        for i in ids:
            if not 0 <= int(i) < self.size:
                raise ValueError(f"ids: expected ids in [0, {self.size}), got {int(i)}")
            if i == EOS:
                break
            if i != PAD:
                out.append(self.chars[int(i) - N_SPECIAL])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"chars": self.chars, "pad": PAD, "eos": EOS}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CharVocab:
        if values.get("pad") != PAD or values.get("eos") != EOS or not isinstance(values.get("chars"), str):
            raise ValueError(f"vocab: expected {{'chars': str, 'pad': {PAD}, 'eos': {EOS}}}, got {values!r}")
        return cls(chars=values["chars"])


def left_pad(sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """(N, length) int64, each sequence right-aligned after PADs; length defaults to the longest."""
    longest = max((len(s) for s in sequences), default=0)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"length: expected at least the longest sequence ({longest}), got {length}")
    out = np.full((len(sequences), length), PAD, dtype=np.int64)  # (N, L)
    for row, s in zip(out, sequences, strict=True):
        if len(s):
            row[length - len(s):] = s
    return out


def context_window(tokens: np.ndarray, window: int) -> np.ndarray:
    """tokens (B, t) -> (B, window): each row's last ``window`` ids, left-padded; what the model sees when
    it predicts the next id (rows may already start with pads: a pad is a pad wherever it comes from)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens: expected token ids of shape (B, t), got shape {tokens.shape}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected an int >= 1, got {window!r}")
    return left_pad([row[-window:].tolist() for row in tokens], window)  # (B, W)


@dataclass(frozen=True)
class CharLMData:
    vocab: CharVocab
    inputs: np.ndarray  # (N, W) int64: left-padded prefixes
    targets: np.ndarray  # (N, W) int64: IGNORE_INDEX but in the last column, the next token

    @property
    def window(self) -> int:
        return self.inputs.shape[1]


def charlm_data(sentences: Sequence[str] | None = None, window: int = WINDOW) -> CharLMData:
    """Every (window -> next token) example of the corpus, as one batch (deterministic: nothing is drawn)."""
    sentences = animal_sentences() if sentences is None else list(sentences)
    if not sentences:
        raise ValueError("sentences: expected at least one sentence, got none")
    vocab = CharVocab.from_texts(sentences)
    encoded = [[*vocab.encode(s), EOS] for s in sentences]
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected an int >= 1, got {window!r}")
    inputs = left_pad([c[max(0, j - window):j] for c in encoded for j in range(1, len(c))], window)  # (N, W)
    targets = np.full_like(inputs, IGNORE_INDEX)  # (N, W)
    targets[:, -1] = [c[j] for c in encoded for j in range(1, len(c))]  # (N,) the next token
    return CharLMData(vocab=vocab, inputs=inputs, targets=targets)
