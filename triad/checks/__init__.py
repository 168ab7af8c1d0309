"""``triad check``: every component, each implementation against the float64 reference.

Each entry of ``COMPONENT_CHECKS`` is a function that builds its own fixed case and
returns one ``ComponentResult`` per (implementation, dtype). Add a component by writing
``triad/checks/<component>.py`` and appending its function here.
"""

from __future__ import annotations

from collections.abc import Callable

from triad.checks.attention import check_attention
from triad.checks.base import ComponentResult
from triad.checks.blocks import check_decoder, check_decoder_layer, check_encoder, check_encoder_layer, check_mha
from triad.checks.components import check_components
from triad.checks.models import check_decoder_lm, check_encoder_classifier, check_encoder_decoder

COMPONENT_CHECKS: list[Callable[[], list[ComponentResult]]] = [
    check_attention,
    check_components,
    check_mha,
    check_encoder_layer,
    check_decoder_layer,
    check_encoder,
    check_decoder,
    check_encoder_decoder,
    check_encoder_classifier,
    check_decoder_lm,
]


def run_checks() -> list[ComponentResult]:
    return [result for check in COMPONENT_CHECKS for result in check()]
