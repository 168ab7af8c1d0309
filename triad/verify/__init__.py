"""``triad verify``: property-based verification of an attention kernel against the float64 reference.

    from triad.verify import verify_attention, assert_attention_matches_reference, KernelSupport

    report = verify_attention("mypkg.attn:flash_forward", dtype="float16", device="cuda")
    assert_attention_matches_reference(my_kernel, max_examples=50)  # in a pytest test

See ``docs/verify.md`` for the tolerance rule, what is searched and how to read a report.
"""

from triad.verify.api import assert_attention_matches_reference, check_one_case, verify_attention
from triad.verify.report import Report
from triad.verify.support import KernelSupport

__all__ = ["KernelSupport", "Report", "assert_attention_matches_reference", "check_one_case", "verify_attention"]
