"""``triad bench``: the report's schema, the FLOP convention, and every way a case can end as a result.

Tests never assert a time: they check what is counted, recorded and flagged.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_sdpa
from triad.bench import (
    Case,
    DeviceGrid,
    Grid,
    Shape,
    attention_flops,
    load_schema,
    matmul_flops,
    preset,
    run_case,
    run_grid,
    write_json,
    write_plot,
)
from triad.bench.measure import Timing, peak_memory_bytes, time_rounds
from triad.bench.runner import Row, add_speedups, reference_over_scratch, set_matmul_peak
from triad.cli import app
from triad.verify.support import KernelSupport

F32 = ("float32",)
TINY_KERNELS = ("reference", "scratch", "sdpa-efficient", "sdpa-cudnn")


def tiny_grid(kernels: tuple[str, ...] = TINY_KERNELS, budget_s: float = 60.0) -> Grid:
    cpu = DeviceGrid("cpu", ("float32",), (8,), (8, 16), tokens=16, width=16, matmul_sizes=(8, 16),
                     budget_s=budget_s)
    return Grid("quick", kernels, (cpu,), causal=(False, True), rounds=25, warmup=1)


@pytest.fixture(scope="module")
def tiny_report() -> dict:
    return run_grid(tiny_grid())


def jsonschema() -> types.ModuleType:
    """The optional ``jsonschema`` package (a dev extra, absent on the GPU machine): its tests skip without it."""
    return pytest.importorskip("jsonschema")


def validate(report: dict) -> None:
    jsonschema().Draft202012Validator(load_schema()).validate(report)


def tiny_case(kernel: str = "user", device: str = "cpu", dtype: str = "float32", causal: bool = False,
              L: int = 8, d_head: int = 4) -> Case:
    return Case(kernel, device, dtype, Shape(B=2, H=2, L=L, d_head=d_head), causal)


# The report ----------------------------------------------------------------------------------------------


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema().Draft202012Validator.check_schema(load_schema())


def test_real_run_json_validates_against_schema(tiny_report: dict, tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    write_json(tiny_report, path)
    validate(json.loads(path.read_text()))
    assert {r["status"] for r in tiny_report["rows"]} == {"ok", "unsupported"}
    assert len(tiny_report["rows"]) == len(TINY_KERNELS) * 2 * 2 * 3  # kernels x lengths x causal x modes


@pytest.mark.parametrize("breakage", ["missing header field", "ok row without a time", "unknown status",
                                      "too few rounds", "extra row field"])
def test_schema_rejects_a_broken_report(tiny_report: dict, breakage: str) -> None:
    report = copy.deepcopy(tiny_report)
    ok_row = next(r for r in report["rows"] if r["status"] == "ok")
    if breakage == "missing header field":
        del report["header"]["torch_threads"]
    elif breakage == "ok row without a time":
        ok_row["median_ms"] = None
    elif breakage == "unknown status":
        ok_row["status"] = "fast"
    elif breakage == "too few rounds":
        ok_row["rounds"] = 3
    else:
        ok_row["speed"] = 1.0
    with pytest.raises(jsonschema().ValidationError):
        validate(report)


def test_ok_rows_carry_every_measurement(tiny_report: dict) -> None:
    ok = [r for r in tiny_report["rows"] if r["status"] == "ok"]
    assert {r["kernel"] for r in ok} == {"reference", "scratch"}
    for r in ok:
        assert r["rounds"] >= 25
        assert r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
        assert r["tflops"] == pytest.approx(r["flops"] / (r["median_ms"] * 1e-3) / 1e12)
        assert r["peak_share"] == pytest.approx(r["tflops"] / r["matmul_peak_tflops"])
        assert r["check_err"] <= r["check_bound"]
    peaks = tiny_report["matmul_peaks"]
    assert [(p["device"], p["dtype"]) for p in peaks] == [("cpu", "float32")] and peaks[0]["n"] in (8, 16)


def test_sdpa_efficient_and_cudnn_on_cpu_are_unsupported_not_crashes(tiny_report: dict) -> None:
    rows = [r for r in tiny_report["rows"] if r["kernel"] in ("sdpa-efficient", "sdpa-cudnn")]
    assert rows and all(r["status"] == "unsupported" and r["median_ms"] is None and r["message"] for r in rows)


def test_reference_over_scratch_ratio_is_reported_for_every_cpu_pair(tiny_report: dict) -> None:
    ratios = tiny_report["reference_over_scratch"]
    assert len(ratios) == 2 * 2 * 3  # lengths x causal x modes
    by_key = {(r["kernel"], r["Lq"], r["causal"], r["mode"]): r["median_ms"] for r in tiny_report["rows"]}
    for x in ratios:
        expected = by_key[("reference", x["L"], x["causal"], x["mode"])] / by_key[("scratch", x["L"], x["causal"],
                                                                                     x["mode"])]
        assert x["ratio"] == pytest.approx(expected)


def test_plot_is_written_as_png(tiny_report: dict, tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    write_plot(tiny_report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# FLOPs -----------------------------------------------------------------------------------------------------


def test_attention_flops_match_hand_counts() -> None:
    # B=2, H=3, Lq=5, Lk=7, d=4: S = QK^T and O = PV are each 5*7*4 multiply-adds per head, 2 FLOPs each.
    per_head = 2 * (2 * 5 * 7 * 4)
    forward = 2 * 3 * per_head
    assert attention_flops(2, 3, 5, 7, 4, causal=False, mode="fwd") == forward == 3360
    assert attention_flops(2, 3, 5, 7, 4, causal=True, mode="fwd") == forward / 2
    assert attention_flops(2, 3, 5, 7, 4, causal=False, mode="bwd") == 2.5 * forward
    assert attention_flops(2, 3, 5, 7, 4, causal=True, mode="fwd+bwd") == 3.5 * forward / 2
    assert matmul_flops(3) == 2 * 27


def test_forward_flops_equal_torchs_count_of_the_scratch_forward() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4)
    with FlopCounterMode(display=False) as counter:
        scratch_sdpa(q, k, v)
    assert counter.get_total_flops() == attention_flops(2, 3, 5, 7, 4, causal=False, mode="fwd")


@pytest.mark.parametrize(("args", "match"), [((0, 1, 1, 1, 1, False, "fwd"), "B: expected a positive int"),
                                             ((1, 1, 1, 1, 2.0, False, "fwd"), "d_head: expected a positive int"),
                                             ((1, 1, 1, 1, 1, False, "forward"), "mode: expected one of")])
def test_attention_flops_rejects_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        attention_flops(*args)


# Every way a case ends -------------------------------------------------------------------------------------


def run_user_kernel(kernel, case: Case | None = None, matmul_peak: float | None = 1.0) -> list[Row]:
    rows = run_case(kernel, case or tiny_case(), tiny_grid(), seed=0)
    for row in rows:
        set_matmul_peak(row, matmul_peak)
    return rows


def test_out_of_memory_is_recorded_as_a_result() -> None:
    def oom_kernel(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    rows = run_user_kernel(oom_kernel)
    assert [r.status for r in rows] == ["oom"] * 3 and all(r.median_ms is None for r in rows)


def test_out_of_memory_in_backward_only_spares_the_forward() -> None:
    class OomBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            raise MemoryError("host out of memory")

    def kernel(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        return OomBackward.apply(scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale))

    rows = {r.mode: r.status for r in run_user_kernel(kernel)}
    assert rows == {"fwd": "ok", "bwd": "oom", "fwd+bwd": "oom"}


def test_wrong_kernel_is_reported_not_timed() -> None:
    def off_by_one_percent(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        return 1.01 * scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale)

    rows = run_user_kernel(off_by_one_percent)
    assert all(r.status == "wrong" and r.median_ms is None and r.rounds == 0 for r in rows)
    assert all(r.check_err > r.check_bound for r in rows)


def test_a_kernel_wrong_only_in_the_last_batch_element_and_head_is_caught() -> None:
    def last_head_zeroed(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        out = scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale).clone()
        out[-1, -1] = 0.0
        return out

    assert {r.status for r in run_user_kernel(last_head_zeroed)} == {"wrong"}


def test_causal_flag_ignored_is_caught_by_the_check() -> None:
    def never_causal(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        return scratch_sdpa(q, k, v, attn_mask, dropout_p, False, scale)

    assert {r.status for r in run_user_kernel(never_causal, tiny_case(causal=True))} == {"wrong"}
    assert {r.status for r in run_user_kernel(never_causal, tiny_case(causal=False))} == {"ok"}


@pytest.mark.parametrize(("exc", "status"), [(NotImplementedError(), "unsupported"),
                                             (RuntimeError("No available kernel. Aborting execution."), "unsupported"),
                                             (ValueError("boom"), "error")])
def test_kernel_exceptions_become_statuses(exc: Exception, status: str) -> None:
    def raising(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        raise exc

    rows = run_user_kernel(raising)
    assert [r.status for r in rows] == [status] * 3
    assert all(type(exc).__name__ in r.message for r in rows)


def test_reference_on_cuda_is_unsupported_without_touching_cuda() -> None:
    from torch_impl.kernels import resolve_kernel

    rows = run_user_kernel(resolve_kernel("reference"), tiny_case("reference", device="cuda"))
    assert [r.status for r in rows] == ["unsupported"] * 3 and "devices" in rows[0].message


def test_tflops_above_the_matmul_peak_is_flagged() -> None:
    above = run_user_kernel(scratch_sdpa, matmul_peak=1e-15)
    below = run_user_kernel(scratch_sdpa, matmul_peak=1e6)
    assert all(r.status == "ok" and r.above_peak for r in above)
    assert all(r.status == "ok" and not r.above_peak for r in below)


def test_a_spent_time_budget_skips_cases_instead_of_running_them(tmp_path: Path) -> None:
    report = run_grid(tiny_grid(kernels=("scratch",), budget_s=0.0))
    assert {r["status"] for r in report["rows"]} == {"skipped"}
    validate(report)
    write_plot(report, tmp_path / "nothing_timed.png")  # a report with no ok row still plots


def test_speedup_pairs_the_same_work_on_cpu_and_cuda() -> None:
    def row(device: str, ms: float, L: int = 8) -> Row:
        return Row("scratch", device, "float32", 1, 1, L, L, 8, False, "fwd", "ok", median_ms=ms)

    rows = [row("cpu", 10.0), row("cuda", 2.0), row("cuda", 1.0, L=16)]
    add_speedups(rows)
    assert [r.speedup_over_cpu for r in rows] == [None, 5.0, None]
    assert reference_over_scratch(rows) == []


# Timing and memory ----------------------------------------------------------------------------------------


def test_time_rounds_runs_setup_outside_each_timed_call() -> None:
    calls: list[str] = []
    timing = time_rounds(lambda: calls.append("fn"), "cpu", rounds=25, warmup=2, setup=lambda: calls.append("setup"))
    assert calls == ["setup", "fn"] * 27
    assert timing.rounds == 25 and timing.min_ms <= timing.p20_ms <= timing.median_ms <= timing.p80_ms


def test_timing_needs_samples() -> None:
    with pytest.raises(ValueError, match="samples_ms: expected at least one"):
        Timing.from_samples([])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_cpu_peak_memory_sees_a_torch_allocation() -> None:
    size = 64 * 2**20
    peak = peak_memory_bytes(lambda: torch.ones(size // 4, dtype=torch.float32), "cpu")  # 64 MiB, touched
    assert peak is not None and 0.9 * size <= peak <= 2 * size


# The grid and the command ---------------------------------------------------------------------------------


def test_full_grid_gives_the_gpu_the_cpu_shapes_for_the_speedup() -> None:
    grid = preset("full", cuda=True)
    cases = grid.cases()
    cpu = {(c.kernel, c.dtype, c.shape, c.causal) for c in cases if c.device == "cpu" and c.dtype == "float32"}
    cuda = {(c.kernel, c.dtype, c.shape, c.causal) for c in cases if c.device == "cuda"}
    assert cpu and cpu <= cuda
    assert {c.shape.L for c in cases if c.device == "cuda"} == {2**i for i in range(7, 15)}
    assert {c.shape.B * c.shape.L for c in cases if c.device == "cuda" and c.dtype == "bfloat16"} == {16384}
    assert all(c.device == "cpu" for c in preset("quick").cases())


@pytest.mark.parametrize(("make", "match"), [
    (lambda: DeviceGrid("cpu", F32, (8,), (3,), 16, 16, (16,), 1.0), "lengths: expected divisors of tokens=16"),
    (lambda: DeviceGrid("cpu", F32, (5,), (8,), 16, 16, (16,), 1.0), "head_dims: expected divisors of width=16"),
    (lambda: DeviceGrid("tpu", F32, (8,), (8,), 16, 16, (16,), 1.0), "device: expected 'cpu' or 'cuda'"),
    (lambda: Grid("quick", ("scratch",), (), rounds=10), "rounds: expected at least 25"),
    (lambda: Grid("quick", ("scratch",), (), modes=("fwd", "backward")), "modes: expected a subset"),
    (lambda: preset("medium"), "preset: expected one of"),
])
def test_bad_grid_arguments_are_rejected(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bench_command_rejects_an_unknown_kernel() -> None:
    result = CliRunner().invoke(app, ["bench", "--kernel", "no_such_kernel"])
    assert result.exit_code == 2
    assert "no_such_kernel" in result.output



def _badly_declared(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    return scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale)


_badly_declared.triad_support = {"dtypes": ("float32",)}  # a dict, not a KernelSupport


def test_a_malformed_support_declaration_is_an_error_row_and_a_usage_error() -> None:
    rows = run_user_kernel(_badly_declared)
    assert [r.status for r in rows] == ["error"] * 3
    assert all("triad_support: expected a KernelSupport" in r.message for r in rows)
    result = CliRunner().invoke(app, ["bench", "--kernel", f"{__name__}:_badly_declared"])
    assert result.exit_code == 2
    assert "triad_support" in result.output


@pytest.mark.parametrize("kernels", [(), ("native", "reference")])
def test_the_pytest_benchmark_suite_runs_the_cases_of_triad_bench(kernels: tuple[str, ...]) -> None:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "pytest", "benchmarks", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += [arg for name in kernels for arg in ("--bench-kernel", name)]
    listing = subprocess.run(command, capture_output=True, text=True, cwd=root, check=True).stdout
    collected = [line.split("[", 1)[1].rstrip("]") for line in listing.splitlines() if "::test_attention[" in line]
    grid = preset("quick", kernels or None, cuda=torch.cuda.is_available())
    expected = [f"{c.kernel}-{c.device}-{c.dtype}-{c.shape.label()}-{'causal' if c.causal else 'full'}-{mode}"
                for c in grid.cases() for mode in grid.modes]
    assert collected == expected  # in this order: a case's modes in a row, sharing its checked inputs


def _fwd_only_to_64(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    if q.shape[-1] > 64:
        raise ValueError("head dim > 64 not supported")  # what the declaration below promises never happens
    with torch.no_grad():
        return scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale)


_fwd_only_to_64.triad_support = KernelSupport(max_head_dim=64, backward=False, masks=("bool", "additive"))


def test_declared_head_dims_causality_and_backward_are_unsupported_rows_not_errors() -> None:
    wide = run_user_kernel(_fwd_only_to_64, tiny_case(d_head=128))
    assert {r.status for r in wide} == {"unsupported"} and "head dims 1-64" in wide[0].message
    causal = run_user_kernel(_fwd_only_to_64, tiny_case(causal=True))
    assert {r.status for r in causal} == {"unsupported"} and "not is_causal" in causal[0].message
    rows = {r.mode: r for r in run_user_kernel(_fwd_only_to_64, tiny_case(causal=False))}
    assert rows["fwd"].status == "ok"
    assert rows["bwd"].status == rows["fwd+bwd"].status == "unsupported" and "no backward" in rows["bwd"].message


def test_a_kernel_wrong_only_in_the_middle_of_the_queries_is_caught() -> None:
    def middle_rows_zeroed(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        out = scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale).clone()
        L = out.shape[-2]
        out[..., L // 2 - 4: L // 2 + 4, :] = 0.0  # one 8-row tile in the middle, far from both ends
        return out

    assert {r.status for r in run_user_kernel(middle_rows_zeroed, tiny_case(L=128))} == {"wrong"}


def test_unwritable_output_paths_are_usage_errors_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    for flag in ("--json", "--plot"):
        result = CliRunner().invoke(app, ["bench", "--kernel", "scratch", flag, str(tmp_path / "a_file" / "x")])
        assert result.exit_code == 2 and f"{flag}: cannot write" in result.output, result.output
        assert "matmul peak" not in result.output  # refused before anything ran


# Non-finite figures, GQA, the two float32 ceilings, the GPU presets ----------------------------------------


def _nan_output(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """A kernel that returns NaN everywhere (as a broken cuDNN graph might)."""
    return torch.full_like(scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale), float("nan"))


def test_a_nan_kernel_is_written_as_null_figures_flagged_in_the_json(tmp_path: Path) -> None:
    report = run_grid(tiny_grid(kernels=(f"{__name__}:_nan_output",)))
    assert {r["status"] for r in report["rows"]} == {"wrong"}
    path = tmp_path / "nan.json"
    write_json(report, path)  # used to raise: allow_nan=False
    written = json.loads(path.read_text())
    assert all(r["check_err"] is None for r in written["rows"])
    assert {f"/rows/{i}/check_err" for i in range(len(written["rows"]))} <= set(written["non_finite"])
    write_plot(report, tmp_path / "nan.png")


def test_a_non_finite_figure_anywhere_becomes_null_and_is_flagged_once(tiny_report: dict, tmp_path: Path) -> None:
    report = copy.deepcopy(tiny_report)
    ok = next(i for i, r in enumerate(report["rows"]) if r["status"] == "ok")
    report["rows"][ok]["peak_share"] = float("inf")
    report["matmul_peaks"][0]["tflops"] = float("nan")
    path = tmp_path / "flagged.json"
    write_json(report, path)
    write_json(json.loads(path.read_text()), path)  # a second write keeps the flags, without duplicates
    written = json.loads(path.read_text())
    assert written["rows"][ok]["peak_share"] is None and written["matmul_peaks"][0]["tflops"] is None
    assert sorted(written["non_finite"]) == sorted([f"/rows/{ok}/peak_share", "/matmul_peaks/0/tflops"])
    validate(written)


def _gqa_by_repeat(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):  # type: ignore[no-untyped-def]
    """GQA done right: query head h reads K/V head h // (H / Hkv)."""
    if enable_gqa:
        k, v = (x.repeat_interleave(q.shape[1] // x.shape[1], dim=1) for x in (k, v))  # (B, H, L, d)
    return scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale)


def _gqa_modulo(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):  # type: ignore[no-untyped-def]
    """GQA done wrong: query head h reads K/V head h % Hkv (right only when Hkv is 1 or H)."""
    if enable_gqa:
        k, v = (x.repeat(1, q.shape[1] // x.shape[1], 1, 1) for x in (k, v))  # (B, H, L, d)
    return scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale)


@pytest.mark.parametrize(("group", "H"), [(2, 4), (4, 8)])
def test_gqa_cases_time_kernels_that_take_enable_gqa_and_catch_the_modulo_mapping(group: int, H: int) -> None:
    cpu = DeviceGrid("cpu", F32, (8,), (16,), tokens=16, width=8 * H, matmul_sizes=(16,), budget_s=60.0,
                     groups=(group,))
    kernels = (f"{__name__}:_gqa_by_repeat", f"{__name__}:_gqa_modulo", "scratch")
    rows = run_grid(Grid("quick", kernels, (cpu,), causal=(False, True), rounds=25, warmup=1))["rows"]
    status = {(r["kernel"].rsplit(":", 1)[-1], r["causal"]): r["status"] for r in rows}
    assert all(r["Hkv"] == H // group for r in rows)
    assert status[("_gqa_by_repeat", False)] == status[("_gqa_by_repeat", True)] == "ok"
    assert status[("_gqa_modulo", False)] == status[("_gqa_modulo", True)] == "wrong"
    scratch = [r for r in rows if r["kernel"] == "scratch"]
    assert {r["status"] for r in scratch} == {"unsupported"} and "enable_gqa" in scratch[0]["message"]


def test_cuda_float32_rows_use_the_ceiling_their_kernel_can_use() -> None:
    from triad.bench.runner import case_row

    def tf32(kernel: str, device: str = "cuda", dtype: str = "float32") -> bool:
        return case_row(tiny_case(kernel, device=device, dtype=dtype), "fwd", "ok").matmul_peak_tf32

    assert tf32("sdpa-efficient") and tf32("native") and tf32("my_pkg.attn:flash")  # may use the tensor cores
    assert not tf32("sdpa-math") and not tf32("scratch") and not tf32("reference")  # IEEE float32 via cuBLAS
    assert not tf32("sdpa-efficient", dtype="bfloat16") and not tf32("sdpa-efficient", device="cpu")


def test_tf32_matmul_peak_restores_the_setting_and_copy_bandwidth_is_measured() -> None:
    from triad.bench.measure import copy_bandwidth_gbs, matmul_peak_tflops

    before = torch.backends.cuda.matmul.allow_tf32
    tflops, n = matmul_peak_tflops("cpu", "float32", (16,), rounds=25, warmup=1, tf32=not before)
    assert tflops > 0 and n == 16 and torch.backends.cuda.matmul.allow_tf32 == before
    assert copy_bandwidth_gbs("cpu", 2**16, rounds=25, warmup=1) > 0
    with pytest.raises(ValueError, match="nbytes: expected at least 8"):
        copy_bandwidth_gbs("cpu", 4, rounds=25, warmup=1)


def test_the_gpu_preset_is_the_issue_grid_and_smoke_is_its_plan_on_the_cpu() -> None:
    gpu = preset("gpu")
    (cuda,) = gpu.devices
    assert cuda.device == "cuda" and cuda.dtypes == ("bfloat16", "float16") and set(cuda.head_dims) == {64, 128}
    assert cuda.lengths == (512, 1024, 2048, 4096, 8192, 16384) and cuda.groups == (1, 8)
    assert gpu.causal == (False, True) and gpu.modes == ("fwd", "bwd", "fwd+bwd")
    assert {c.shape.Hkv for c in gpu.cases() if c.shape.d_head == 128} == {16, 2}  # GQA 8:1
    smoke = preset("smoke", ("scratch",), budget_s=3.0)
    assert [g.device for g in smoke.devices] == ["cpu"] and smoke.devices[0].budget_s == 3.0
    assert {c.shape.group for c in smoke.cases()} == {1, 2}
    with pytest.raises(ValueError, match="budget_s: expected seconds >= 0"):
        preset("quick", budget_s=-1.0)


def test_bench_command_refuses_the_gpu_preset_without_cuda_and_conflicting_presets() -> None:
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, ["bench", "--preset", "gpu"])
        assert result.exit_code == 2 and "needs CUDA" in result.output
    result = CliRunner().invoke(app, ["bench", "--preset", "smoke", "--full"])
    assert result.exit_code == 2 and "expected one preset" in result.output


class _OomBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        raise MemoryError("host out of memory (planted)")


def _oom_in_backward(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Right forward; the backward runs out of memory, inside the timed region of ``benchmark.pedantic``."""
    return _OomBackward.apply(scratch_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale))


def _benchmark_suite(*args: str) -> str:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "pytest", "benchmarks", "-q", "-rs", "-p", "no:cacheprovider",
               "--bench-preset", "smoke", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def test_the_benchmark_suite_skips_an_out_of_memory_inside_the_timing_and_keeps_going() -> None:
    out = _benchmark_suite("--bench-kernel", f"{__name__}:_oom_in_backward", "--benchmark-disable")
    assert "oom: MemoryError: host out of memory (planted)" in out, out[-3000:]
    assert "4 passed" in out, out[-3000:]  # fwd of each plain case; bwd, fwd+bwd skipped; GQA cases skipped


def test_the_benchmark_suite_has_a_time_budget() -> None:
    out = _benchmark_suite("--bench-kernel", "scratch", "--bench-budget", "0", "--benchmark-disable")
    assert "24 skipped" in out and "--bench-budget" in out, out[-3000:]


# What a person reads: piped or narrow output, empty panels, the verdict ------------------------------------


def test_piped_report_is_one_line_per_row_within_80_columns(tiny_report: dict) -> None:
    from io import StringIO

    from rich.console import Console

    from triad.bench.report import print_report

    buffer = StringIO()
    print_report(tiny_report, Console(file=buffer, width=80))  # a file: not a terminal, as when piped
    lines = buffer.getvalue().splitlines()
    row_lines = [line for line in lines if line.startswith("  ") and line.split()[0] in ("ok", "unsupported")]
    assert len(row_lines) == len(tiny_report["rows"])  # one line each, nothing wrapped onto a second line
    assert all(len(line) <= 80 for line in row_lines)
    assert all(kernel in "\n".join(row_lines) for kernel in TINY_KERNELS)  # names in full
    assert "reference within 2x of scratch everywhere: " in " ".join(buffer.getvalue().split())


def test_quick_preset_runs_both_dtypes_on_a_small_grid_with_a_generous_budget() -> None:
    grid = preset("quick")
    cpu = grid.devices[0]
    assert set(cpu.dtypes) == {"float32", "float64"} and max(cpu.lengths) <= 256 and cpu.budget_s >= 600


def test_a_panel_without_data_says_why() -> None:
    from triad.bench.report import _why_empty

    report = run_grid(tiny_grid(kernels=("scratch", "reference"), budget_s=0.0))
    assert _why_empty(report["rows"], "cpu", "float32", 8, "fwd") == \
        "no data:\nevery kernel: skipped (time budget of 0 s spent)"
