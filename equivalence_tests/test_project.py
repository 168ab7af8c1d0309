"""The project's promises about itself: the README's commands, CI, the NumPy-only reference."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_the_two_commands() -> None:
    first, second = readme_commands()[:2]
    assert first.endswith("triad check")
    assert second.endswith("pytest")
    assert (ROOT / "README.md").read_text().index(first) < 200, "the commands open the README"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_reference_imports_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import reference, reference.attention"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_triad_check_exits_zero_and_writes_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    result = subprocess.run([sys.executable, "-m", "triad", "check", "--json", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(out.read_text())
    assert payload["passed"] is True
    assert {"attention"} <= {c["name"] for c in payload["components"]}
    for component in payload["components"]:
        assert {"name", "dtype", "max_rel_err_out", "max_rel_err_grad", "bound", "passed"} <= set(component)
        assert component["dtype"] != "float64" or component["max_rel_err_out"] <= 1e-10


def test_triad_check_exits_one_when_a_component_fails(monkeypatch) -> None:
    from typer.testing import CliRunner

    import triad.agreement
    from triad.agreement.base import ComponentResult
    from triad.cli import app

    def broken() -> list[ComponentResult]:
        return [ComponentResult("broken", "scratch vs reference", "float64", 1e-3, {"dx": 0.0}, 1e-10)]

    monkeypatch.setattr(triad.agreement, "COMPONENT_CHECKS", [broken])
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 1
    assert "FAIL" in result.output


LAYERS = ("reference", "torch_impl", "triad")  # bottom to top: each may import only those before it


def test_no_package_imports_from_a_package_above_it() -> None:
    """reference (NumPy) <- torch_impl (scratch, native, registries) <- triad (the commands); never upwards."""
    root = Path(__file__).resolve().parent.parent
    upward = []
    for level, package in enumerate(LAYERS):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                upward += [f"{path.relative_to(root)} imports {name}" for name in names
                           if name.split(".")[0] in LAYERS[level + 1:]]
    assert not upward, "\n".join(upward)
