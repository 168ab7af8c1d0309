"""``triad verify --interface flash|varlen``: the interfaces, correct kernels pass, planted bugs are caught with
the right diagnosis, the buggy reference without a bug is the reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from equivalence_tests.planted_flash_kernels import CORRECT_FLASH, PLANTED_FLASH
from torch_impl.flash_kernels import FLASH_BUILTINS
from triad.cli import app
from triad.verify import KernelSupport, verify_attention
from triad.verify.diagnoses import DIAGNOSES, Bug, buggy_attention, diagnose
from triad.verify.flash_api import check_flash_case
from triad.verify.flash_cases import flash_coverage_cases
from triad.verify.flash_judge import infer_interface, reference_forward
from triad.verify.report import BAD_KERNEL, FAILED, UNSUPPORTED, VERIFIED

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 4  # beyond the ~30 coverage cases every run checks first


def test_interface_is_inferred_from_the_parameter_names() -> None:
    assert infer_interface(FLASH_BUILTINS["flash"]["scratch"]) == "flash"
    assert infer_interface(FLASH_BUILTINS["varlen"]["scratch"]) == "varlen"
    assert infer_interface(lambda q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None: q) == "sdpa"
    report = verify_attention(CORRECT_FLASH["flash_online_16"][1], max_examples=1)
    assert report.interface == "flash" and report.interface_inferred, report.summary()
    assert "flash interface inferred from its signature" in report.summary()


def test_bad_interface_and_builtin_without_it_are_refused() -> None:
    assert verify_attention("scratch", interface="paged").verdict == UNSUPPORTED
    report = verify_attention("sdpa-math", interface="flash")
    assert report.verdict == BAD_KERNEL and "no flash interface" in report.message
    report = verify_attention(lambda q, k, v: q, interface="varlen")
    assert report.verdict == BAD_KERNEL and "cu_seqlens_q" in report.message


@pytest.mark.parametrize("interface", ["flash", "varlen"])
@pytest.mark.parametrize("builtin", ["reference", "scratch"])
def test_builtins_verified(builtin: str, interface: str) -> None:
    report = verify_attention(builtin, interface=interface, max_examples=EXAMPLES)
    assert report.verdict == VERIFIED, report.summary()
    assert report.lines["lse"].examples > 0 and report.lines["dk"].examples > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", list(CORRECT_FLASH))
def test_correct_styles_have_no_false_alarm(name: str, seed: int, dtype: str) -> None:
    interface, kernel = CORRECT_FLASH[name]
    report = verify_attention(kernel, interface=interface, max_examples=EXAMPLES, seed=seed, dtype=dtype)
    assert report.verdict == VERIFIED, report.summary()


def _expected_diagnosis(key: str) -> str:
    if key == "float32":
        return "softmax computed in float32"
    return DIAGNOSES[key][0] if key else ""


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", list(PLANTED_FLASH))
def test_planted_caught_with_the_right_diagnosis(name: str, seed: int) -> None:
    interface, kernel, key = PLANTED_FLASH[name]
    dtype = "float64" if key == "float32" else "float32"
    report = verify_attention(kernel, interface=interface, max_examples=40, seed=seed, dtype=dtype)
    assert report.verdict == FAILED, f"{name} was not caught: {report.summary()}"
    diagnosis = report.failure.diagnosis
    expected = _expected_diagnosis(key)
    assert (diagnosis.startswith(expected) if expected else diagnosis == ""), report.summary()
    assert (f"diagnosis: {diagnosis}" in report.summary()) == bool(diagnosis)


@pytest.mark.parametrize("interface", ["flash", "varlen"])
def test_buggy_reference_without_a_bug_is_the_reference(interface: str) -> None:
    for _, case in flash_coverage_cases(KernelSupport(), interface):
        arrays = case.arrays("float64")
        out, lse, _ = reference_forward(case, arrays)
        mine = buggy_attention(case, arrays, Bug())
        np.testing.assert_allclose(mine["out"], out, rtol=0, atol=1e-12, err_msg=case.describe())
        np.testing.assert_array_equal(np.isneginf(mine["lse"]), np.isneginf(lse))
        finite = np.isfinite(lse)
        np.testing.assert_allclose(mine["lse"][finite], lse[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("interface", ["flash", "varlen"])
def test_a_diagnosis_that_does_not_fit_says_nothing(interface: str) -> None:
    """A float64 kernel failing on its LSE alone, whose output is computed in the same steps as a buggy
    variant's (so it equals it bit for bit where the bug changes nothing): no output bug may be named."""
    for _, case in flash_coverage_cases(KernelSupport(), interface)[:12]:
        arrays = case.arrays("float64")
        out, lse, _ = reference_forward(case, arrays)
        actual = {"out": buggy_attention(case, arrays, Bug(fill="mean"))["out"],
                  "lse": np.where(np.isfinite(lse), lse + 1e-3, lse)}
        assert diagnose(case, arrays, actual, {"out": out, "lse": lse}, "float64", {"lse"}) == "", case.describe()


