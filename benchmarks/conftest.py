"""pytest-benchmark suite for the attention core: ``pytest benchmarks`` (not collected by a plain ``pytest``).

It runs the cases of a ``triad bench`` preset (``--bench-preset quick``, the default, or ``full``,
which adds head dim 128 and, with a GPU, the CUDA grid) for every built-in kernel, or for the kernels
named with ``--bench-kernel`` (repeatable; a built-in name or ``package.module:function``).
Save and compare runs with pytest-benchmark's own flags, e.g.::

    pytest benchmarks --benchmark-save=cpu
    pytest benchmarks --benchmark-compare --benchmark-compare-fail=median:10%

float32 means float32: TF32 is switched off, as in the tests and in ``triad bench``.

``--bench-budget SECONDS`` bounds the session like ``triad bench``'s device budgets: a test that would
start after that many seconds is skipped with the reason (``--bench-preset full`` is about 2,350 tests
on a GPU machine).
"""

from __future__ import annotations

import time

import pytest
import torch

from triad.bench.grid import PRESETS, Case, preset

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("triad", "triad attention benchmarks")
    group.addoption("--bench-preset", choices=PRESETS, default="quick",
                    help="which triad bench grid to run (default: quick)")
    group.addoption("--bench-budget", type=float, default=None, metavar="SECONDS",
                    help="skip the tests that would start after this many seconds of the session (default: none)")
    group.addoption("--bench-kernel", action="append", default=None, metavar="KERNEL",
                    help="a kernel to run (built-in name or package.module:function); repeatable; default: all")


def _case_id(case: Case) -> str:
    return (f"{case.kernel}-{case.device}-{case.dtype}-{case.shape.label()}-"
            f"{'causal' if case.causal else 'full'}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    kernels = metafunc.config.getoption("--bench-kernel")
    grid = preset(metafunc.config.getoption("--bench-preset"), tuple(kernels) if kernels else None,
                  cuda=torch.cuda.is_available())
    # case first, so that pytest runs a case's modes one after the other, on the inputs checked once for them all
    metafunc.parametrize("case", grid.cases(), ids=_case_id)
    metafunc.parametrize("mode", grid.modes)


_SESSION_START = time.perf_counter()


@pytest.fixture(autouse=True)
def _bench_budget(request: pytest.FixtureRequest) -> None:
    """Skip a test that would start after ``--bench-budget`` seconds of the session."""
    budget = request.config.getoption("--bench-budget")
    if budget is not None and time.perf_counter() - _SESSION_START > budget:
        pytest.skip(f"skipped: the time budget of {budget:g} s (--bench-budget) was spent")
