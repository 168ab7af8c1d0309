r"""Inverted dropout, forward and backward.

.. math::  y = x \circ Z / (1 - p), \qquad dx = dy \circ Z / (1 - p)

where :math:`Z` is the boolean keep-mask (each element kept with probability :math:`1 - p`).
Dividing by :math:`1 - p` at training time keeps :math:`\mathbb E[y] = x`, so evaluation is the
identity. To compare runs, the keep-mask is either given (``keep``) or drawn from a seeded
``rng``; ``p == 0`` is the identity and takes no mask.
"""

from __future__ import annotations

import numpy as np

from reference.validate import check_keep


def dropout_forward(
    x: np.ndarray, p: float, keep: np.ndarray | None = None, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """x (...) -> y (...); returns (y, cache) with cache the scale Z / (1 - p), or None when p == 0."""
    check_keep(keep, x.shape, p)
    if p == 0.0:
        return x, None
    if keep is None:
        if rng is None:
            raise ValueError("keep: p > 0 needs an explicit keep-mask or a seeded rng")
        keep = rng.random(x.shape) >= p  # (...)
    scale = (keep / (1.0 - p)).astype(x.dtype)  # (...)
    return x * scale, scale


def dropout_backward(dy: np.ndarray, cache: np.ndarray | None) -> np.ndarray:
    """dy (...) -> dx (...) = dy * Z / (1 - p)."""
    return dy if cache is None else dy * cache
