"""``triad verify``: correct kernels pass, every planted bug is caught and shrunk, bad kernels get a verdict."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from typer.testing import CliRunner

import triad
from equivalence_tests.known_failures import report_symptom, xfail_if_known
from equivalence_tests.planted_kernels import PLANTED, correct_attention, textbook_attention
from triad.cli import app
from triad.tolerance import EPS_BY_DTYPE
from triad.verify import KernelSupport, assert_attention_matches_reference, verify_attention
from triad.verify import search as verify_search
from triad.verify.api import check_one_case
from triad.verify.cases import FAMILIES, MASK_KINDS, VerifyCase, verify_cases
from triad.verify.judge import MUTATION_LINE, RAISES_LINE, SHAPE_LINE, rowwise_rule_check
from triad.verify.metamorphic import RELATION_LINES
from triad.verify.report import BAD_KERNEL, FAILED, UNSUPPORTED, VERIFIED

ROOT = Path(__file__).resolve().parents[1]
# Far fewer than the default 200 where a kernel must pass (each passing case costs the whole budget);
# planted bugs run with the default budget, which they stop using at their first failure.
PASSING_EXAMPLES = 40


@pytest.mark.parametrize("kernel", ["native", "scratch", *(pytest.param(name, marks=pytest.mark.slow)
                                                             for name in ("sdpa-math", "sdpa-flash", "reference"))])
def test_cpu_sdpa_backends_and_builtins_are_verified(kernel: str) -> None:
    report = verify_attention(kernel, max_examples=PASSING_EXAMPLES, seed=0)
    assert report.verdict == VERIFIED, report.summary()
    assert report.examples > 0


@pytest.mark.slow
def test_the_default_budget_reaches_every_relation_and_input_family() -> None:
    report = verify_attention("native", seed=0)
    assert report.verdict == VERIFIED, report.summary()
    for line in (*RELATION_LINES.values(), *(f"inputs: {family}" for family in FAMILIES)):
        assert report.lines[line].examples > 0, line


def test_sdpa_flash_declines_cases_it_cannot_run_and_they_show_as_skipped() -> None:
    report = verify_attention("sdpa-flash", max_examples=PASSING_EXAMPLES, seed=0)
    assert report.verdict == VERIFIED
    assert report.skipped > 0  # flash on CPU has no kernel for d_v != d_head
    assert any("No available kernel" in reason for reason in report.declined_reasons)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_every_planted_bug_is_caught_within_the_default_budget_and_shrunk(name: str) -> None:
    report = verify_attention(PLANTED[name], seed=0)
    assert report.verdict == FAILED, f"{name} was not caught: {report.summary()}"
    case = report.failure.case
    assert case.B * case.H * case.Lq * case.Lk <= 2 * 2 * 17 * 17, f"{name}: not shrunk: {case.describe()}"
    assert report.failure.failures()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kernel", [correct_attention, "native"], ids=["correct_attention", "native"])
def test_correct_kernels_raise_no_false_alarm_across_seeds(kernel, seed: int) -> None:
    report = verify_attention(kernel, max_examples=PASSING_EXAMPLES, seed=seed)
    assert report.verdict == VERIFIED, report.summary()


@pytest.mark.parametrize("max_examples", [PASSING_EXAMPLES, pytest.param(200, marks=pytest.mark.slow)])
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_a_textbook_kernel_with_autograd_through_the_row_max_passes(seed: int, max_examples: int) -> None:
    report = verify_attention(textbook_attention, seed=seed, max_examples=max_examples)
    assert report.verdict == VERIFIED, report.summary()


def test_subnormal_roundings_summed_by_a_correct_kernel_are_not_a_false_alarm() -> None:
    # Found in review: through its row max, textbook_attention adds a row's 513 subnormal roundings of dS
    # into one element; dk was 40x the plain kernel's error, which the relative floor alone called a bug.
    case = VerifyCase(B=2, H=1, Lq=1, Lk=513, E=5, Ev=5, mask="bool_per_batch", family="tiny", logit_scale=1.0,
                      scale=None, non_contiguous=False, seed=1)
    outcome = check_one_case(textbook_attention, case)
    assert not outcome.failed, outcome.summary()


def test_the_logit_floor_is_per_row_so_one_row_of_large_logits_excuses_no_other() -> None:
    u, mu = EPS_BY_DTYPE["float32"], 1.0
    expected = np.zeros((1, 1, 2, 3))  # (B, H, L, d)
    actual = expected.copy()
    actual[0, 0, 1, 0] = 100 * u  # 100 ulps off in row 1, whose logits are of size 1
    row_logits = np.array([[[1000.0, 1.0]]])  # (B, H, L): row 0 has logits of 1e3
    check = rowwise_rule_check("out", actual, expected, 0.0, mu, "float32", row_logits, 0.0)
    assert not check.passed and check.bound == pytest.approx(u * (2 + 4 * 1.0))
    assert rowwise_rule_check("out", actual, expected, 0.0, mu, "float32", np.full((1, 1, 2), 1000.0), 0.0).passed


def test_every_mask_kind_is_checked_in_every_run_whatever_the_search_draws() -> None:
    report = verify_attention("native", max_examples=1, seed=0)
    assert report.verdict == VERIFIED, report.summary()
    for mask in MASK_KINDS:
        assert report.lines[f"mask: {mask}"].examples > 0, mask
        assert report.lines[f"mask: {mask}"].verdict == "pass", (mask, report.lines[f"mask: {mask}"].note)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_native_is_verified_in_every_dtype_on_cpu(dtype: str) -> None:
    report = verify_attention("native", dtype=dtype, max_examples=30, seed=0)
    assert report.verdict == VERIFIED, report.summary()


def test_the_written_repro_script_reproduces_the_failure(tmp_path: Path) -> None:
    report = verify_attention(PLANTED["causal_off_by_one"], seed=0)
    script = tmp_path / "repro.py"
    report.write_repro(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert report.failure.case.describe() in run.stdout
    fixed = subprocess.run([sys.executable, str(script), "equivalence_tests.planted_kernels:correct_attention"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_the_repro_script_keeps_the_support_the_caller_passed(tmp_path: Path) -> None:
    # a forward-only kernel verified with supports=(no backward): without the support in the script,
    # the repro would stop at "no gradient flows back" instead of the forward bug that was found
    (tmp_path / "forward_only.py").write_text(
        "import torch\n"
        "from equivalence_tests.planted_kernels import causal_off_by_one\n\n"
        "def attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):\n"
        "    with torch.no_grad():\n"
        "        return causal_off_by_one(q, k, v, attn_mask, dropout_p, is_causal, scale)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    sys.path.insert(0, str(tmp_path))
    try:
        report = verify_attention("forward_only:attention", seed=0, supports=KernelSupport(backward=False))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("forward_only", None)
    assert report.verdict == FAILED, report.summary()
    assert "backward=False" in report.repro_script
    script = tmp_path / "repro.py"
    report.write_repro(script)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "gradients through autograd" not in run.stdout, run.stdout
    assert report.failure.failures()[0].line in run.stdout


def _wrong_shape(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    return correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)[..., :1, :]


def _wrong_dtype(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    return correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale).double()


def _non_tensor(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    return correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale).tolist()


def _raises(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    raise ValueError("shapes not supported by my tiling")


def _exits(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    sys.exit(0)  # would end `triad verify` with status 0, read as "verified", if it escaped


@pytest.mark.parametrize(("kernel", "line", "message"), [
    (_wrong_shape, SHAPE_LINE, "expected shape"),
    (_wrong_dtype, SHAPE_LINE, "expected dtype torch.float32"),
    (_non_tensor, SHAPE_LINE, "returned a list"),
    (_raises, RAISES_LINE, "raised ValueError: shapes not supported"),
    (_exits, RAISES_LINE, "raised SystemExit"),
    (PLANTED["mutates_input"], MUTATION_LINE, "q was modified in place"),
])
def test_a_misbehaving_kernel_gets_a_verdict_not_a_traceback(kernel, line: str, message: str) -> None:
    report = verify_attention(kernel, max_examples=20)
    assert report.verdict == FAILED
    failed = report.failure.failures()
    assert failed[0].line == line and message in failed[0].message, failed[0].describe()


@pytest.mark.parametrize(("kernel", "message"), [
    ("no_such_module_xyz:attention", "cannot import module"),
    ("fastest", "not a built-in kernel"),
    (lambda q, k: q, "expected F.scaled_dot_product_attention's signature"),
])
def test_a_kernel_that_cannot_be_called_is_a_bad_kernel_verdict(kernel, message: str) -> None:
    report = verify_attention(kernel)
    assert report.verdict == BAD_KERNEL and message in report.message
    assert report.exit_code == 2


def test_a_module_that_exits_at_import_is_a_bad_kernel_verdict(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    report = verify_attention("exits_at_import:attention")
    assert report.verdict == BAD_KERNEL and "SystemExit" in report.message


def test_the_cli_finds_a_kernel_module_in_the_working_directory(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_local_kernel.py").write_text("from torch_impl.scratch.attention import "
                                                 "scaled_dot_product_attention as attention\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    result = CliRunner().invoke(app, ["verify", "my_local_kernel:attention", "--max-examples", "3"])
    sys.modules.pop("my_local_kernel", None)
    assert result.exit_code == 0, result.output


def test_the_repro_script_runs_from_elsewhere_and_exits_2_when_the_kernel_cannot_be_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel importable only through the working directory, a repro written into a subfolder, run from there."""
    (tmp_path / "my_wrong_kernel.py").write_text("from equivalence_tests.planted_kernels import wrong_scale\n")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    result = CliRunner().invoke(app, ["verify", "my_wrong_kernel:wrong_scale", "--max-examples", "5",
                                      "--repro", "out/r.py"])
    sys.modules.pop("my_wrong_kernel", None)
    assert result.exit_code == 1 and "reproduce it with: python out/r.py" in result.output, result.output
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # triad itself, not the kernel's folder
    elsewhere = tmp_path / "out"
    run = subprocess.run([sys.executable, "r.py"], capture_output=True, text=True, env=env, cwd=elsewhere)
    assert run.returncode == 1 and "FAILED" in run.stdout, run.stdout + run.stderr
    (tmp_path / "my_wrong_kernel.py").unlink()
    gone = subprocess.run([sys.executable, "r.py"], capture_output=True, text=True, env=env, cwd=elsewhere)
    assert gone.returncode == 2 and "cannot import module 'my_wrong_kernel'" in gone.stderr, gone.stderr


