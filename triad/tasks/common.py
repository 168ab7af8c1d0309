"""What the task generators share: the argument check and the ``ignore_index`` of the losses."""

from __future__ import annotations

IGNORE_INDEX = -100  # targets the loss skips, as torch's cross_entropy (and reference.losses) default to


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
