"""``triad verify`` on the command line: a progress bar, the report's table, JSON and the repro script."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from triad.output_paths import OutputPathError, check_output_paths, write_output
from triad.verify.api import verify_attention
from triad.verify.long_context import LONG_LENGTHS
from triad.verify.report import EXIT_CODES


def parse_long_lengths(text: str | None) -> tuple[int, ...]:
    """'8192,131072' or '8192 131072' -> (8192, 131072); None -> the default LONG_LENGTHS."""
    if text is None:
        return LONG_LENGTHS
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"--long-lengths: expected positive integers separated by commas or spaces, got {text!r}")
    return tuple(int(p) for p in parts)


def run_verify(kernel: str, device: str, dtype: str, max_examples: int, seed: int, json_path: Path | None,
               repro: Path | None, interface: str | None = None, long: bool = False,
               long_lengths: str | None = None, verbose: bool = False) -> int:
    """Run the verifier, print the report, write the files asked for; return the exit code (0, 1 or 2)."""
    console = Console()
    try:
        lengths = parse_long_lengths(long_lengths) if long else ()
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    try:  # before the search, not after it (the default repro path falls back to a temporary file if need be)
        check_output_paths({"--json": json_path, "--repro": repro})
    except OutputPathError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"verifying {kernel}", total=max_examples)
        report = verify_attention(kernel, device=device, dtype=dtype, max_examples=max_examples, seed=seed,
                                  on_example=lambda n: progress.update(task, completed=n), interface=interface,
                                  long_lengths=lengths)
    report.render(console, verbose)
    if json_path is not None:
        write_output(json_path, report.write_json, "--json")
    if report.repro_script:
        # without --repro, a fresh temporary folder: nothing lands in the working directory unasked
        path = repro or Path(tempfile.mkdtemp(prefix="triad-verify-")) / f"repro_seed{seed}.py"
        path = write_output(path, report.write_repro, "--repro")
        console.print(f"reproduce it with: python {path}", soft_wrap=True, highlight=False)
    return EXIT_CODES[report.verdict]