def _raises_on_additive_masks(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    if attn_mask is not None and attn_mask.is_floating_point():
        raise RuntimeError("no additive masks here")
    return correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)


def test_a_kernel_that_raises_is_blamed_on_the_call_that_raised_with_its_arguments() -> None:
    case = VerifyCase(B=1, H=2, Lq=3, Lk=4, E=5, Ev=5, mask="none", family="gaussian", logit_scale=1.0, scale=None,
                      non_contiguous=False, seed=0)
    outcome = check_one_case(_raises_on_additive_masks, case, dtype="float64")
    raised = [c for c in outcome.checks if c.line == RAISES_LINE]
    assert outcome.failed and len(raised) == 1
    message = raised[0].message
    assert "no additive masks here" in message and "made by the relation" in message, message
    assert "attn_mask=(1, 1, 3, 4) float64" in message, message  # the relation's mask; the case has none
    assert "q (1, 2, 3, 5) float64" in message, message


def test_a_feature_whose_cases_failed_before_it_was_checked_is_not_a_pass() -> None:
    report = verify_attention(_raises, max_examples=5)
    assert report.verdict == FAILED
    verdicts = {name: line.verdict for name, line in report.lines.items()}
    assert "pass" not in {verdicts[f"mask: {mask}"] for mask in MASK_KINDS}, verdicts
    assert {verdicts[f"inputs: {family}"] for family in FAMILIES} == {"not reached"}, verdicts
    assert report.lines["mask: none"].unchecked >= 1 and verdicts["dq"] == "not reached"


