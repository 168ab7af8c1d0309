"""Hypothesis profiles, the ``gpu`` marker and the ``slow`` marker (skipped unless ``--run-slow``).

Profiles (``HYPOTHESIS_PROFILE=dev|ci|thorough``, default ``dev``):

- ``dev``: the default number of examples, a local example database, a deadline off
  (first calls into torch are slow, and time is not what we test).
- ``ci``: derandomized (the same examples on every run), no example database, no deadline,
  failure blobs printed so any failure can be replayed with ``@reproduce_failure``.
- ``thorough``: many examples, for a long run before a release.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Our Triton kernel on a machine without CUDA runs under Triton's interpreter, which Triton reads when a
# kernel is defined: set it here, before any test imports torch_impl.triton_attention. It changes nothing
# else: torch's CPU paths (eager, inductor's C++ backend, FlexAttention on CPU) do not go through Triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_SLOW_DRAWS = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=_SLOW_DRAWS)
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_DRAWS,
)
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=_SLOW_DRAWS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Full float32 precision on GPU: TF32 would cost ~1e-3 relative and hide real bugs.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow: seed sweeps, default-budget verify runs, subprocess and "
                          "browser runs (CI runs them after the rest, with -m slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow (CI does)")
    skip_gpu = pytest.mark.skip(reason="needs CUDA; none is present")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
