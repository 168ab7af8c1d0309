"""``triad bench``'s rows as plain lines, for a pipe, a log or a terminal narrower than the table.

A line per problem (device, dtype, ``B x H x L x d``, causality), then one line per kernel and mode, kernel names
in full and columns aligned with spaces, so nothing wraps at 80 columns (user kernels with long names aside):

      status       kernel          mode          median  TFLOP/s   %peak  memory
    cpu float32 4x1x64x64 causal
      ok           scratch         fwd         0.292 ms   0.0144    8.4%    0.3 MiB
"""

from __future__ import annotations

from typing import Any

from rich.console import Console


def _problem(row: dict[str, Any]) -> str:
    return f"{row['device']} {row['dtype']} {row['B']}x{row['H']}x{row['Lq']}x{row['d_head']}" + (
        " causal" if row["causal"] else "")


def _numbers(row: dict[str, Any]) -> str:
    """median ms, TFLOP/s, % of the matmul peak, peak memory (and the GPU/CPU speed-up) of a measured row; ''
    otherwise (the reason is printed once below the rows)."""
    if row["status"] != "ok":
        return ""
    share = "     -" if row["peak_share"] is None else f"{100 * row['peak_share']:5.1f}%"
    memory = "-" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**20:5.1f} MiB"
    speedup = "" if row["speedup_over_cpu"] is None else f"  {row['speedup_over_cpu']:.1f}x CPU"
    return f"{row['median_ms']:8.3f} ms  {row['tflops']:7.4f}  {share}  {memory}{speedup}"


def print_rows_as_lines(rows: list[dict[str, Any]], console: Console) -> None:
    kernel_width = max((len(r["kernel"]) for r in rows), default=6)
    console.print(f"  {'status':<11}  {'kernel':<{kernel_width}}  {'mode':<7}  {'median':>11}  {'TFLOP/s':>7}  "
                  f"{'%peak':>6}  memory", highlight=False, soft_wrap=True)
    problem = None
    for r in rows:
        if _problem(r) != problem:
            problem = _problem(r)
            console.print(problem, style="bold", highlight=False)
        status = "above peak!" if r["above_peak"] else r["status"]
        console.print(f"  {status:<11}  {r['kernel']:<{kernel_width}}  {r['mode']:<7}  {_numbers(r)}".rstrip(),
                      highlight=False, soft_wrap=True, markup=False)