def _one_key_shortcut(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    if k.shape[-2] == 1 and attn_mask is None and dropout_p == 0.0:
        return v.expand(*q.shape[:-1], v.shape[-1]).clone()  # exact: one key takes all the weight
    return correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)


def test_an_input_the_output_does_not_depend_on_has_a_zero_gradient_not_a_failure() -> None:
    # with one key the output is v whatever q and k are: autograd leaves q.grad and k.grad None
    case = VerifyCase(B=1, H=1, Lq=3, Lk=1, E=4, Ev=4, mask="none", family="gaussian", logit_scale=1.0, scale=None,
                      non_contiguous=False, seed=0)
    outcome = check_one_case(_one_key_shortcut, case)
    assert not outcome.failed, outcome.summary()
    detached_q = check_one_case(lambda q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None:
                                correct_attention(q.detach(), k, v, attn_mask, dropout_p, is_causal, scale),
                                dataclasses.replace(case, Lk=5))
    assert detached_q.failed and any(c.line == "dq" for c in detached_q.failures())  # a wrong zero still fails


def test_the_false_alarm_of_a_lucky_baseline_on_a_long_softmax_sum_is_gone() -> None:
    # Found in review: with 127 keys scratch's dv was 0.75 ulp off and SDPA's 5.2 ulps, over 2x + the floor
    case = VerifyCase(B=1, H=1, Lq=1, Lk=127, E=1, Ev=1, mask="none", family="gaussian", logit_scale=1.0, scale=None,
                      non_contiguous=False, seed=0)
    for kernel in ("native", "sdpa-flash"):
        outcome = check_one_case(kernel, case)
        assert not outcome.failed, outcome.summary()


