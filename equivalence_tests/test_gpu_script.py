"""``benchmarks/gpu/run.sh --dry-run``: the GPU run's plan, on the CPU, in seconds.

The run is prepared before any GPU is lent, so its every stage must start and write its output here:
the machine and its ceilings, ``pytest -m gpu``, ``triad verify`` on each wanted kernel the registry has,
``triad bench`` with its JSON and PNG, and the summary. One dry run, with a stand-in ``python`` that
makes one verify stage hang and another crash, also shows that a stage that fails or times out does
not stop the others.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"
FILES = {"summary.txt", "logs.txt", "machine.json", "verify.json", "bench.json", "bench.png"}
# The stand-in python: verify sdpa-efficient hangs (times out at VERIFY_S), verify sdpa-cudnn crashes.
STAND_IN = """#!/usr/bin/env bash
case "$*" in
  *"triad verify sdpa-efficient"*) sleep 600 ;;
  *"triad verify sdpa-cudnn"*) echo "planted crash" >&2; exit 3 ;;
esac
exec {python} "$@"
"""


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("gpu_run")
    python = tmp / "python"
    python.write_text(STAND_IN.format(python=sys.executable))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PYTHON": str(python), "VERIFY_S": "35"}
    result = subprocess.run([str(SCRIPT), str(tmp / "out"), "--dry-run"], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = (tmp / "out" / "summary.txt").read_text()
    stages = {}
    for line in summary.splitlines()[2:]:
        name, status_and_rest = line.split(maxsplit=1)
        status = "timed out" if status_and_rest.startswith("timed out") else status_and_rest.split()[0]
        stages[name] = {"status": status, "line": line}
    return tmp / "out", result.stdout, stages


def test_dry_run_writes_a_handful_of_small_files(dry_run) -> None:  # type: ignore[no-untyped-def]
    out, stdout, _ = dry_run
    assert {p.name for p in out.iterdir()} == FILES  # the stages' own files were merged and removed
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.txt").read_text() in stdout  # the run ends with the table


def test_every_stage_started_and_wrote_its_output(dry_run) -> None:  # type: ignore[no-untyped-def]
    out, _, stages = dry_run
    for name in ("env", "peaks", "pytest", "bench", "verify-sdpa-flash-bfloat16"):
        assert stages[name]["status"] == "ok", stages[name]["line"]
    logs = (out / "logs.txt").read_text()
    for name in stages:
        if stages[name]["status"] != "skipped":
            assert f"===== {name} =====" in logs
    assert "device: " in logs and "kernel sdpa-flash: present" in logs  # what the env stage printed
    machine = json.loads((out / "machine.json").read_text())
    assert {(m["dtype"], m["tf32"]) for m in machine["peaks"]["matmul"]} == {
        ("bfloat16", False), ("float16", False), ("float32", False), ("float32", True)}
    assert machine["peaks"]["copy"]["gb_per_s"] > 0 and machine["env"]["torch"]
    bench = json.loads((out / "bench.json").read_text())
    assert bench["header"]["preset"] == "smoke" and bench["non_finite"] == [] and bench["rows"]
    verify = json.loads((out / "verify.json").read_text())
    flash = next(r for r in verify["runs"] if r["stage"] == "verify-sdpa-flash-bfloat16")
    assert flash["report"]["verdict"] == "verified"


def test_a_failing_or_hanging_stage_does_not_stop_the_others(dry_run) -> None:  # type: ignore[no-untyped-def]
    _, _, stages = dry_run
    assert stages["verify-sdpa-efficient-bfloat16"]["status"] == "timed out"
    assert stages["verify-sdpa-cudnn-bfloat16"]["status"] == "failed"
    assert "exit 3" in stages["verify-sdpa-cudnn-bfloat16"]["line"]
    assert stages["bench"]["status"] == "ok"  # the stage after them ran


def test_wanted_kernels_missing_from_the_registry_are_named_not_dropped(dry_run) -> None:  # type: ignore[no-untyped-def]
    out, _, stages = dry_run
    wanted = json.loads((out / "machine.json").read_text())["env"]["kernels"]["wanted"]
    assert set(wanted) == {"triton", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "flex", "native/flash", "flex/flash"}
    assert wanted["native/flash"] == "present"  # FlashAttention's interface, staged as verify-native-flash-DTYPE
    for kernel, state in wanted.items():
        kernel = kernel.replace("/", "-")
        if state == "present":
            assert f"verify-{kernel}-bfloat16" in stages
        else:
            assert stages[f"verify-{kernel}"]["status"] == "skipped"
            assert "not in the registry" in stages[f"verify-{kernel}"]["line"]


def test_bad_arguments_are_a_usage_error() -> None:
    for args in ([], ["out", "--wet-run"], ["a", "b", "c"]):
        result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 2 and "usage:" in result.stderr
