"""Activations, dropout and the feed-forward block: reference, scratch and native agree in float64 (output,
dx, every parameter gradient), every reference backward matches finite differences, native GELU-tanh really
is the tanh formula, native dropout is inverted dropout, and bad input is refused by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from equivalence_tests.component_helpers import assert_agree, assert_matches_finite_differences
from reference.activations import ACTIVATIONS, activation_backward, activation_forward
from reference.dropout import dropout_backward, dropout_forward
from reference.feed_forward import feed_forward_backward, feed_forward_forward
from torch_impl.native import activations as native_activations
from torch_impl.native.dropout import Dropout as NativeDropout
from torch_impl.native.feed_forward import FeedForward as NativeFeedForward
from torch_impl.scratch import activations as scratch_activations
from torch_impl.scratch.dropout import Dropout
from torch_impl.scratch.feed_forward import FeedForward
from triad.harness.blocks import run_torch_block

seeds = st.integers(0, 2**32 - 1)
activations = st.sampled_from(ACTIVATIONS)


def _activation_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Unit-normal values spread to +-6 (both GELU tails), with exact zeros in (relu's kink)."""
    rng = np.random.default_rng(seed)
    x = 2.0 * rng.standard_normal(shape)
    x[rng.random(shape) < 0.1] = 0.0
    return x


@given(n=st.integers(1, 40), name=activations, seed=seeds)
def test_activation_output_and_grad_agree_across_implementations(n, name, seed) -> None:
    x = _activation_input((n,), seed)
    dy = np.random.default_rng(seed + 1).standard_normal(n)
    y, cache = activation_forward(x, name)
    expected = {"out": y, "dx": activation_backward(dy, cache)}
    for label, module in (("scratch", scratch_activations), ("native", native_activations)):
        actual = run_torch_block(nn.Module(), {}, {"x": x}, dy, lambda t, m=module: m.activation(t["x"], name))
        assert_agree(actual, expected, f"{label} {name}")


@given(n=st.integers(1, 12), name=activations, seed=seeds)
def test_activation_backward_matches_finite_differences(n, name, seed) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 3.0, n) * rng.choice([-1.0, 1.0], n)  # away from relu's kink at 0
    dy = rng.standard_normal(n)
    analytic = {"x": activation_backward(dy, activation_forward(x, name)[1])}
    assert_matches_finite_differences(lambda: activation_forward(x, name)[0], {"x": x}, dy, analytic)


def test_activations_match_their_formulas_written_out() -> None:
    """Each activation at a few points against the formula computed with ``math`` by hand; native
    gelu_tanh must be the tanh formula (torch's eval fast path silently uses erf instead)."""
    points = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5]
    formulas = {
        "relu": lambda x: max(x, 0.0),
        "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
        "gelu_tanh": lambda x: 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    }
    x = np.array(points)
    for name, formula in formulas.items():
        want = np.array([formula(p) for p in points])
        np.testing.assert_allclose(activation_forward(x, name)[0], want, rtol=1e-14, atol=1e-16)
        for module in (scratch_activations, native_activations):
            got = module.activation(torch.tensor(x), name).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-16, err_msg=f"{module.__name__} {name}")
    # The two GELUs differ by ~1e-4 near |x| = 2: a test that cannot tell them apart would be worthless.
    native_tanh = native_activations.activation(torch.tensor(x), "gelu_tanh").numpy()
    assert np.max(np.abs(native_tanh - activation_forward(x, "gelu")[0])) > 1e-4


def _keep(shape: tuple[int, ...], p: float, seed: int) -> np.ndarray | None:
    return None if p == 0.0 else np.random.default_rng(seed).random(shape) >= p


@given(B=st.integers(1, 3), L=st.integers(1, 4), D=st.integers(1, 6), p=st.sampled_from([0.0, 0.1, 0.5]),
       seed=seeds)
def test_dropout_with_the_same_keep_mask_agrees_across_implementations(B, L, D, p, seed) -> None:
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((B, L, D)), rng.standard_normal((B, L, D))
    keep = _keep(x.shape, p, seed + 1)
    y, cache = dropout_forward(x, p, keep=keep)
    expected = {"out": y, "dx": dropout_backward(dy, cache)}
    scratch = Dropout(p).train()
    keep_t = None if keep is None else torch.tensor(keep)
    assert_agree(run_torch_block(scratch, {}, {"x": x}, dy, lambda t: scratch(t["x"], keep_t)), expected, "scratch")
    if p == 0.0:  # nn.Dropout draws its own mask: compared element-wise only at p = 0
        native = NativeDropout(p).train()
        assert_agree(run_torch_block(native, {}, {"x": x}, dy, lambda t: native(t["x"])), expected, "native")


@given(n=st.integers(1, 10), p=st.sampled_from([0.2, 0.5]), seed=seeds)
def test_dropout_backward_matches_finite_differences(n, p, seed) -> None:
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(n), rng.standard_normal(n)
    keep = _keep(x.shape, p, seed + 1)
    analytic = {"x": dropout_backward(dy, dropout_forward(x, p, keep=keep)[1])}
    assert_matches_finite_differences(lambda: dropout_forward(x, p, keep=keep)[0], {"x": x}, dy, analytic)


def _dropout_draws(implementation: str, x: np.ndarray, p: float) -> np.ndarray:
    if implementation == "reference":
        return dropout_forward(x, p, rng=np.random.default_rng(0))[0]
    torch.manual_seed(0)
    module = (Dropout if implementation == "scratch" else NativeDropout)(p).train()
    return module(torch.tensor(x)).numpy()


