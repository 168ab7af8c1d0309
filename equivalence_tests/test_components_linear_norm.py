"""Linear and layer norm: reference, scratch and native agree (output, dx, every parameter gradient) in
float64, the reference backward matches finite differences, and bad input is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.component_helpers import (
    assert_agree,
    assert_matches_finite_differences,
    layer_norm_dx_magnitude,
)
from reference.layer_norm import layer_norm_backward, layer_norm_forward
from reference.linear import linear_backward, linear_forward
from torch_impl.native.layer_norm import LayerNorm as NativeLayerNorm
from torch_impl.native.linear import Linear as NativeLinear
from torch_impl.scratch.layer_norm import LayerNorm
from torch_impl.scratch.linear import Linear
from triad.harness.blocks import run_torch_block

sizes = st.integers(1, 5)
seeds = st.integers(0, 2**32 - 1)


def _linear_case(lead: tuple[int, ...], n_in: int, n_out: int, bias: bool, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, n_in))
    params = {"weight": rng.standard_normal((n_out, n_in))}
    if bias:
        params["bias"] = rng.standard_normal(n_out)
    dy = rng.standard_normal((*lead, n_out))
    return x, params, dy


def _linear_reference(x, params, dy) -> dict[str, np.ndarray]:
    y, cache = linear_forward(x, params["weight"], params.get("bias"))
    dx, dweight, dbias = linear_backward(dy, cache)
    return {"out": y, "dx": dx, "weight": dweight, **({} if dbias is None else {"bias": dbias})}


@given(B=sizes, L=sizes, n_in=st.integers(1, 7), n_out=st.integers(1, 7), bias=st.booleans(), seed=seeds)
def test_linear_output_and_grads_agree_across_implementations(B, L, n_in, n_out, bias, seed) -> None:
    x, params, dy = _linear_case((B, L), n_in, n_out, bias, seed)
    expected = _linear_reference(x, params, dy)
    for label, module in (("scratch", Linear(n_in, n_out, bias)), ("native", NativeLinear(n_in, n_out, bias))):
        actual = run_torch_block(module, params, {"x": x}, dy, lambda t, m=module: m(t["x"]))
        assert_agree(actual, expected, label)


@given(lead=st.lists(sizes, min_size=0, max_size=2), n_in=st.integers(1, 4), n_out=st.integers(1, 4),
       bias=st.booleans(), seed=seeds)
def test_linear_backward_matches_finite_differences(lead, n_in, n_out, bias, seed) -> None:
    x, params, dy = _linear_case(tuple(lead), n_in, n_out, bias, seed)
    analytic = _linear_reference(x, params, dy)
    analytic["x"] = analytic.pop("dx")
    assert_matches_finite_differences(lambda: linear_forward(x, params["weight"], params.get("bias"))[0],
                                      {"x": x, **params}, dy, analytic)


def _layer_norm_case(B: int, L: int, D: int, affine: bool, bias: bool, seed: int):
    rng = np.random.default_rng(seed)
    # An offset and a spread far from (0, 1) so that dropping the mean or the variance is visible.
    x = 3.0 + 2.5 * rng.standard_normal((B, L, D))
    params = {}
    if affine:
        params["weight"] = 1.0 + 0.5 * rng.standard_normal(D)
        if bias:
            params["bias"] = rng.standard_normal(D)
    dy = rng.standard_normal((B, L, D))
    return x, params, dy


def _layer_norm_reference(x, params, dy, eps: float) -> tuple[dict[str, np.ndarray], dict]:
    y, cache = layer_norm_forward(x, params.get("weight"), params.get("bias"), eps)
    dx, dweight, dbias = layer_norm_backward(dy, cache)
    grads = {key: g for key, g in (("weight", dweight), ("bias", dbias)) if g is not None}
    return {"out": y, "dx": dx, **grads}, cache


@given(B=sizes, L=sizes, D=st.integers(2, 9), affine=st.booleans(), bias=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]), seed=seeds)
def test_layer_norm_output_and_grads_agree_across_implementations(B, L, D, affine, bias, eps, seed) -> None:
    x, params, dy = _layer_norm_case(B, L, D, affine, bias, seed)
    expected, cache = _layer_norm_reference(x, params, dy, eps)
    magnitudes = {"dx": layer_norm_dx_magnitude(dy, cache)}
    for label, module in (("scratch", LayerNorm(D, eps, affine, bias)),
                          ("native", NativeLayerNorm(D, eps, affine, bias))):
        actual = run_torch_block(module, params, {"x": x}, dy, lambda t, m=module: m(t["x"]))
        assert_agree(actual, expected, label, magnitudes)


@given(B=st.integers(1, 2), L=st.integers(1, 3), D=st.integers(3, 6), affine=st.booleans(), bias=st.booleans(),
       seed=seeds)
def test_layer_norm_backward_matches_finite_differences(B, L, D, affine, bias, seed) -> None:
    # D >= 3: with D = 2, x_hat = +-1 whatever x is, dx is O(eps) and the differences are all rounding.
    x, params, dy = _layer_norm_case(B, L, D, affine, bias, seed)
    analytic, _ = _layer_norm_reference(x, params, dy, 1e-5)
    analytic["x"] = analytic.pop("dx")
    assert_matches_finite_differences(
        lambda: layer_norm_forward(x, params.get("weight"), params.get("bias"))[0], {"x": x, **params}, dy, analytic)


def test_layer_norm_uses_the_biased_variance() -> None:
    """[1, 3]: mean 2, biased variance 1 (unbiased would be 2), so y = [-1, 1] / sqrt(1 + eps)."""
    x = np.array([[1.0, 3.0]])
    want = np.array([[-1.0, 1.0]]) / np.sqrt(1.0 + 1e-5)
    np.testing.assert_allclose(layer_norm_forward(x)[0], want, rtol=1e-15)
    np.testing.assert_allclose(LayerNorm(2, elementwise_affine=False).double()(torch.tensor(x)).numpy(), want,
                               rtol=1e-15)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.ones((2, 3)), np.ones((4, 5))),
         r"x: expected \(\.\.\., in\) with in=5 like weight \(4, 5\), got \(2, 3\)"),
        ((np.ones((2, 3)), np.ones(3)), r"weight: expected \(out, in\), got \(3,\)"),
        ((np.ones((2, 3)), np.ones((4, 3)), np.ones(3)), r"bias: expected \(out,\) with out=4 .*got \(3,\)"),
    ],
)
def test_linear_rejects_bad_shapes_naming_the_argument(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        linear_forward(*args)


def test_scratch_linear_rejects_bad_input_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"x: expected \(\.\.\., in\) with in=5 like weight \(4, 5\), got \(2, 3\)"):
        Linear(5, 4)(torch.ones(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": np.ones(4)}, r"weight: expected \(D,\) with D=3 like x \(2, 3\), got \(4,\)"),
        ({"bias": np.ones((1, 3))}, r"bias: expected \(D,\) with D=3 like x \(2, 3\), got \(1, 3\)"),
        ({"eps": 0.0}, r"eps: expected a finite number > 0, got 0.0"),
    ],
)
def test_layer_norm_rejects_bad_input_naming_the_argument(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        layer_norm_forward(np.ones((2, 3)), **kwargs)


def test_scratch_layer_norm_rejects_bad_input_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"weight: expected \(D,\) with D=3 like x \(2, 3\), got \(4,\)"):
        LayerNorm(4)(torch.ones(2, 3))
