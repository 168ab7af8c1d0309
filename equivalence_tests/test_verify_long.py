"""``triad verify --long``: the sampled float64 oracle, the long-context check, planted long-context bugs."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from equivalence_tests.planted_long_kernels import LONG_PLANTED, long_online_correct
from reference.flash_attention import (
    flash_attention_backward,
    flash_attention_forward,
    flash_problem,
    from_rows,
    to_rows,
)
from reference.flash_sampled import sampled_flash_attention
from torch_impl.flash_kernels import FLASH_BUILTINS
from triad.cli import app
from triad.verify import KernelSupport, verify_attention
from triad.verify.cli import parse_long_lengths
from triad.verify.flash_cases import FlashCase
from triad.verify.long_context import check_long_case, long_cases, sample_positions
from triad.verify.report import FAILED, UNSUPPORTED, VERIFIED

pytest_plugins = ["pytester"]

NATIVE = FLASH_BUILTINS["flash"]["native"]

# (Lq, Lk, H, Hkv, causal, window, softcap, ALiBi): every feature of the flash interface, Lq != Lk both ways
ORACLE_CASES = [
    (300, 300, 4, 2, True, (-1, -1), 0.0, False),
    (517, 517, 2, 1, False, (40, 7), 2.5, True),
    (400, 650, 3, 3, True, (-1, -1), 0.0, False),
    (700, 450, 4, 1, True, (20, -1), 0.0, True),  # Lq > Lk: the first rows see no key
]


def _inputs(Lq: int, Lk: int, H: int, Hkv: int, d: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"q": rng.standard_normal((1, Lq, H, d)), "k": rng.standard_normal((1, Lk, Hkv, d)),
            "v": rng.standard_normal((1, Lk, Hkv, d)), "dout": rng.standard_normal((1, Lq, H, d))}


def _dense_bars(cache: dict, dout: np.ndarray) -> dict[str, np.ndarray]:
    """The absolute-value sums of reference.flash_sampled, densely, in FlashAttention's layouts."""
    p, probs = cache["problem"], cache["dense"]["probs"]  # grouped rows, (1, Hkv, R, Lk)
    dout_abs = np.abs(to_rows(dout, p.k.shape[1]))  # (1, Hkv, R, dv)
    out_abs = probs @ np.abs(p.v)  # (1, Hkv, R, dv)
    dscores = probs * (dout_abs @ np.abs(np.swapaxes(p.v, -1, -2)) + np.sum(dout_abs * out_abs, -1, keepdims=True))
    bars = {"out_abs": out_abs, "dq_abs": abs(p.scale) * dscores @ np.abs(p.k),
            "dv_abs": np.swapaxes(probs, -1, -2) @ dout_abs,
            "dk_abs": abs(p.scale) * np.swapaxes(dscores, -1, -2) @ np.abs(p.q)}
    return {name: (from_rows(x, p.n_rep) if name in ("out_abs", "dq_abs") else np.swapaxes(x, 1, 2))
            for name, x in bars.items()}


@pytest.mark.parametrize(("Lq", "Lk", "H", "Hkv", "causal", "window", "softcap", "alibi"), ORACLE_CASES)
def test_sampled_oracle_equals_the_dense_reference_on_its_rows(Lq: int, Lk: int, H: int, Hkv: int, causal: bool,
                                                               window: tuple[int, int], softcap: float,
                                                               alibi: bool) -> None:
    x = _inputs(Lq, Lk, H, Hkv, 64, seed=Lq)
    options = {"causal": causal, "window_size": window, "softcap": softcap,
               "alibi_slopes": 0.1 * 2.0 ** -np.arange(H) if alibi else None}
    out, lse, cache = flash_attention_forward(x["q"], x["k"], x["v"], **options)
    dq, dk, dv = flash_attention_backward(x["dout"], cache)
    query_pos = sample_positions(Lq, 40, seed=1, window=window)
    key_pos = sample_positions(Lk, 40, seed=2, window=window)
    s = sampled_flash_attention(flash_problem(x["q"], x["k"], x["v"], **options), x["dout"], query_pos, key_pos,
                                block_size=64)
    expected = {"out": out[:, query_pos], "dq": dq[:, query_pos], "dk": dk[:, key_pos], "dv": dv[:, key_pos],
                **{name: bar[:, query_pos if name in ("out_abs", "dq_abs") else key_pos]
                   for name, bar in _dense_bars(cache, x["dout"]).items()}}
    for name, want in expected.items():
        got = getattr(s, name)
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert err < 1e-12, f"{name}: {err:.3e} relative to the dense reference (1e-12 allowed)"
    want_lse = lse[:, :, query_pos]
    finite = np.isfinite(want_lse)
    assert np.array_equal(np.isneginf(s.lse), ~finite), "lse: -inf exactly on the rows that see no key"
    assert np.max(np.abs(s.lse[finite] - want_lse[finite])) < 1e-12 * max(1.0, np.max(np.abs(want_lse[finite])))


