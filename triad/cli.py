"""The ``triad`` command line. Each command's work lives in its own module; this file only wires them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="transformer-triad: a transformer written three times and proven equal.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """transformer-triad: a transformer written three times and proven equal."""


def _fmt(err: float) -> str:
    return f"{err:.1e}"


@app.command()
def check(
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
) -> None:
    """Run reference, scratch and native on the same weights and inputs; compare every output and gradient."""
    from triad.checks import run_checks

    console = Console()
    started = time.perf_counter()
    results = run_checks()
    elapsed = time.perf_counter() - started

    table = Table(title="triad check: worst relative error against the float64 NumPy reference")
    for column in ("component", "implementations", "dtype", "output", "gradients", "bound", "pass"):
        table.add_column(column, justify="right" if column in ("output", "bound") else "left")
    for r in results:
        grads = "  ".join(f"{name} {_fmt(err)}" for name, err in r.grad_errs.items()) or "-"
        table.add_row(r.name, r.implementations, r.dtype, _fmt(r.max_rel_err_out), grads, _fmt(r.bound),
                      "[green]pass[/]" if r.passed else "[bold red]FAIL[/]")
    console.print(table)
    passed = all(r.passed for r in results)
    n_failed = sum(not r.passed for r in results)
    console.print(
        f"{len(results)} comparisons, {n_failed} failed, in {elapsed:.1f} s. "
        "float64 bound: 1e-10 relative; float32: 2 x the float32 reference's own error "
        "+ a floor of 2 ulps widened by the logits (triad/tolerance.py)."
    )
    if json_path is not None:
        payload = {"passed": passed, "components": [r.to_json() for r in results]}
        json_path.write_text(json.dumps(payload, indent=2))
    if not passed:
        raise typer.Exit(code=1)


def main() -> None:
    sys.exit(app())
