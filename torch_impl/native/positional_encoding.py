"""Sinusoidal positional encoding, native: torch has no module for it, so native uses the scratch module
(a buffer holding the reference's table, added by the sequence axis) unchanged."""

from torch_impl.scratch.positional_encoding import PositionalEncoding

__all__ = ["PositionalEncoding"]