def test_sampled_oracle_memory_is_far_below_one_dense_score_array() -> None:
    L = 8192
    x = _inputs(L, L, 1, 1, 64, seed=0)
    problem = flash_problem(x["q"], x["k"], x["v"], causal=True)
    tracemalloc.start()
    try:
        sampled_flash_attention(problem, x["dout"], sample_positions(L, 256, 0), sample_positions(L, 256, 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    dense = L * L * 8  # one float64 (L, L) array: 512 MiB
    assert peak < dense / 8, f"oracle peak {peak / 2**20:.0f} MiB, one dense score array {dense / 2**20:.0f} MiB"


def test_sampled_positions_hold_the_edges_tile_boundaries_and_window_edges() -> None:
    positions = sample_positions(8192, 256, seed=3, window=(1024, 64))
    for must in (0, 1, 8190, 8191, 2047, 2048, 2049, 4097, 1023, 1024, 1025, 63, 64, 65, 8191 - 1024):
        assert must in positions, f"{must} not sampled"
    assert any(p % 256 == 0 and p > 4096 for p in positions), "a tile boundary of 256 past 4096"
    assert len(positions) == 256 and np.all(np.diff(positions) > 0)
    assert np.array_equal(positions, sample_positions(8192, 256, seed=3, window=(1024, 64))), "seeded"


def test_native_sdpa_passes_at_a_long_length_and_the_dense_case_is_declined() -> None:
    outcomes = {name: check_long_case(NATIVE, case, name) for name, case in long_cases(4096, KernelSupport(), 0)}
    ran = {name: o for name, o in outcomes.items() if not o.declined}
    assert len(ran) == 2, f"the two causal cases run on SDPA's CPU flash kernel: {list(ran)}"
    for name, outcome in ran.items():
        assert not outcome.failed, f"{name}: {outcome.summary()}"
        assert 0.0 < outcome.worst_margin < 1.0, f"{name}: worst error / allowed {outcome.worst_margin:.3g}"
        assert outcome.oracle_peak_bytes > 0 and outcome.kernel_seconds > 0.0
    declined = [o for o in outcomes.values() if o.declined]
    assert all("NotImplementedError" in o.declined for o in declined), [o.declined for o in declined]


def test_dense_builtins_decline_rather_than_exhaust_memory() -> None:
    case = FlashCase("flash", 2, 2, (16384,), (16384,), 64, 64, True, (-1, -1), 0.0, False, None, "gaussian", 1.0, 0)
    for name in ("scratch", "reference", "flex"):
        outcome = check_long_case(FLASH_BUILTINS["flash"][name], case, "causal")
        assert "limit" in outcome.declined, f"{name}: {outcome.declined or outcome.summary()}"


def _first_long_case(length: int) -> tuple[str, FlashCase]:
    return long_cases(length, KernelSupport(), 0)[0]  # causal, MQA


def test_a_planted_long_bug_is_caught_and_located() -> None:
    kernel, length = LONG_PLANTED["long_no_rescale_after_8_tiles"]
    name, case = _first_long_case(length)
    outcome = check_long_case(kernel, case, name)
    assert outcome.failed, outcome.summary()
    worst = next(c for c in outcome.failures() if c.line == "out" and c.stat == "max")
    position = int(worst.where.split("sampled position ")[1])
    assert position >= 8 * 128, f"the bug needs more than 8 key tiles, blamed on position {position}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LONG_PLANTED))
def test_every_planted_long_bug_is_caught_at_its_length_and_not_below_300(name: str) -> None:
    kernel, length = LONG_PLANTED[name]
    case_name, case = _first_long_case(length)
    assert check_long_case(kernel, case, case_name).failed, name
    report = verify_attention(kernel, interface="flash", max_examples=20, seed=0)
    assert report.verdict == VERIFIED, f"{name} fails the normal search too: {report.summary()}"


@pytest.mark.slow
def test_a_correct_online_softmax_has_no_false_alarm_past_4096_keys() -> None:
    for name, case in long_cases(4608, KernelSupport(), 0)[:2]:
        outcome = check_long_case(long_online_correct, case, name)
        assert not outcome.failed, outcome.summary()
        print(name, outcome.figures())


def test_cli_long_finds_the_planted_bug_and_writes_a_repro(tmp_path: Path) -> None:
    repro = tmp_path / "long_repro.py"
    result = CliRunner().invoke(app, ["verify", "equivalence_tests.planted_long_kernels:long_no_rescale_after_8_tiles",
                                      "--interface", "flash", "--long-lengths", "2048", "--max-examples", "2",
                                      "--repro", str(repro)])
    assert result.exit_code == 1, result.output
    assert "long: L = 2048 causal" in result.output and "FAIL" in result.output
    assert "check_long_case" in repro.read_text()


def test_long_options_are_checked_and_other_interfaces_say_not_run() -> None:
    assert parse_long_lengths("8192, 131072") == (8192, 131072)
    assert parse_long_lengths(None) == (8192, 16384, 32768)
    with pytest.raises(ValueError, match="--long-lengths"):
        parse_long_lengths("8k")
    refused = verify_attention(NATIVE, interface="flash", long_lengths=(100,))
    assert refused.verdict == UNSUPPORTED and "long_lengths" in refused.message
    sdpa = verify_attention(_declines_everything, max_examples=1, long_lengths=(4096,))
    assert sdpa.interface == "sdpa" and "only the flash interface" in sdpa.lines["long contexts"].note


def _declines_everything(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    raise NotImplementedError("a kernel with SDPA's signature that runs nothing")


@pytest.mark.slow
def test_verify_attention_runs_the_long_cases_after_the_search() -> None:
    report = verify_attention(NATIVE, interface="flash", max_examples=5, long_lengths=(4096,))
    assert report.verdict == VERIFIED, report.summary()
    long_lines = [line for name, line in report.lines.items() if name.startswith("long: L = 4096")]
    assert [line.verdict for line in long_lines] == ["pass", "pass", "skipped"]
    assert "oracle peak" in long_lines[0].info
    failed = verify_attention(LONG_PLANTED["long_float16_positions"][0], interface="flash", max_examples=5,
                              long_lengths=(4096,))
    assert failed.verdict == FAILED and failed.failure is not None and "Lq=4096" in failed.failure.case.describe()


def test_the_pytest_plugin_has_the_long_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "triad.pytest_plugin", "--help")
    result.stdout.fnmatch_lines(["*--triad-long*LENGTHS*"])


LONG_PLUGIN_TEST = '''
from torch_impl.flash_kernels import FLASH_BUILTINS

def test_native_long(triad_verify):
    report = triad_verify(FLASH_BUILTINS["flash"]["native"], interface="flash")
    assert [line.examples for name, line in report.lines.items() if name.startswith("long: L = 320")] == [1, 1, 0]
'''


@pytest.mark.slow
def test_the_pytest_plugin_runs_the_long_cases_with_triad_long(
        pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(request.config.rootpath))
    pytester.makepyfile(test_long_kernel=LONG_PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-p", "triad.pytest_plugin", "--triad-max-examples", "1",
                                           "--triad-long", "320")
    result.assert_outcomes(passed=1)
