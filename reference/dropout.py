r"""Inverted dropout, forward and backward.

.. math::  y = x \circ Z / (1 - p), \qquad dx = dy \circ Z / (1 - p)

where :math:`Z` is the boolean keep-mask (each element kept with probability :math:`1 - p`).
Dividing by :math:`1 - p` at training time keeps :math:`\mathbb E[y] = x`, so evaluation is the
identity. To compare runs, the keep-mask is either given (``keep``) or drawn from a seeded
``rng``; ``p == 0`` is the identity and takes no mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.validate import check_real, fmt_shape


def check_keep(keep: Any, x_shape: tuple[int, ...], p: float) -> None:
    """keep: a boolean array of x's shape, and only when p > 0 (same message in every implementation)."""
    check_real("p", p, 0.0, 1.0, open_high=True, what="a probability")
    if keep is None:
        return
    if p == 0.0:
        raise ValueError("keep: given, but p is 0 (dropout is then the identity)")
    if str(keep.dtype) not in ("bool", "torch.bool"):
        raise TypeError(f"keep: expected a boolean keep-mask, got dtype {keep.dtype}")
    if tuple(keep.shape) != tuple(x_shape):
        raise ValueError(f"keep: expected the shape of x {fmt_shape(x_shape)}, got {fmt_shape(keep.shape)}")


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
