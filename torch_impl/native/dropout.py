"""Dropout, native: ``torch.nn.Dropout`` itself (inverted dropout, identity in eval mode). It draws its own
mask and takes none, so the tests compare it with the others at p = 0 and check its statistics otherwise."""

from torch.nn import Dropout

__all__ = ["Dropout"]