class _WrongUntilWarm:
    """A stateful bug: wrong for the first calls (say, before an autotuner settles), right afterwards."""

    def __init__(self, wrong_calls: int) -> None:
        self.calls_left = wrong_calls

    def __call__(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
        self.calls_left -= 1
        out = correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)
        return 2.0 * out if self.calls_left >= 0 else out


@pytest.mark.slow
def test_a_failure_that_does_not_reproduce_on_its_own_is_flagged() -> None:
    report = verify_attention(_WrongUntilWarm(wrong_calls=3), seed=0)
    assert report.verdict == FAILED and report.not_reproducible
    assert "passed when checked again" in report.summary() and "passed when checked again" in report.repro_script
    assert json.loads(json.dumps(report.to_json()))["not_reproducible"] is True
    steady = verify_attention(PLANTED["wrong_scale"], seed=0)
    assert steady.verdict == FAILED and not steady.not_reproducible and "checked again" not in steady.summary()


def test_shrinking_stops_at_its_time_cap_and_the_report_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(verify_search.SHRINK_SECONDS["sdpa"], "cpu", 0.0)  # spent as soon as the first failure is seen
    capped = verify_attention(PLANTED["wrong_scale"], seed=0)
    assert capped.verdict == FAILED and capped.shrink_capped and capped.failure is not None
    assert "time cap" in capped.summary() and json.loads(json.dumps(capped.to_json()))["shrink_capped"] is True
    monkeypatch.setitem(verify_search.SHRINK_SECONDS["sdpa"], "cpu", 120.0)
    shrunk = verify_attention(PLANTED["wrong_scale"], seed=0)
    assert not shrunk.shrink_capped and "time cap" not in shrunk.summary()


def test_bad_dtype_device_or_budget_are_reported_as_unsupported() -> None:
    for kwargs, message in (({"dtype": "float8"}, "dtype: expected one of"),
                            ({"device": "tpu"}, "device: expected one of"),
                            ({"max_examples": 0}, "max_examples: expected a positive int")):
        report = verify_attention("native", **kwargs)
        assert report.verdict == UNSUPPORTED and message in report.message


