"""The ``triad bench`` command's work: pick the grid, run it with a progress bar, print and write the report."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from torch_impl.kernels import KernelNotFoundError, resolve_kernel
from triad.bench.grid import PRESETS, preset
from triad.bench.report import print_report, write_json, write_plot
from triad.bench.runner import run_grid
from triad.verify.support import declared_support


def _unwritable(path: Path | None) -> str:
    """Why ``path`` cannot be written ("" when it can); creates its missing parent folders, as the writers do."""
    if path is None:
        return ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if path.is_dir():
        return "it is a folder"
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "no write permission"
    return ""


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
    for flag, path in (("--json", json_path), ("--plot", plot_path)):
        problem = _unwritable(path)
        if problem:  # found now, not after the whole run (on a GPU, minutes of it)
            console.print(f"[red]{flag}: cannot write {path}: {problem}[/]")
            return 2
    if not console.is_terminal:  # piped or logged: rich would wrap every cell at 80 columns
        console.width = max(console.width, 170)
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
        write_json(report, json_path)
        console.print(f"JSON written to {json_path}")
    if plot_path is not None:
        write_plot(report, plot_path)
        console.print(f"plot written to {plot_path}")
    return 0
