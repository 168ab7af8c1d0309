"""The pytest plugin: ``triad verify`` inside a kernel author's own test suite.

Installed with the package (the ``pytest11`` entry point), so nothing needs registering::

    def test_my_kernel(triad_verify):
        triad_verify("my_pkg.attn:fwd", dtype="bfloat16")

``triad_verify(kernel, **options)`` runs ``triad.verify.verify_attention(kernel, **options)`` and returns its
report when the kernel is verified; otherwise the test fails with the report's summary (the minimal failing
case the search shrank to) and the path of a script that reproduces it, written into the test's ``tmp_path``.

Defaults for every call in one test come from a marker, ``@pytest.mark.triad(device="cuda", max_examples=50)``;
the command line sets the search's budget and seed for the whole run: ``--triad-max-examples N``,
``--triad-seed S``, and ``--triad-long [LENGTHS]`` adds the long-context cases (``long_lengths``) to every call;
a call whose interface is not ``flash`` gets a report line saying they were not run. Precedence: the call's own
keywords, then the marker, then the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MARKER = "triad"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("triad", "triad verify: attention kernels against the float64 reference")
    group.addoption("--triad-max-examples", type=int, default=None, metavar="N",
                    help="cases each triad_verify call searches (default: triad verify's own, 200)")
    group.addoption("--triad-seed", type=int, default=None, metavar="S",
                    help="seed of the search; the same seed draws the same cases (default 0)")
    group.addoption("--triad-long", nargs="?", const="", default=None, metavar="LENGTHS",
                    help="also run the long-context cases of flash-interface kernels (triad verify --long), at "
                         "LENGTHS if given ('8192,32768'), else at 8192, 16384 and 32768; minutes per call")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(**options): default triad_verify options for this test "
                                       "(device, dtype, max_examples, seed, supports, ...)")


def _command_line_options(config: pytest.Config) -> dict[str, Any]:
    options: dict[str, Any] = {"max_examples": config.getoption("--triad-max-examples"),
                               "seed": config.getoption("--triad-seed")}
    long = config.getoption("--triad-long")
    if long is not None:
        from triad.verify.cli import parse_long_lengths  # imported here: the plugin loads with every pytest run

        try:
            options["long_lengths"] = parse_long_lengths(long or None)
        except ValueError as exc:
            raise pytest.UsageError(str(exc).replace("--long-lengths", "--triad-long")) from exc
    return {name: value for name, value in options.items() if value is not None}


def _failure_message(report: Any, repro: Path | None) -> str:
    """The report's summary, then where the reproducing script is and how to run it."""
    text = report.summary()
    if repro is not None:
        text += f"\nreproduce it with: python {repro}"
    return text


@pytest.fixture
def triad_verify(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """A function ``(kernel, **options) -> Report`` that fails the test unless the kernel is verified."""
    marker = request.node.get_closest_marker(MARKER)
    defaults = {**_command_line_options(request.config), **(marker.kwargs if marker is not None else {})}

    def verify(kernel: Any, **options: Any) -> Any:
        from triad.verify import verify_attention  # imported here: the plugin loads with every pytest run

        report = verify_attention(kernel, **{**defaults, **options})
        if report.passed:
            return report
        repro = None
        if report.repro_script:
            repro = tmp_path / f"triad_repro_seed{report.seed}.py"
            report.write_repro(repro)
        pytest.fail(_failure_message(report, repro), pytrace=False)

    return verify
