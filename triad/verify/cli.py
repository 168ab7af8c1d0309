"""``triad verify`` on the command line: a progress bar, the report's table, JSON and the repro script."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from triad.verify.api import verify_attention
from triad.verify.report import EXIT_CODES


def run_verify(kernel: str, device: str, dtype: str, max_examples: int, seed: int, json_path: Path | None,
               repro: Path | None, interface: str | None = None) -> int:
    """Run the verifier, print the report, write the files asked for; return the exit code (0, 1 or 2)."""
    console = Console()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"verifying {kernel}", total=max_examples)
        report = verify_attention(kernel, device=device, dtype=dtype, max_examples=max_examples, seed=seed,
                                  on_example=lambda n: progress.update(task, completed=n), interface=interface)
    report.render(console)
    if json_path is not None:
        report.write_json(json_path)
    if report.repro_script:
        path = repro if repro is not None else Path(f"triad_verify_repro_seed{seed}.py")
        report.write_repro(path)
        console.print(f"reproduce it with: python {path}")
    return EXIT_CODES[report.verdict]
