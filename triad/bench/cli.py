"""The ``triad bench`` command's work: pick the grid, run it with a progress bar, print and write the report."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from torch_impl.kernels import KernelNotFoundError, resolve_kernel
from triad.bench.grid import PRESETS, preset
from triad.bench.report import print_report, write_json, write_plot
from triad.bench.runner import run_grid
from triad.output_paths import OutputPathError, check_output_paths, write_output
from triad.verify.support import declared_support


def _preset_name(full: bool | None, preset_name: str | None) -> str:
    """The preset asked for by ``--full/--quick`` and ``--preset`` (ValueError when they disagree)."""
    shorthand = None if full is None else ("full" if full else "quick")
    if preset_name is not None and shorthand is not None and preset_name != shorthand:
        raise ValueError(f"--preset {preset_name} and --{shorthand}: expected one preset, got two")
    name = preset_name or shorthand or "quick"
    if name not in PRESETS:
        raise ValueError(f"--preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    if name == "gpu" and not torch.cuda.is_available():
        raise ValueError("--preset gpu: needs CUDA, and torch.cuda.is_available() is False (try --preset smoke)")
    return name


def run_bench(full: bool | None, kernels: list[str] | None, json_path: Path | None, plot_path: Path | None,
              console: Console, preset_name: str | None = None, budget_s: float | None = None) -> int:
    """Exit code: 0 the run finished (unsupported/oom/wrong rows are results), 2 a usage error."""
    try:
        name = _preset_name(full, preset_name)
        grid = preset(name, tuple(kernels) if kernels else None, cuda=torch.cuda.is_available(), budget_s=budget_s)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    try:
        for name in kernels or []:
            declared_support(resolve_kernel(name))
    except (KernelNotFoundError, TypeError) as exc:  # no such kernel, or a malformed triad_support
        console.print(f"[red]{exc}[/]")
        return 2
    try:  # found now, not after the whole run (on a GPU, minutes of it)
        check_output_paths({"--json": json_path, "--plot": plot_path})
    except OutputPathError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    cases = grid.cases()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("matmul peak", total=len(cases))
        report = run_grid(grid, progress=lambda label: progress.update(task, advance=1, description=label))
    print_report(report, console)
    skipped = sum(r["status"] == "skipped" for r in report["rows"])
    if skipped:
        console.print(f"[bold yellow]{skipped} of {len(report['rows'])} cases were skipped: the time budget ran out "
                      "(a loaded machine?); their rows say so in the JSON. Rerun on an idle machine.[/]")
    if json_path is not None:
        written = write_output(json_path, lambda path: write_json(report, path), "--json")
        console.print(f"JSON written to {written}")
    if plot_path is not None:
        written = write_output(plot_path, lambda path: write_plot(report, path), "--plot")
        console.print(f"plot written to {written}")
    return 0
