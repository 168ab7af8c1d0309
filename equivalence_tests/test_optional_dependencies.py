"""The suite needs only what the GPU machine has: optional test dependencies skip their tests, never collection.

The GPU machine (torch, pytest, hypothesis, rich, typer, matplotlib; no project install, no network) has no
``jsonschema``, ``mkdocs`` or ``griffe``. A module-level import of one of them would stop ``pytest -m gpu`` at
collection and run none of the GPU tests. Here they are hidden by stand-in packages, first on ``PYTHONPATH``,
whose import raises ``ModuleNotFoundError`` as a missing package's does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("jsonschema", "mkdocs", "griffe")
# One test per optional package, each of which needs it (they must skip, not error).
NEEDS_OPTIONAL = ("test_bench.py::test_schema_is_a_valid_json_schema",
                  "test_docs.py::test_rst_maths_becomes_arithmatex_maths",
                  "test_docs_browser.py::test_mkdocs_build_strict_succeeds")


def _pytest_without_optional(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    shim = tmp_path / "hidden"
    for name in OPTIONAL:
        (shim / name).mkdir(parents=True, exist_ok=True)
        (shim / name / "__init__.py").write_text(f"raise ModuleNotFoundError('{name} is hidden', name='{name}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def test_suite_collects_and_optional_tests_skip_without_jsonschema_mkdocs_griffe(tmp_path: Path) -> None:
    hidden = _pytest_without_optional(tmp_path, "-q", "-rs", "--run-slow",  # the browser test is slow-marked
                                      *(f"equivalence_tests/{t}" for t in NEEDS_OPTIONAL))
    assert hidden.returncode == 0, hidden.stdout + hidden.stderr
    assert f"{len(NEEDS_OPTIONAL)} skipped" in hidden.stdout, hidden.stdout
    for name in OPTIONAL:
        assert f"{name} is hidden" in hidden.stdout, hidden.stdout
    collected = _pytest_without_optional(tmp_path, "--collect-only", "-q", "equivalence_tests", "benchmarks")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "error" not in collected.stdout.splitlines()[-1].lower(), collected.stdout[-3000:]
