"""Dropout, native: ``torch.nn.Dropout`` (inverted dropout, identity in eval mode). It draws its own mask and
takes none, so the tests compare it with the others at p = 0 and check its statistics otherwise. ``p`` is
checked as in the reference: a probability in [0, 1) (``nn.Dropout`` also takes 1, which zeroes everything
where the reference divides by 1 - p = 0)."""

from __future__ import annotations

from torch import nn

from reference.validate import check_keep


class Dropout(nn.Dropout):
    """x (...) -> ``nn.Dropout(p)`` (...), with p in [0, 1)."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        check_keep(None, (), p)
        super().__init__(p, inplace)
