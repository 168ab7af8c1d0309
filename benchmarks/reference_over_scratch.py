"""The NumPy reference's time over scratch's on the CPU, the two kernels interleaved round by round.

Issue 5 asks that the reference stay within 2x of scratch. ``triad bench`` reports the ratio of two
medians measured minutes apart; on a shared machine load changes in between, so this script alternates
the two kernels on the same inputs and prints the ratio of the medians and of the fastest rounds::

    OMP_NUM_THREADS=1 python benchmarks/reference_over_scratch.py
"""

from __future__ import annotations

import time

import numpy as np

from torch_impl.kernels import resolve_kernel
from triad.bench.flops import MODES
from triad.bench.grid import CPU_DTYPES, Case, Shape
from triad.bench.runner import mode_call, random_inputs

ROUNDS, WARMUP = 61, 5
SHAPES = (Shape(1, 1, 512, 64), Shape(2, 4, 256, 64), Shape(1, 4, 1024, 64))


def main() -> None:
    kernels = {name: resolve_kernel(name) for name in ("reference", "scratch")}
    for dtype in CPU_DTYPES:
        for shape in SHAPES:
            for causal in (False, True):
                inputs = random_inputs(Case("reference", "cpu", dtype, shape, causal), seed=0)
                cells = []
                for mode in MODES:
                    calls = {name: mode_call(kernel, inputs, causal, mode) for name, kernel in kernels.items()}
                    seconds: dict[str, list[float]] = {name: [] for name in calls}
                    for _ in range(WARMUP + ROUNDS):
                        for name, call in calls.items():
                            inputs.clear_grads()
                            started = time.perf_counter()
                            call()
                            seconds[name].append(time.perf_counter() - started)
                    ref, scr = (np.asarray(seconds[n][WARMUP:]) for n in ("reference", "scratch"))
                    cells.append(f"{mode} median {np.median(ref) / np.median(scr):.2f} "
                                 f"fastest {ref.min() / scr.min():.2f}")
                print(f"{dtype} {shape.label()} {'causal' if causal else 'full'}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
