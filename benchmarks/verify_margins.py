"""Measure the numbers behind ``docs/verify.md``: how close correct kernels come to the verifier's bound,
and how many examples each planted bug survives.

    PYTHONPATH=. python benchmarks/verify_margins.py correct [SEEDS]    # worst error / allowed, per kernel
    PYTHONPATH=. python benchmarks/verify_margins.py planted [SEEDS]    # examples until each bug is caught

``SEEDS`` is a range such as ``0-4`` (default: 0-4 for correct, 0-10 for planted). Each run is the
default ``triad verify`` run (200 examples) on the CPU. "worst error / allowed" is the largest
``margin`` over the out/dq/dk/dv checks (worst element and mean) of every case; 1.0 would fail.
"""

from __future__ import annotations

import sys

import torch

from equivalence_tests.planted_kernels import PLANTED, textbook_attention
from triad.verify import verify_attention
from triad.verify.judge import TENSORS

CORRECT = {  # (kernel, dtypes); float32 is the default run, the rest are spot checks
    "native": ("float32", "float64", "float16", "bfloat16"),
    "sdpa-math": ("float32", "float64", "float16", "bfloat16"),
    "sdpa-flash": ("float32", "float64", "float16", "bfloat16"),
    "scratch": ("float32",),
    "reference": ("float32",),
    "textbook_attention": ("float32",),
}


def _seeds(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def correct(seeds: range) -> None:
    print("| dtype | kernel | seeds | worst error / allowed | tensor |")
    print("| --- | --- | --- | --- | --- |")
    for name, dtypes in CORRECT.items():
        kernel = textbook_attention if name == "textbook_attention" else name
        for dtype in dtypes:
            worst, where, verdicts = 0.0, "", set()
            for seed in seeds if dtype == "float32" else seeds[:3]:
                report = verify_attention(kernel, dtype=dtype, seed=seed)
                verdicts.add(report.verdict)
                for tensor in TENSORS:
                    check = report.lines[tensor].worst
                    if check is not None and check.margin > worst:
                        worst, where = check.margin, f"{tensor} ({check.stat})"
            used = seeds if dtype == "float32" else seeds[:3]
            print(f"| {dtype} | {name} | {used.start}-{used.stop - 1} | {worst:.2f} | {where} |"
                  + ("" if verdicts == {"verified"} else f" verdicts {sorted(verdicts)}"), flush=True)


def planted(seeds: range) -> None:
    print("| planted bug | examples until caught | caught |")
    print("| --- | --- | --- |")
    for name, kernel in PLANTED.items():
        counts = []
        for seed in seeds:
            report = verify_attention(kernel, seed=seed)
            counts.append(report.examples if report.verdict == "failed" else None)
        caught = [c for c in counts if c is not None]
        span = f"{min(caught)}-{max(caught)}" if caught else "-"
        print(f"| `{name}` | {span} | {len(caught)}/{len(counts)} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    what = sys.argv[1] if len(sys.argv) > 1 else "correct"
    default = "0-4" if what == "correct" else "0-10"
    {"correct": correct, "planted": planted}[what](_seeds(sys.argv[2] if len(sys.argv) > 2 else default))
