"""What a newcomer reads: piped or narrow output fits 80 columns with one line per comparison and names in
full; ``triad train`` shows progress in a log, ends with a verdict against the documented target, and leaves
a checkpoint that ``triad generate`` can use, saying how."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from equivalence_tests.planted_kernels import PLANTED
from triad.cli import app
from triad.train import default_save_path, verdict
from triad.verify.api import verify_attention


def test_check_piped_is_one_line_per_comparison_in_80_columns(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", "--json", str(tmp_path / "c.json")], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    components = json.loads((tmp_path / "c.json").read_text())["components"]
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    comparisons = [line for line in lines if line.startswith(("  pass", "  FAIL"))]
    assert len(comparisons) == len(components)
    assert {c["name"] for c in components} <= set(lines)  # every component's full name, on a line of its own


def test_verify_piped_is_one_line_per_check_without_a_box() -> None:
    report = verify_attention("native", max_examples=3, seed=0)
    buffer = StringIO()
    report.render(Console(file=buffer, width=80))
    lines = buffer.getvalue().splitlines()
    assert not any(ch in buffer.getvalue() for ch in "│┃━")
    for name in report.lines:
        # the verdict, the numbers, then the name
        own_line = re.compile(rf"^(not reached|\S+) +[-0-9.e+inf ]+  {re.escape(name)}( \(|  |$)")
        assert sum(bool(own_line.match(line)) for line in lines) == 1, name


def test_one_failing_case_is_one_folded_line_of_features_and_verbose_unfolds_it() -> None:
    report = verify_attention(PLANTED["minus_1e9_fill"], max_examples=20, seed=0)
    failing_features = [line.name for line in report.lines.values()
                        if line.verdict == "FAIL" and line.name not in {c.line for c in report.failure.failures()}]
    assert len(failing_features) >= 2, report.summary(verbose=True)
    assert "that row is 0 by convention" in report.summary()  # the expected value is SDPA's contract, said so
    text = {}
    for verbose in (False, True):
        buffer = StringIO()
        report.render(Console(file=buffer, width=80), verbose=verbose)
        text[verbose] = buffer.getvalue()
    folded = [line for line in text[False].splitlines() if "the failing case's" in line]
    assert len(folded) == 1 and all(name in folded[0] for name in failing_features), folded
    assert "also failing on this case" in text[False] and "dv (max error)" not in text[False]
    assert "the failing case's" not in text[True] and "dv (max error)" in text[True]
    for name in failing_features:  # verbose: each on its own line
        assert any(line.endswith(f"  {name}") for line in text[True].splitlines()), name


def test_verdict_names_the_metric_the_target_and_the_outcome() -> None:
    assert verdict("classify", "accuracy", 0.984) == "accuracy 0.984 >= 0.90: met"
    assert verdict("regress", "r_squared", 0.5) == "r squared 0.500 < 0.90: NOT met"


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_train_in_a_log_shows_progress_a_verdict_and_saves_by_default(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "copy", "--steps", "10"])
    assert result.exit_code == 0, result.output
    assert "step 5/10" in result.output and "step 10/10" in result.output  # progress without a terminal
    assert "exact match" in result.output and "(the documented target)" in result.output
    saved = default_save_path("copy", "reference", 0)
    assert (tmp_path / saved).exists()
    assert f"triad generate {saved} --prompt 10101010 --impl reference" in result.output
    generated = CliRunner().invoke(app, ["generate", str(saved), "--prompt", "10101010"])
    assert generated.exit_code == 0, generated.output
