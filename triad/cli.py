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


WIDE_TABLE_COLUMNS = 160  # the check table's width with every gradient on one line; below it, one line per row


def _check_table(results: list) -> Table:
    table = Table(title="triad check: worst relative error against the float64 NumPy reference")
    for column in ("component", "implementations", "dtype", "output", "gradients", "bound", "pass"):
        table.add_column(column, justify="right" if column in ("output", "bound") else "left")
    for r in results:
        grads = "  ".join(f"{name} {_fmt(err)}" for name, err in r.grad_errs.items()) or "-"
        table.add_row(r.name, r.implementations, r.dtype, _fmt(r.max_rel_err_out), grads, _fmt(r.bound),
                      "[green]pass[/]" if r.passed else "[bold red]FAIL[/]")
    return table


def _print_check_lines(results: list, console: Console) -> None:
    """Under 80 columns: the component's full name on a line of its own, then one line per comparison
    (implementation against the reference, dtype, output error, worst gradient error, bound), and a line
    per gradient over the bound; every gradient is in --json."""
    console.print("triad check: worst relative error against the float64 NumPy reference", highlight=False)
    component = None
    for r in results:
        if r.name != component:
            component = r.name
            console.print(f"[bold]{component}[/]", highlight=False)
        worst = max(r.grad_errs.values(), default=None)
        verdict = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
        implementation = r.implementations.replace(" vs reference", "")
        console.print(f"  {verdict}  {implementation:<18}  {r.dtype:<7}  out {_fmt(r.max_rel_err_out)}  "
                      f"grad {'-      ' if worst is None else _fmt(worst)}  bound {_fmt(r.bound)}",
                      highlight=False, soft_wrap=True)
        for name, err in r.grad_errs.items():
            if err > r.bound:
                console.print(f"        {name}: {_fmt(err)} over the bound", highlight=False, soft_wrap=True)


def _importable_from_here() -> None:
    """Let ``MODULE:FUNCTION`` name a module in the working directory, as ``python -m`` does."""
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))


@app.command()
def check(
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
) -> None:
    """Run reference, scratch and native on the same weights and inputs; compare every output and gradient."""
    from triad.agreement import run_checks
    from triad.output_paths import OutputPathError, check_output_paths, write_output

    console = Console()
    try:
        check_output_paths({"--json": json_path})
    except OutputPathError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(code=2) from None
    started = time.perf_counter()
    results = run_checks()
    elapsed = time.perf_counter() - started

    if console.is_terminal and console.width >= WIDE_TABLE_COLUMNS:
        console.print(_check_table(results))
    else:  # piped, logged or narrow: a table would wrap every cell
        _print_check_lines(results, console)
    for r in results:
        for tensor, where in r.where.items():
            console.print(f"FAIL {r.name}, {r.implementations}, {r.dtype}, {tensor}: {where}", markup=False,
                          highlight=False, soft_wrap=True)
    passed = all(r.passed for r in results)
    n_failed = sum(not r.passed for r in results)
    console.print(
        f"{len(results)} comparisons, {n_failed} failed, in {elapsed:.1f} s. "
        "float64 bound: 1e-10 relative; float32: 2 x the float32 reference's own error "
        "+ a floor of 2 ulps widened by the logits (triad/tolerance.py)."
    )
    if json_path is not None:
        payload = {"passed": passed, "components": [r.to_json() for r in results]}
        write_output(json_path, lambda path: path.write_text(json.dumps(payload, indent=2)), "--json")
    if not passed:
        raise typer.Exit(code=1)


