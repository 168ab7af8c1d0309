"""The flat parameter dictionary: take a block's own entries out of it, and put them back.

Composite blocks read a sub-dictionary with their prefix stripped (an encoder layer sees
``self_attn.q_proj.weight``, not ``layers.0.self_attn.q_proj.weight``) and return their
gradients keyed the same way; the caller prefixes them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from reference.validate import fmt_shape

T = TypeVar("T")


def sub_params(params: Mapping[str, T], prefix: str) -> dict[str, T]:
    """The entries of ``params`` under ``prefix.``, with ``prefix.`` stripped from their keys."""
    start = prefix + "."
    return {key[len(start):]: value for key, value in params.items() if key.startswith(start)}


def prefix_params(grads: Mapping[str, T], prefix: str) -> dict[str, T]:
    """``grads`` with ``prefix.`` put in front of every key (the inverse of ``sub_params``)."""
    return {f"{prefix}.{key}": value for key, value in grads.items()}


def check_param_shapes(params: Mapping[str, object], expected: Mapping[str, tuple[int, ...]], argument: str) -> None:
    """Raise ValueError naming the first missing, extra or mis-shaped key of ``params``.

    ``params`` may hold NumPy arrays or torch tensors (only ``.shape`` is read); ``argument``
    is the name the caller knows the dictionary by, e.g. ``"params"`` or ``"state_dict"``.
    """
    for key, shape in expected.items():
        if key not in params:
            raise ValueError(f"{argument}: missing key {key!r}, expected shape {fmt_shape(shape)}")
        got = tuple(params[key].shape)
        if got != tuple(shape):
            raise ValueError(f"{argument}[{key!r}]: expected shape {fmt_shape(shape)}, got {fmt_shape(got)}")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise ValueError(
            f"{argument}: unexpected key {extra[0]!r} (all extra keys: {extra}); expected {sorted(expected)}"
        )
