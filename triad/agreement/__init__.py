"""``triad check``: every component, each implementation against the float64 reference.

Each entry of ``COMPONENT_CHECKS`` is a function that builds its own fixed case and
returns one ``ComponentResult`` per (implementation, dtype). Add a component by writing
``triad/agreement/<component>.py`` and appending its function here.
"""

from __future__ import annotations

from collections.abc import Callable

from triad.agreement.attention import check_attention
from triad.agreement.attention_family import check_attention_family
from triad.agreement.base import ComponentResult
from triad.agreement.blocks import check_decoder, check_decoder_layer, check_encoder, check_encoder_layer, check_mha
from triad.agreement.components import check_components
from triad.agreement.models import check_decoder_lm, check_encoder_classifier, check_encoder_decoder

COMPONENT_CHECKS: list[Callable[[], list[ComponentResult]]] = [
    check_attention,
    check_attention_family,
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
