"""The flat parameter dictionary: take a block's own entries out of it, and put them back.

Composite blocks read a sub-dictionary with their prefix stripped (an encoder layer sees
``self_attn.q_proj.weight``, not ``layers.0.self_attn.q_proj.weight``) and return their
gradients keyed the same way; the caller prefixes them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def sub_params(params: Mapping[str, T], prefix: str) -> dict[str, T]:
    """The entries of ``params`` under ``prefix.``, with ``prefix.`` stripped from their keys."""
    start = prefix + "."
    return {key[len(start):]: value for key, value in params.items() if key.startswith(start)}


def prefix_params(grads: Mapping[str, T], prefix: str) -> dict[str, T]:
    """``grads`` with ``prefix.`` put in front of every key (the inverse of ``sub_params``)."""
    return {f"{prefix}.{key}": value for key, value in grads.items()}


