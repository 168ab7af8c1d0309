"""How long ``verify_attention`` may shrink a failure: bounded on CUDA, where device time is scarce.

Hypothesis shrinks a failing example for up to 300 s (its own limit) and up to 500 successful
shrinks. On a GPU machine lent for minutes one failing backend could spend all of it, so on CUDA
shrinking stops after ``CUDA_SHRINK_SECONDS`` or ``CUDA_SHRINK_CALLS`` test calls, whichever comes
first, counted from the first failure. The failure found is reported either way; only its
minimisation is cut short, and the report can say so (``ShrinkBudget.stopped``).

Hypothesis has no public setting for the shrink time, so the budget works from inside the test
function: once spent, every further call returns at once without running the kernel (it "passes"),
so no smaller failing example can be found and the shrinker ends after a bounded number of cheap
calls. The wiring, in the search's test function (``triad.verify.api``)::

    budget = shrink_budget(device)
    ...
    def one_example(case):
        if failures and budget.spent():  # counts this call; True once the budget is used up
            return
        outcome = run_case(case)
        if outcome.failed:
            failures.append(outcome)
            budget.start()  # the first failure starts the clock (later calls are no-ops)
            raise AssertionError(...)
"""

from __future__ import annotations

import time
from collections.abc import Callable

CUDA_SHRINK_SECONDS = 30.0
CUDA_SHRINK_CALLS = 100


class ShrinkBudget:
    """Seconds and calls allowed for shrinking, counted from ``start()``; None means unbounded."""

    def __init__(self, seconds: float | None, calls: int | None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        for name, value in (("seconds", seconds), ("calls", calls)):
            if value is not None and not value >= 0:
                raise ValueError(f"{name}: expected None or a number >= 0, got {value!r}")
        self.seconds, self.calls, self._clock = seconds, calls, clock
        self._started: float | None = None
        self.used_calls = 0
        self.stopped = False  # True once a call was refused: the minimal case may not be minimal

    def start(self) -> None:
        """Start the clock at the first failure (later calls change nothing)."""
        if self._started is None:
            self._started = self._clock()

    def elapsed(self) -> float:
        return 0.0 if self._started is None else self._clock() - self._started

    def spent(self) -> bool:
        """Count one shrinking call; True when it is over the budget (the caller then skips the kernel)."""
        if self._started is None:
            return False
        self.used_calls += 1
        over = ((self.calls is not None and self.used_calls > self.calls)
                or (self.seconds is not None and self.elapsed() > self.seconds))
        self.stopped = self.stopped or over
        return over

    def describe(self) -> str:
        limits = [f"{self.seconds:g} s" if self.seconds is not None else "", f"{self.calls} calls"
                  if self.calls is not None else ""]
        return (f"shrinking stopped at its budget ({' or '.join(x for x in limits if x)}) after "
                f"{self.used_calls} calls in {self.elapsed():.1f} s: the case shown may not be minimal")


def shrink_budget(device: str) -> ShrinkBudget:
    """The shrinking budget of a search on ``device``: bounded on CUDA, hypothesis' own limits elsewhere."""
    if device == "cuda":
        return ShrinkBudget(CUDA_SHRINK_SECONDS, CUDA_SHRINK_CALLS)
    return ShrinkBudget(None, None)
