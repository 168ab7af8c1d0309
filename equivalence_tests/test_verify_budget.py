"""The shrinking budget: bounded on CUDA, and once spent a hypothesis search stops shrinking within it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from triad.verify.budget import CUDA_SHRINK_CALLS, CUDA_SHRINK_SECONDS, ShrinkBudget, shrink_budget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cuda_bounds_shrinking_and_the_cpu_keeps_hypothesis_limits() -> None:
    cuda, cpu = shrink_budget("cuda"), shrink_budget("cpu")
    assert (cuda.seconds, cuda.calls) == (CUDA_SHRINK_SECONDS, CUDA_SHRINK_CALLS)
    assert (cpu.seconds, cpu.calls) == (None, None)
    with pytest.raises(ValueError, match="seconds: expected None or a number >= 0"):
        ShrinkBudget(-1.0, None)


def test_the_budget_counts_from_the_first_failure_in_calls_and_seconds() -> None:
    clock = FakeClock()
    budget = ShrinkBudget(10.0, 3, clock=clock)
    assert not budget.spent() and budget.used_calls == 0  # before any failure nothing is counted
    budget.start()
    clock.now = 5.0
    budget.start()  # a later failure does not restart the clock
    assert [budget.spent() for _ in range(4)] == [False, False, False, True]  # the 4th call is over 3
    timed = ShrinkBudget(10.0, None, clock=clock)
    timed.start()
    clock.now = 15.0
    assert not timed.spent()
    clock.now = 15.1 + 10.0
    assert timed.spent() and timed.stopped and "may not be minimal" in timed.describe()


def test_a_spent_budget_ends_a_hypothesis_shrink_within_its_calls() -> None:
    """Wired as triad.verify.budget says: a search whose every example fails runs its kernel only within it."""
    budget = ShrinkBudget(None, 5)
    kernel_runs = []

    @settings(max_examples=50, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink))
    @given(xs=st.lists(st.integers(0, 1000), min_size=20, max_size=40))
    def always_fails(xs: list[int]) -> None:
        if budget.spent():
            return
        kernel_runs.append(len(xs))
        budget.start()
        raise AssertionError("fails")

    with pytest.raises(Exception):  # noqa: B017  the failure, or hypothesis' complaint that its replay passed
        always_fails()
    assert len(kernel_runs) == 1 + budget.calls  # the first failure, then the budget's calls
    assert budget.stopped and budget.used_calls > budget.calls
    assert min(kernel_runs) < max(kernel_runs)  # it did shrink, within the budget
