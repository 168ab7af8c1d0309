"""Measure ``triad verify --interface flash|varlen|kvcache``: how close correct kernels come to the bound, and how
soon each planted bug is caught and with which diagnosis.

    PYTHONPATH=. python benchmarks/verify_flash_margins.py correct [SEEDS] [EXAMPLES] [DTYPE]
    PYTHONPATH=. python benchmarks/verify_flash_margins.py planted [SEEDS] [EXAMPLES]
    PYTHONPATH=. python benchmarks/verify_flash_margins.py kvcache-correct|kvcache-planted [SEEDS] [EXAMPLES] [DTYPE]

``SEEDS`` is a range such as ``0-10`` (the default); ``EXAMPLES`` the search budget after the coverage cases
(default: the default run's 200); ``DTYPE`` float32 or float64 (default: both). "worst error / allowed"
is the largest ``margin`` over the out/lse/dq/dk/dv checks (worst element and mean) of every case; 1.0
would fail.
"""

from __future__ import annotations

import sys
import time

from equivalence_tests.planted_flash_kernels import CORRECT_FLASH, PLANTED_FLASH
from equivalence_tests.planted_kvcache_kernels import CORRECT_KVCACHE, PLANTED_KVCACHE
from triad.verify import verify_attention
from triad.verify.api import DEFAULT_MAX_EXAMPLES
from triad.verify.diagnoses import DIAGNOSES
from triad.verify.flash_api import FLASH_TENSORS
from triad.verify.kvcache_diagnoses import KVCACHE_DIAGNOSES

INTERFACES = {"flash": ("flash", "varlen"), "kvcache": ("kvcache",)}
BUILTIN_NAMES = ("reference", "scratch", "native", "flex")
# family -> [(label, interface, kernel)], [(name, interface, kernel, diagnosis key)]
CORRECT = {"flash": [(name, interface, kernel) for name, (interface, kernel) in CORRECT_FLASH.items()],
           "kvcache": [(name, "kvcache", kernel) for name, kernel in CORRECT_KVCACHE.items()]}
PLANTED = {"flash": [(name, interface, kernel, key) for name, (interface, kernel, key) in PLANTED_FLASH.items()],
           "kvcache": [(name, "kvcache", kernel, key) for name, (kernel, key) in PLANTED_KVCACHE.items()]}


def _seeds(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def correct(seeds: range, examples: int, dtypes: tuple[str, ...] = ("float32", "float64"),
            family: str = "flash") -> None:
    print("| dtype | kernel | seeds | worst error / allowed | tensor | verdicts |")
    print("| --- | --- | --- | --- | --- | --- |")
    kernels = CORRECT[family] + [(f"{name} ({interface})", interface, name) for interface in INTERFACES[family]
                                 for name in BUILTIN_NAMES]
    for dtype in dtypes:
        for label, interface, kernel in kernels:
            worst, where, verdicts = 0.0, "", set()
            for seed in seeds:
                report = verify_attention(kernel, interface=interface, dtype=dtype, seed=seed, max_examples=examples)
                verdicts.add(report.verdict)
                for tensor in (t for t in FLASH_TENSORS if t in report.lines):
                    check = report.lines[tensor].worst
                    if check is not None and check.margin > worst:
                        worst, where = check.margin, f"{tensor} ({check.stat})"
            print(f"| {dtype} | {label} | {seeds.start}-{seeds.stop - 1} | {worst:.2f} | {where} | "
                  f"{', '.join(sorted(verdicts))} |", flush=True)


def planted(seeds: range, examples: int, family: str = "flash") -> None:
    print("| planted bug | cases until caught (max over seeds) | caught | right diagnosis | diagnosis |")
    print("| --- | --- | --- | --- | --- |")
    for name, interface, kernel, key in PLANTED[family]:
        dtype = "float64" if key == "float32" else "float32"
        messages = {n: message for n, (message, *_) in (DIAGNOSES | KVCACHE_DIAGNOSES).items()}
        wanted = "softmax computed in float32" if key == "float32" else messages.get(key, "")
        counts, caught, right, seen = [], 0, 0, set()
        for seed in seeds:
            report = verify_attention(kernel, interface=interface, dtype=dtype, seed=seed, max_examples=examples)
            counts.append(report.examples + report.skipped)
            if report.failure is not None:
                caught += 1
                got = report.failure.diagnosis
                right += got.startswith(wanted) if wanted else got == ""
                seen.add(got or "(none)")
        print(f"| {name} | {max(counts)} | {caught}/{len(seeds)} | {right}/{len(seeds)} | {'; '.join(sorted(seen))} |",
              flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "correct"
    family, _, mode = mode.rpartition("-")
    family = family or "flash"
    chosen = _seeds(sys.argv[2] if len(sys.argv) > 2 else "0-10")
    budget = int(sys.argv[3]) if len(sys.argv) > 3 else DEFAULT_MAX_EXAMPLES
    started = time.perf_counter()
    if mode == "correct":
        correct(chosen, budget, (sys.argv[4],) if len(sys.argv) > 4 else ("float32", "float64"), family)
    else:
        planted(chosen, budget, family)
    print(f"\n{time.perf_counter() - started:.0f} s", flush=True)