def test_declared_support_is_respected_and_the_rest_reported_skipped() -> None:
    def causal_only(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
        if attn_mask is not None:
            raise AssertionError("the verifier passed a mask the kernel declared unsupported")
        return correct_attention(q, k, v, None, dropout_p, is_causal, scale)

    causal_only.triad_support = KernelSupport(masks=("is_causal",), fully_masked_rows=False)
    report = verify_attention(causal_only, max_examples=40)
    assert report.verdict == VERIFIED, report.summary()
    for mask in ("bool_shared", "additive", "fully_masked_rows", "single_key", "key_padding", "alibi"):
        assert report.lines[f"mask: {mask}"].verdict == "skipped"
    for mask in ("none", "is_causal"):  # drawn: no note saying they are not
        assert report.lines[f"mask: {mask}"].examples > 0 and not report.lines[f"mask: {mask}"].note, mask
    assert verify_attention("reference", dtype="float16").verdict == UNSUPPORTED  # declared float32/float64 only


def test_a_kernel_declining_cases_at_run_time_is_skipped_not_failed() -> None:
    def no_long_keys(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
        if k.shape[-2] > 16:
            raise NotImplementedError("Lk > 16")
        return correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)

    report = verify_attention(no_long_keys, max_examples=40)
    assert report.verdict == VERIFIED and report.skipped > 0
    everything_declined = verify_attention(lambda q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False,
                                           scale=None: (_ for _ in ()).throw(NotImplementedError("no")),
                                           max_examples=5)
    assert everything_declined.verdict == UNSUPPORTED


def test_non_determinism_is_reported_as_a_warning() -> None:
    def noisy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
        out = correct_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)
        return out + out.detach() * torch.finfo(out.dtype).eps * torch.randint(0, 2, out.shape, dtype=out.dtype)

    report = verify_attention(noisy, max_examples=30)
    assert report.lines["repeated runs agree"].verdict == "warn", report.summary()


def test_pytest_helper_passes_a_correct_kernel_and_fails_with_the_repro_script() -> None:
    assert triad.assert_attention_matches_reference is assert_attention_matches_reference  # lazy re-export
    assert triad.verify_attention is verify_attention
    assert assert_attention_matches_reference(correct_attention, max_examples=20).passed
    with pytest.raises(AssertionError, match="minimal failing case") as failure:
        assert_attention_matches_reference(PLANTED["wrong_scale"])
    assert "CASE = VerifyCase(" in str(failure.value)


def test_import_triad_does_not_import_the_verifier() -> None:
    code = "import sys, triad; assert 'triad.verify' not in sys.modules and 'hypothesis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_cli_exit_codes_json_and_repro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", "native", "--max-examples", "10", "--json", str(tmp_path / "ok.json")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "ok.json").read_text())["verdict"] == VERIFIED
    bad = runner.invoke(app, ["verify", "equivalence_tests.planted_kernels:wrong_scale", "--repro",
                              str(tmp_path / "repro.py")])
    assert bad.exit_code == 1, bad.output
    assert "CASE = VerifyCase(" in (tmp_path / "repro.py").read_text()
    unasked = runner.invoke(app, ["verify", "equivalence_tests.planted_kernels:wrong_scale", "--max-examples", "5"])
    printed = Path(unasked.output.rsplit("reproduce it with: python ", 1)[1].split()[0])
    assert unasked.exit_code == 1 and printed.is_file() and printed.parent.name.startswith("triad-verify-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.json", "repro.py"]  # nothing else in the cwd
    assert runner.invoke(app, ["verify", "no_such_module_xyz:f"]).exit_code == 2
    assert runner.invoke(app, ["verify", "native", "--dtype", "int8"]).exit_code == 2
    if not torch.cuda.is_available():
        assert runner.invoke(app, ["verify", "native", "--device", "cuda"]).exit_code == 2


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("backend", ["sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math"])
def test_sdpa_backends_on_cuda_are_verified(backend: str, dtype: str) -> None:
    report = verify_attention(backend, device="cuda", dtype=dtype, max_examples=100, seed=0)
    if report.verdict == FAILED:
        xfail_if_known(report_symptom(backend, report), report.summary())
    # a backend that runs no case at all in this dtype (e.g. flash in float32) is unsupported, not failed
    assert report.verdict in (VERIFIED, UNSUPPORTED), report.summary()
    if dtype != "float32" and backend != "sdpa-cudnn":
        assert report.verdict == VERIFIED, report.summary()


@given(case=verify_cases(KernelSupport(max_length=33), "float32"))
def test_a_declared_max_length_bounds_the_lengths_drawn(case: VerifyCase) -> None:
    assert max(case.Lq, case.Lk) <= 33


def test_a_max_length_shorter_than_a_tail_tile_is_refused() -> None:
    with pytest.raises(ValueError, match="max_length: expected None or at least 17"):
        KernelSupport(max_length=16)