@app.command()
def verify(
    kernel: Annotated[str, typer.Argument(help="A built-in kernel (native, sdpa-math, ...) or MODULE:FUNCTION.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float64, float32, float16 or bfloat16.")] = "float32",
    max_examples: Annotated[int, typer.Option(help="Cases hypothesis draws before it stops.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the search; the same seed draws the same cases.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    repro: Annotated[Path | None, typer.Option(help="On failure, write the reproducing script here.")] = None,
    interface: Annotated[str | None, typer.Option(
        help="sdpa, flash, varlen or kvcache (FlashAttention's flash_attn_func / flash_attn_varlen_func / "
             "flash_attn_with_kvcache); "
             "default: inferred from the kernel's parameter names.")] = None,
    long: Annotated[bool, typer.Option("--long", help="After the search passes, run the flash interface at 8192, "
                                       "16384 and 32768 keys, judged on sampled rows (minutes).")] = False,
    long_lengths: Annotated[str | None, typer.Option(
        help="The --long lengths, comma- or space-separated (implies --long), e.g. '8192,131072'.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Every line on its own: each feature the failing "
                                          "case counted towards, each failing check's numbers.")] = False,
) -> None:
    """Search for a case where an attention kernel disagrees with the float64 reference; exit 0 verified,
    1 a failure found (the minimal case and a repro script), 2 a usage error (bad name, dtype, device)."""
    from triad.verify.cli import run_verify

    _importable_from_here()
    raise typer.Exit(code=run_verify(kernel, device, dtype, max_examples, seed, json_path, repro,
                                          interface, long or long_lengths is not None, long_lengths, verbose))


@app.command()
def bench(
    full: Annotated[bool | None, typer.Option("--full/--quick", help="The full grid (CPU, and CUDA when present) "
                                              "or the quick CPU one (under a minute on 2 cores): shorthands "
                                              "for --preset full / quick.")] = None,
    preset: Annotated[str | None, typer.Option(help="quick (default), full, gpu (the CUDA grid of the GPU run: "
                                               "bf16/fp16, d 128/64, GQA 8:1, L 512-16k) or smoke (that plan "
                                               "at toy sizes on the CPU).")] = None,
    budget: Annotated[float | None, typer.Option(help="Seconds after which no case starts, per device "
                                                 "(default: the preset's).")] = None,
    kernel: Annotated[list[str] | None, typer.Option("--kernel", help="Only this kernel (repeatable): a built-in "
                                                     "name or MODULE:FUNCTION. Default: every built-in.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Also plot TFLOP/s against L (PNG) here.")] = None,
) -> None:
    """Attention-core throughput of every kernel: ms, TFLOP/s, share of the matmul peak, peak memory."""
    from triad.bench.cli import run_bench

    _importable_from_here()
    raise typer.Exit(code=run_bench(full, kernel, json_path, plot_path, Console(), preset, budget))


@app.command()
def train(
    task: Annotated[str, typer.Argument(help="copy, charlm, classify or regress.")],
    impl: Annotated[str, typer.Option(help="reference (NumPy), scratch or native.")] = "reference",
    device: Annotated[str, typer.Option(help="cpu or cuda (torch implementations only).")] = "cpu",
    steps: Annotated[int | None, typer.Option(help="Training steps; default: the task's recipe.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the parameters and the batches.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write config, losses, times, metric here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the loss curve (PNG) here.")] = None,
    save: Annotated[Path | None, typer.Option(help="Write a safetensors checkpoint here (copy and charlm, which "
                                              "generate: by default ./triad-TASK-IMPL-seedN.safetensors).")] = None,
) -> None:
    """Train a task on one implementation and score it (exit 2 on a usage error)."""
    from triad.train import train_command

    raise typer.Exit(code=train_command(task, impl, device, steps, seed, json_path, plot, save))


@app.command()
def generate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by triad train --save.")],
    prompt: Annotated[str, typer.Option(help="Text to continue (charlm), or for copy one of the trained "
                                             "bodies: 11111111, 00000000, 10101010 or 01010101.")],
    temperature: Annotated[float, typer.Option(help="0 is greedy; > 0 samples with --seed.")] = 0.0,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens to add; default: until EOS.")] = None,
    impl: Annotated[str, typer.Option(help="reference, scratch or native.")] = "reference",
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda (torch implementations only).")] = "cpu",
) -> None:
    """Continue a prompt with a trained copy or charlm checkpoint (exit 2 on a usage error)."""
    from triad.train import generate_command

    raise typer.Exit(code=generate_command(checkpoint, prompt, temperature, max_tokens, impl, seed, device))


def main() -> None:
    sys.exit(app())
