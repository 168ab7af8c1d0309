"""``triad bench``: attention-core throughput for every kernel, on the CPU and on CUDA when present.

- ``grid.py``: what is measured (kernels x devices x dtypes x shapes x causal x modes) and the presets
- ``flops.py``: the FLOP convention (FlashAttention's), in one place
- ``measure.py``: how time, peak memory and the matmul peak are measured
- ``runner.py``: one case end to end (fresh inputs, the output checked against the reference, each mode
  timed, unsupported / out-of-memory / wrong recorded as results), the machine header
- ``report.py``: the table, the JSON (``schema.json``) and the plot
"""

from triad.bench.flops import FLOP_CONVENTION, attention_flops, matmul_flops
from triad.bench.grid import Case, DeviceGrid, Grid, Shape, preset
from triad.bench.report import load_schema, print_report, write_json, write_plot
from triad.bench.runner import Row, run_case, run_grid

__all__ = ["FLOP_CONVENTION", "Case", "DeviceGrid", "Grid", "Row", "Shape", "attention_flops", "load_schema",
           "matmul_flops", "preset", "print_report", "run_case", "run_grid", "write_json", "write_plot"]