def test_a_feature_whose_case_raised_before_it_was_checked_is_not_a_pass() -> None:
    scratch = FLASH_BUILTINS["flash"]["scratch"]

    def raises_when_causal(q, k, v, softmax_scale=None, causal=False):  # type: ignore[no-untyped-def]
        if causal:
            raise RuntimeError("planted: causal calls fail")
        return scratch(q, k, v, softmax_scale=softmax_scale)

    report = verify_attention(raises_when_causal, interface="flash", max_examples=EXAMPLES)
    assert report.verdict == FAILED and report.failure.case.causal, report.summary()
    causal = report.lines["causal (bottom-right)"]
    assert causal.verdict != "pass" and causal.unchecked >= 1, causal


def test_a_kernel_without_a_keyword_is_not_asked_for_its_feature() -> None:
    scratch = FLASH_BUILTINS["flash"]["scratch"]

    def plain(q, k, v, softmax_scale=None, causal=False):  # type: ignore[no-untyped-def]
        return scratch(q, k, v, softmax_scale=softmax_scale, causal=causal)

    report = verify_attention(plain, max_examples=EXAMPLES)
    assert report.verdict == VERIFIED and report.interface == "flash", report.summary()
    assert report.lines["softcap"].examples == 0 and report.lines["window: 0"].examples == 0
    assert report.lines["lse"].examples == 0


def test_a_declined_case_is_skipped_not_failed() -> None:
    scratch = FLASH_BUILTINS["flash"]["scratch"]

    def no_alibi(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,  # type: ignore
                 alibi_slopes=None, return_attn_probs=False):
        if alibi_slopes is not None:
            raise NotImplementedError("no ALiBi")
        return scratch(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                       softcap=softcap, return_attn_probs=return_attn_probs)

    report = verify_attention(no_alibi, max_examples=EXAMPLES)
    assert report.verdict == VERIFIED and report.skipped > 0, report.summary()


def test_relations_run_and_the_repro_script_replays(tmp_path: Path) -> None:
    interface, kernel, _ = PLANTED_FLASH["flash_gqa_modulo"]
    case = dict(flash_coverage_cases(KernelSupport(), "flash"))["GQA H/Hkv = 2"]
    correct = check_flash_case(FLASH_BUILTINS["flash"]["reference"], case)
    assert not correct.failed and any(c.line.startswith("relation: GQA") for c in correct.checks)
    report = verify_attention(kernel, interface=interface, max_examples=EXAMPLES)
    script = tmp_path / "repro.py"
    report.write_repro(script)
    run = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1 and "FAILED" in run.stdout, run.stdout + run.stderr


def test_cli_interface_option() -> None:
    result = CliRunner().invoke(app, ["verify", "reference", "--interface", "varlen", "--max-examples", "2"])
    assert result.exit_code == 0, result.output
    assert "varlen interface as given" in " ".join(result.output.split())
