"""``triad check``: every component, each implementation against the float64 reference.

Each entry of ``COMPONENT_CHECKS`` is a function that builds its own fixed case and
returns one ``ComponentResult`` per (implementation, dtype). Add a component by writing
``triad/checks/<component>.py`` and appending its function here.
"""

from __future__ import annotations

from collections.abc import Callable

from triad.checks.attention import check_attention
from triad.checks.base import ComponentResult

COMPONENT_CHECKS: list[Callable[[], list[ComponentResult]]] = [
    check_attention,
]


def run_checks() -> list[ComponentResult]:
    return [result for check in COMPONENT_CHECKS for result in check()]
