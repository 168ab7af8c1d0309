"""What ``triad verify`` found: one line per feature and per check, the minimal failure, a repro script.

Each line aggregates the cases that exercised it: how many ran, how many the kernel declined
(skipped), and the worst comparison among them -- the kernel's error, the baseline's error and
their ratio, all relative to the magnitude of the result -- and a verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from triad.verify.judge import (
    AUTOGRAD_LINE,
    DETERMINISM_LINE,
    MUTATION_LINE,
    RAISES_LINE,
    SHAPE_LINE,
    CaseOutcome,
    CheckResult,
)
from triad.verify.support import KernelSupport

# Verdicts of a whole run, with the CLI's exit code.
VERIFIED, FAILED, UNSUPPORTED, BAD_KERNEL = "verified", "failed", "unsupported", "bad kernel"
EXIT_CODES = {VERIFIED: 0, FAILED: 1, UNSUPPORTED: 2, BAD_KERNEL: 2}


@dataclass
class Line:
    """One feature or check, over every case that exercised it."""

    name: str
    examples: int = 0
    skipped: int = 0
    failures: int = 0
    # cases of this feature that failed before the feature was checked (e.g. the kernel raised): they prove nothing
    unchecked: int = 0
    worst: CheckResult | None = None  # the comparison closest to (or furthest over) its bound
    note: str = ""  # e.g. why a feature was not searched, or that runs were not bitwise equal
    info: str = ""  # figures shown beside the line that are no warning (a long case's time and memory)

    def add(self, check: CheckResult) -> None:
        self.failures += not check.passed
        if check.message and not check.passed:
            self.note = check.message
        if check.stat and (self.worst is None or check.margin > self.worst.margin):
            self.worst = check

    @property
    def verdict(self) -> str:
        if self.failures:
            return "FAIL"
        if self.examples == 0:
            # declined or ruled out by the declaration: skipped; never drawn before the search stopped: not reached
            return "skipped" if self.skipped or self.note else "not reached"
        if self.note:
            return "warn"
        return "pass"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "examples": self.examples, "skipped": self.skipped, "failures": self.failures,
                "unchecked": self.unchecked,
                "verdict": self.verdict, "note": self.note, "info": self.info,
                "worst": None if self.worst is None else self.worst.to_json()}


@dataclass
class Report:
    kernel: str
    device: str
    dtype: str
    verdict: str
    message: str = ""  # for "bad kernel" / "unsupported": what is wrong
    examples: int = 0
    skipped: int = 0
    seconds: float = 0.0
    seed: int = 0
    lines: dict[str, Line] = field(default_factory=dict)
    failure: CaseOutcome | None = None  # the minimal failing case hypothesis shrank to
    repro_script: str = ""
    # the minimal failing case passed when checked again on its own: state kept between calls, or flakiness
    not_reproducible: bool = False
    # shrinking reached triad.verify.search.SHRINK_SECONDS: the failing case is the smallest found by then
    shrink_capped: bool = False
    declined_reasons: list[str] = field(default_factory=list)
    interface: str = "sdpa"  # the kernel's calling convention: sdpa, flash or varlen
    interface_inferred: bool = False  # read from the signature's parameter names, not given

    @property
    def passed(self) -> bool:
        return self.verdict == VERIFIED

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def line(self, name: str) -> Line:
        return self.lines.setdefault(name, Line(name))

    def _decline(self, reason: str) -> None:
        if reason not in self.declined_reasons and len(self.declined_reasons) < 3:
            self.declined_reasons.append(reason)

    def tally(self, outcome: CaseOutcome, features: list[str], tensors: tuple[str, ...]) -> None:
        """Count one case into the report: its feature lines (``features``, the report lines it counts towards)
        get its agreement checks (those on ``tensors``), every check its own line. A case that failed before
        its agreement was checked (the kernel raised, say) counts for none of its features: they are not passes."""
        if outcome.declined:
            self.skipped += 1
            for name in features:
                self.line(name).skipped += 1
            self._decline(outcome.declined)
            return
        self.examples += 1
        for name, reason in outcome.declined_lines.items():
            self.line(name).skipped += 1
            self._decline(reason)
        agreement = [c for c in outcome.checks if c.line in tensors]
        if outcome.failed and not agreement:
            for name in features:
                self.line(name).unchecked += 1
            features = []
        lines_hit = set(features) | {c.line for c in outcome.checks} | {DETERMINISM_LINE}
        if not outcome.failed:
            lines_hit |= {RAISES_LINE, SHAPE_LINE, MUTATION_LINE}
            lines_hit |= {AUTOGRAD_LINE} if any(c.line == "dq" for c in outcome.checks) else set()
        for name in lines_hit:
            self.line(name).examples += 1
        for check in outcome.checks:
            self.line(check.line).add(check)
        for name in features:
            for check in agreement:
                self.line(name).add(check)
        if outcome.nondeterministic:
            self.line(DETERMINISM_LINE).note = "runs differ bitwise (non-deterministic)"

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel, "device": self.device, "dtype": self.dtype, "verdict": self.verdict,
            "message": self.message, "examples": self.examples, "skipped": self.skipped,
            "seconds": self.seconds, "seed": self.seed, "declined_reasons": self.declined_reasons,
            "interface": self.interface, "interface_inferred": self.interface_inferred,
            "diagnosis": getattr(self.failure, "diagnosis", ""),
            "not_reproducible": self.not_reproducible, "shrink_capped": self.shrink_capped,
            "lines": [line.to_json() for line in self.lines.values()],
            "failure": None if self.failure is None else {
                "case": self.failure.case.to_json(),
                "description": self.failure.case.describe(),
                "checks": [c.to_json() for c in self.failure.failures()],
            },
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=True))

    def write_repro(self, path: Path) -> None:
        if not self.repro_script:
            raise ValueError(f"repro: nothing to reproduce, the verdict is {self.verdict!r}")
        path.write_text(self.repro_script)

    def summary(self, verbose: bool = False) -> str:
        """One line of verdict and counts, then the minimal failing case (``verbose``: every failing check's
        numbers; else the first, and the others by name)."""
        head = f"{self.kernel} on {self.device} in {self.dtype}: {self.verdict}"
        if self.message:
            return f"{head}: {self.message}"
        how = "inferred from its signature" if self.interface_inferred else "as given"
        text = (f"{head} ({self.examples} cases, {self.skipped} skipped, {self.seconds:.1f} s, seed {self.seed}, "
                f"{self.interface} interface {how})")
        if self.failure is not None:
            text += "\nminimal failing case:\n" + self.failure.summary(verbose)
        if self.not_reproducible:
            text += "\n" + NOT_REPRODUCIBLE
        if self.shrink_capped:
            text += "\n" + SHRINK_CAPPED
        return text

    def shown_lines(self, verbose: bool = False) -> list[Line]:
        """The lines to print. A failure is one case (the tally stops there), which fails every feature line it
        counted towards; unless ``verbose``, those feature lines are folded into one line naming them."""
        if verbose or self.failure is None:
            return list(self.lines.values())
        checks = {c.line for c in self.failure.failures()}
        folded = [line for line in self.lines.values() if line.verdict == "FAIL" and line.name not in checks
                  and not line.name.startswith("coverage: ")]
        if len(folded) < 2:
            return list(self.lines.values())
        names = ", ".join(line.name for line in folded)
        summary = Line(f"the failing case's {len(folded)} features (--verbose: one line each): {names}",
                       examples=1, failures=1, worst=folded[0].worst)
        shown = [line for line in self.lines.values() if line not in folded]
        return [*shown, summary]

    def render(self, console: Console, verbose: bool = False) -> None:
        """The rich table (or aligned lines when piped or narrow), then the minimal failing case, if any."""
        if self.message:
            console.print(f"[bold red]{self.summary(verbose)}[/]")
            return
        title = (f"triad verify {self.kernel} ({self.device}, {self.dtype}): errors relative to the "
                 "result's magnitude; allowed = 2 x baseline + floor; ratio = worst / baseline")
        if not (console.is_terminal and console.width >= 120):  # piped or narrow: a table would wrap its cells
            self._render_lines(console, title, verbose)
            return
        table = Table(title=title)
        for column in ("check", "examples", "skipped", "worst error", "allowed", "baseline error", "ratio", "verdict"):
            table.add_column(column, justify="left" if column in ("check", "verdict") else "right")
        styles = {"FAIL": "bold red", "pass": "green", "warn": "yellow", "skipped": "dim", "not reached": "dim"}
        for line in self.shown_lines(verbose):
            w = line.worst
            table.add_row(
                line.name, str(line.examples), str(line.skipped),
                "-" if w is None else f"{w.err:.2e} ({w.stat})", "-" if w is None else f"{w.bound:.2e}",
                "-" if w is None else f"{w.baseline_err:.2e}",
                "-" if w is None else f"{w.ratio:.3g}",
                f"[{styles[line.verdict]}]{line.verdict}[/]" + "".join(f" {t}" for t in (line.note, line.info) if t),
            )
        console.print(table)
        self._render_footer(console, verbose)

    def _render_lines(self, console: Console, title: str, verbose: bool) -> None:
        """One line per check: the numbers first, in aligned columns, then the check's name in full (so a long
        name never pushes the columns apart), then how many cases were skipped and any note."""
        console.print(title, highlight=False)
        header = f"{'verdict':<11}  {'worst':>7}  {'allowed':>7}  {'baseline':>8}  {'ratio':>6}  {'cases':>5}  check"
        console.print(header, highlight=False)
        for line in self.shown_lines(verbose):
            w = line.worst
            numbers = ("-",) * 4 if w is None else (f"{w.err:.1e}", f"{w.bound:.1e}", f"{w.baseline_err:.1e}",
                                                   f"{w.ratio:.3g}")
            extra = "" if w is None or w.stat == "max" else f" ({w.stat})"
            extra += f" ({line.skipped} skipped)" if line.skipped else ""
            extra += f"  {line.note}" if line.note else ""
            extra += f"  {line.info}" if line.info else ""
            console.print(f"{line.verdict:<11}  {numbers[0]:>7}  {numbers[1]:>7}  {numbers[2]:>8}  {numbers[3]:>6}  "
                          f"{line.examples:>5}  {line.name}{extra}", highlight=False, soft_wrap=True, markup=False)
        self._render_footer(console, verbose)

    def _render_footer(self, console: Console, verbose: bool) -> None:
        if self.declined_reasons:
            console.print("kernel declined some cases: " + "; ".join(self.declined_reasons))
        style = "green" if self.passed else "bold red"
        console.print(f"[{style}]{self.summary(verbose)}[/]")


SHRINK_CAPPED = ("note: shrinking stopped at its time cap; the case above is the smallest found by then, "
                 "not necessarily minimal")
NOT_REPRODUCIBLE = ("warning: the minimal case passed when checked again on its own, so the failure depends on "
                    "what ran before (the kernel keeps state between calls, e.g. a cache keyed on too little) or "
                    "comes and goes (a race, uninitialised memory); the repro script may pass while the bug is there")


def repro_script(kernel_spec: str | None, failure: CaseOutcome, device: str, dtype: str,
                 check: Callable[..., CaseOutcome], *, supports: KernelSupport | None = None,
                 not_reproducible: bool = False, import_root: str | None = None, check_args: str = "") -> str:
    """A standalone script that rebuilds the failing case from its seed and runs ``check`` on it again.

    ``check``: the function that checked the case (``check_one_case``, ``check_flash_case``, ...), called as
    ``check(kernel, CASE, <check_args>device=, dtype=, supports=)``. ``supports``: the support the caller passed
    to ``verify_attention`` (None: the kernel's own declaration), written into the script so that it runs the
    same checks (which relations apply depends on it). ``import_root``: the folder the kernel's module was
    imported from; the script puts it on ``sys.path``, so it runs from any directory. A script that cannot
    import the kernel exits 2, never 1 ("still failing").
    """
    case = failure.case
    case_class = type(case)
    fields = ", ".join(f"{name}={value!r}" for name, value in case.to_json().items())
    support_fields = "" if supports is None else ", ".join(f"{n}={v!r}" for n, v in supports.to_json().items())
    supports_line = "SUPPORTS = None  # the kernel's own declaration" if supports is None else (
        f"SUPPORTS = KernelSupport({support_fields})")
    diagnosis = getattr(failure, "diagnosis", "")
    notes = f"# diagnosis: {diagnosis}\n" if diagnosis else ""
    notes += f"# {NOT_REPRODUCIBLE}\n" if not_reproducible else ""
    found = "\n".join(f"#   {c.describe()}" for c in failure.failures())
    spec_line = (f"KERNEL = {kernel_spec!r}" if kernel_spec else
                 "KERNEL = None  # the kernel had no importable name; pass MODULE:FUNCTION on the command line")
    return f'''"""Reproduce the failure ``triad verify`` found, on the smallest failing case it found.

    python {{this file}} [MODULE:FUNCTION]

Exit status 1 while the kernel still fails this case, 0 once it passes, 2 if the kernel cannot be imported.
"""
# Found on {device}, {dtype}:
{found}
{notes}
import sys

from {check.__module__} import {check.__name__}
from {case_class.__module__} import {case_class.__name__}
from torch_impl.kernels import KernelNotFoundError, resolve_kernel
from triad.verify.support import KernelSupport, declared_support

{spec_line}
KERNEL_IMPORTED_FROM = {import_root!r}  # put on sys.path, so the script runs from any directory
CASE = {case_class.__name__}({fields})
{supports_line}

if __name__ == "__main__":
    spec = sys.argv[1] if len(sys.argv) > 1 else KERNEL
    if spec is None:
        print("usage: python {{this file}} MODULE:FUNCTION", file=sys.stderr)
        sys.exit(2)
    if KERNEL_IMPORTED_FROM is not None:
        sys.path.insert(0, KERNEL_IMPORTED_FROM)
    try:
        kernel = resolve_kernel(spec)
    except KernelNotFoundError as exc:
        print(f"cannot run the repro: {{exc}}", file=sys.stderr)
        sys.exit(2)
    outcome = {check.__name__}(kernel, CASE, {check_args}device={device!r}, dtype={dtype!r},
                               supports=declared_support(kernel, SUPPORTS))
    print(outcome.summary())
    sys.exit(1 if outcome.failed else 0)
'''