@pytest.mark.parametrize("implementation", ["reference", "scratch", "native"])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_is_inverted_dropout_statistically(implementation, p) -> None:
    """Drawn masks: the fraction of zeros is p and the mean is preserved (each within 5 standard errors of
    n = 100,000 draws), kept values are x / (1 - p) (to one rounding), and eval mode is the identity."""
    n = 100_000
    x = np.full(n, 1.5)
    y = _dropout_draws(implementation, x, p)
    zeros = y == 0.0
    assert abs(zeros.mean() - p) <= 5.0 * math.sqrt(p * (1.0 - p) / n)
    np.testing.assert_allclose(y[~zeros], 1.5 / (1.0 - p), rtol=1e-15)  # x / (1 - p) or x * (1 / (1 - p))
    mean_std_err = 1.5 / (1.0 - p) * math.sqrt(p * (1.0 - p) / n)  # std of y is 1.5 sqrt(p / (1 - p))
    assert abs(y.mean() - 1.5) <= 5.0 * mean_std_err
    if implementation != "reference":
        module = (Dropout if implementation == "scratch" else NativeDropout)(p).eval()
        np.testing.assert_array_equal(module(torch.tensor(x)).numpy(), x)


def _ffn_case(B: int, L: int, D: int, D_ff: int, bias: bool, p: float, seed: int):
    rng = np.random.default_rng(seed)
    params = {"linear1.weight": rng.standard_normal((D_ff, D)) / math.sqrt(D),
              "linear2.weight": rng.standard_normal((D, D_ff)) / math.sqrt(D_ff)}
    if bias:
        params["linear1.bias"] = 0.5 * rng.standard_normal(D_ff)
        params["linear2.bias"] = 0.5 * rng.standard_normal(D)
    x, dy = rng.standard_normal((B, L, D)), rng.standard_normal((B, L, D))
    return x, params, dy, _keep((B, L, D_ff), p, seed + 1)


@given(B=st.integers(1, 3), L=st.integers(1, 4), D=st.integers(1, 6), D_ff=st.integers(1, 9), bias=st.booleans(),
       name=activations, p=st.sampled_from([0.0, 0.3]), seed=seeds)
def test_feed_forward_output_and_grads_agree_across_implementations(B, L, D, D_ff, bias, name, p, seed) -> None:
    x, params, dy, keep = _ffn_case(B, L, D, D_ff, bias, p, seed)
    y, cache = feed_forward_forward(x, params, name, p, dropout_keep=keep)
    dx, grads = feed_forward_backward(dy, cache)
    expected = {"out": y, "dx": dx, **grads}
    scratch = FeedForward(D, D_ff, name, p, bias).train()
    keep_t = None if keep is None else torch.tensor(keep)
    actual = run_torch_block(scratch, params, {"x": x}, dy, lambda t: scratch(t["x"], keep_t))
    assert_agree(actual, expected, f"scratch {name}")
    if p == 0.0:  # native draws its own dropout mask: compared at p = 0
        native = NativeFeedForward(D, D_ff, name, p, bias).train()
        assert_agree(run_torch_block(native, params, {"x": x}, dy, lambda t: native(t["x"])), expected,
                     f"native {name}")


@given(D=st.integers(1, 3), D_ff=st.integers(1, 4), bias=st.booleans(), name=activations,
       p=st.sampled_from([0.0, 0.3]), seed=seeds)
def test_feed_forward_backward_matches_finite_differences(D, D_ff, bias, name, p, seed) -> None:
    x, params, dy, keep = _ffn_case(1, 2, D, D_ff, bias, p, seed)
    dx, grads = feed_forward_backward(dy, feed_forward_forward(x, params, name, p, dropout_keep=keep)[1])
    assert_matches_finite_differences(lambda: feed_forward_forward(x, params, name, p, dropout_keep=keep)[0],
                                      {"x": x, **params}, dy, {"x": dx, **grads})


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: activation_forward(np.ones(3), "swish"), ValueError,
         r"activation: expected one of relu, gelu, gelu_tanh, got 'swish'"),
        (lambda: scratch_activations.activation(torch.ones(3), "tanh"), ValueError, r"activation: expected one of"),
        (lambda: FeedForward(4, 8, "gelu_exact"), ValueError, r"activation: expected one of"),
        (lambda: dropout_forward(np.ones(3), 1.0), ValueError, r"p: expected a probability in \[0, 1\), got 1.0"),
        (lambda: Dropout(-0.1), ValueError, r"p: expected a probability in \[0, 1\), got -0.1"),
        (lambda: dropout_forward(np.ones(3), 0.5), ValueError,
         r"keep: p > 0 needs an explicit keep-mask or a seeded rng"),
        (lambda: dropout_forward(np.ones(3), 0.0, keep=np.ones(3, bool)), ValueError, r"keep: given, but p is 0"),
        (lambda: dropout_forward(np.ones(3), 0.5, keep=np.ones(3)), TypeError,
         r"keep: expected a boolean keep-mask, got dtype float64"),
        (lambda: dropout_forward(np.ones(3), 0.5, keep=np.ones(4, bool)), ValueError,
         r"keep: expected the shape of x \(3,\), got \(4,\)"),
        (lambda: Dropout(0.5)(torch.ones(3), torch.ones(4, dtype=torch.bool)), ValueError,
         r"keep: expected the shape of x \(3,\), got \(4,\)"),
        (lambda: Dropout(0.5).eval()(torch.ones(3), torch.ones(3, dtype=torch.bool)), ValueError,
         r"keep: given, but p is 0"),
        (lambda: feed_forward_forward(np.ones((1, 2)), {"linear1.weight": np.ones((3, 2))}), ValueError,
         r"params: missing key 'linear2.weight'"),
    ],
)
def test_activations_dropout_and_feed_forward_reject_bad_input_naming_the_argument(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
