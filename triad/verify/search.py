"""The search every interface runs: coverage cases first, then hypothesis, shrinking the first failure.

``Search`` is parameterised by what differs between the interfaces (``sdpa`` in ``triad.verify.api``,
``flash``/``varlen`` in ``triad.verify.flash_api``, ``kvcache`` in ``triad.verify.kvcache_api``): the check
of one case, the tally of an outcome into the report, the coverage cases and the hypothesis strategy. The
report tallies the cases until the first failure; the cases after it are hypothesis shrinking.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from triad.verify.judge import CheckResult
from triad.verify.report import Report

# Shrinking stops this long after the first failure (hypothesis alone allows 300 s): on a GPU lent for minutes
# one slow-to-shrink backend must not eat the budget. The failure found last (the smallest so far) is reported.
# Per family of interfaces (a FlashAttention case costs several SDPA ones: its relations and diagnoses), per device.
SHRINK_SECONDS = {"sdpa": {"cpu": 120.0, "cuda": 30.0}, "flash": {"cpu": 60.0, "cuda": 30.0}}


class Outcome(Protocol):
    """What a check of one case returns (``CaseOutcome`` and its subclasses)."""

    case: Any
    checks: list[CheckResult]
    declined: str

    @property
    def failed(self) -> bool: ...

    def summary(self) -> str: ...


Check = Callable[[Any], Outcome]
# the strategy to search, given the failed coverage case's outcome (None when every coverage case passed);
# None: no search (the coverage failure stands)
Strategy = Callable[[Outcome | None], st.SearchStrategy | None]


class Search:
    """One run's state: the report being tallied and the failures found so far.

    ``check(case)`` runs every check of one case; ``tally(report, outcome)`` counts it into the report;
    ``family`` and ``device`` pick the shrinking time cap (``SHRINK_SECONDS``).
    """

    def __init__(self, check: Check, tally: Callable[[Report, Outcome], None], report: Report, family: str,
                 device: str, on_example: Callable[[int], None] | None) -> None:
        self.check, self.tally, self.report = check, tally, report
        self.family, self.device, self.on_example = family, device, on_example
        self.failures: list[Outcome] = []
        self.first_failure_at: float | None = None

    def run_case(self, case: Any) -> Outcome:
        outcome = self.check(case)
        if not self.failures:
            self.tally(self.report, outcome)
            if self.on_example is not None:
                self.on_example(self.report.examples + self.report.skipped)
        return outcome

    def record_failure(self, outcome: Outcome) -> None:
        self.failures.append(outcome)
        if self.first_failure_at is None:
            self.first_failure_at = time.perf_counter()

    def shrink_time_spent(self) -> bool:
        started = self.first_failure_at
        return started is not None and time.perf_counter() - started > SHRINK_SECONDS[self.family][self.device]

    def example(self, case: Any) -> None:
        """One hypothesis example: raise on a failure (one raise site: hypothesis tells failures apart by where
        they are raised), else steer the search towards the largest error over its bound."""
        if self.shrink_time_spent():
            self.report.shrink_capped = True
            return  # passes from here on: hypothesis stops shrinking and the smallest failure so far stands
        searching = not self.failures
        outcome = self.run_case(case)
        if outcome.failed:
            self.record_failure(outcome)
            raise AssertionError(outcome.summary())
        margins = [c.margin for c in outcome.checks if c.stat]
        if searching and margins:
            target(min(max(margins), 1e6), label="error / allowed error")

    def search(self, strategy: st.SearchStrategy, max_examples: int, seed: int) -> None:
        """Hypothesis over ``strategy``; shrinks the first failure it finds."""
        @hypothesis_seed(seed)
        @settings(max_examples=max_examples, database=None, deadline=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False,
                  phases=(Phase.generate, Phase.target, Phase.shrink))  # no database to reuse
        @given(case=strategy)
        def one_example(case: Any) -> None:
            self.example(case)

        # hypothesis replays the minimal failing example last (for a flaky kernel: the last one seen)
        with contextlib.suppress(AssertionError, HypothesisException):
            one_example()

    def run(self, coverage: Iterable[tuple[str | None, Any]], strategy: Strategy, max_examples: int,
            seed: int) -> None:
        """The coverage cases first (the search alone may never draw one; a named one gets its report line
        ``coverage: NAME``), up to the first that fails; then the search ``strategy`` gives, if any. The minimal
        failing case is then run once more on its own: what the repro script will see."""
        failed_coverage = None
        for name, case in coverage:
            outcome = self.run_case(case)
            if name is not None:
                line = self.report.line(f"coverage: {name}")
                line.failures += 1 if outcome.failed else 0
                line.examples += 0 if outcome.failed or outcome.declined else 1
                line.skipped += 1 if outcome.declined and not outcome.failed else 0
            if outcome.failed:
                self.record_failure(outcome)
                failed_coverage = outcome
                break
        searched = strategy(failed_coverage)
        if searched is None:
            return
        self.search(searched, max_examples, seed)
        if self.failures:
            replay = self.check(self.failures[-1].case)
            self.report.not_reproducible = not replay.failed
