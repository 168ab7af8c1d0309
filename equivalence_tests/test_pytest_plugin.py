"""The pytest plugin: a kernel author's test gets the verdict, the shrunk case and the repro path."""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

KERNEL_TESTS = '''
import pytest

def test_correct_kernel(triad_verify):
    report = triad_verify("equivalence_tests.planted_kernels:correct_attention")
    assert report.passed and report.examples > 0

@pytest.mark.triad(dtype="float64")
def test_marker_sets_the_defaults(triad_verify):
    assert triad_verify("native").dtype == "float64"

def test_planted_bug(triad_verify):
    triad_verify("equivalence_tests.planted_kernels:wrong_scale")
'''


def test_the_plugin_is_installed_under_its_module_name() -> None:
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert names.get("triad.pytest_plugin") == "triad.pytest_plugin"


@pytest.mark.slow  # a pytest subprocess that runs three verify searches
def test_a_failing_kernel_fails_its_test_with_the_minimal_case_and_the_repro_path(
        pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(request.config.rootpath))  # equivalence_tests.planted_kernels importable
    pytester.makepyfile(test_kernels=KERNEL_TESTS)
    result = pytester.runpytest_subprocess("-p", "triad.pytest_plugin", "--triad-max-examples", "10",
                                           "--triad-seed", "1")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*wrong_scale on cpu in float32: failed*", "*minimal failing case:*",
                                 "*reproduce it with: python *triad_repro_seed1.py*"])
    assert "Traceback" not in result.stdout.str()  # pytrace=False: the report, not the plugin's frames


def test_the_options_are_documented_in_pytest_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "triad.pytest_plugin", "--help")
    result.stdout.fnmatch_lines(["*--triad-max-examples=N*", "*--triad-seed=S*"])
