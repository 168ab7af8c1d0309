"""Log-softmax and the losses: the three implementations agree in float64 (loss and dlogits), every reference
backward matches finite differences, both label-smoothing conventions equal their formulas written out by
hand (torch's eps/V on every class, the 2017 paper's eps/(V-1) off the target), ignore_index is honoured,
and bad input is refused by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from equivalence_tests.component_helpers import assert_agree, assert_matches_finite_differences
from reference.losses import (
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
    paper_label_smoothing_backward,
    paper_label_smoothing_forward,
)
from reference.softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward
from torch_impl.native import losses as native_losses
from torch_impl.native import softmax as native_softmax
from torch_impl.scratch import losses as scratch_losses
from torch_impl.scratch import softmax as scratch_softmax
from triad.harness.blocks import run_torch_block

seeds = st.integers(0, 2**32 - 1)
IGNORE = -100


# name -> (reference forward, reference backward); the torch functions have the same name in both packages
SOFTMAXES = {"softmax": (softmax_forward, softmax_backward), "log_softmax": (log_softmax_forward, log_softmax_backward)}


@pytest.mark.parametrize("name", SOFTMAXES)
@given(B=st.integers(1, 3), N=st.integers(1, 9), logit_scale=st.sampled_from([1.0, 30.0, 1e3]), seed=seeds)
def test_softmax_and_log_softmax_output_and_grad_agree_across_implementations(name, B, N, logit_scale, seed) -> None:
    forward, backward = SOFTMAXES[name]
    rng = np.random.default_rng(seed)
    x, dz = logit_scale * rng.standard_normal((B, N)), rng.standard_normal((B, N))
    z, cache = forward(x)
    expected = {"out": z, "dx": backward(dz, cache)}
    # dx is small through cancellation when the softmax is one-hot: measure it at the magnitude of its terms,
    # softmax: y (|dy| + sum y |dy|); log-softmax: |dz| + y sum |dz| (see triad.tolerance)
    y, abs_dz = softmax_forward(x)[0], np.abs(dz)  # (B, N)
    terms = y * (abs_dz + np.sum(y * abs_dz, axis=-1, keepdims=True)) if name == "softmax" else (
        abs_dz + y * np.sum(abs_dz, axis=-1, keepdims=True))  # (B, N)
    for label, module in (("scratch", scratch_softmax), ("native", native_softmax)):
        function = getattr(module, name)
        actual = run_torch_block(nn.Module(), {}, {"x": x}, dz, lambda t, f=function: f(t["x"]))
        assert_agree(actual, expected, label, {"dx": float(np.max(terms))})


@pytest.mark.parametrize("name", SOFTMAXES)
@given(N=st.integers(1, 6), seed=seeds)
def test_softmax_and_log_softmax_backward_match_finite_differences(name, N, seed) -> None:
    forward, backward = SOFTMAXES[name]
    rng = np.random.default_rng(seed)
    x, dz = rng.standard_normal((2, N)), rng.standard_normal((2, N))
    analytic = {"x": backward(dz, forward(x)[1])}
    assert_matches_finite_differences(lambda: forward(x)[0], {"x": x}, dz, analytic)


CONVENTIONS = {
    "torch": (cross_entropy_forward, cross_entropy_backward, scratch_losses.cross_entropy,
              native_losses.cross_entropy),
    "paper": (paper_label_smoothing_forward, paper_label_smoothing_backward,
              scratch_losses.paper_label_smoothing_loss, native_losses.paper_label_smoothing_loss),
}


def _loss_case(B: int, L: int, V: int, seed: int, ignore_index: int = IGNORE):
    """Logits (B, L, V), targets with about a quarter ignored but never all of them."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.standard_normal((B, L, V))
    targets = rng.integers(0, V, (B, L))
    ignored = rng.random((B, L)) < 0.25
    ignored.flat[rng.integers(0, B * L)] = False
    targets[ignored] = ignore_index
    return logits, targets


@given(B=st.integers(1, 3), L=st.integers(1, 5), V=st.integers(2, 8), convention=st.sampled_from(sorted(CONVENTIONS)),
       eps=st.sampled_from([0.0, 0.1, 0.4]), dloss=st.sampled_from([1.0, 0.37]), seed=seeds)
def test_losses_and_dlogits_agree_across_implementations(B, L, V, convention, eps, dloss, seed) -> None:
    forward, backward, scratch, native = CONVENTIONS[convention]
    logits, targets = _loss_case(B, L, V, seed)
    loss, cache = forward(logits, targets, IGNORE, eps)
    expected = {"out": loss, "dlogits": backward(dloss, cache)}
    targets_t = torch.tensor(targets)
    for label, loss_fn in (("scratch", scratch), ("native", native)):
        actual = run_torch_block(nn.Module(), {}, {"logits": logits}, np.array(dloss),
                                 lambda t, f=loss_fn: f(t["logits"], targets_t, IGNORE, eps))
        assert_agree(actual, expected, f"{label} {convention} eps={eps}")


@given(V=st.integers(2, 5), convention=st.sampled_from(sorted(CONVENTIONS)), eps=st.sampled_from([0.0, 0.2]),
       seed=seeds)
def test_loss_backward_matches_finite_differences(V, convention, eps, seed) -> None:
    forward, backward = CONVENTIONS[convention][:2]
    logits, targets = _loss_case(2, 3, V, seed)
    analytic = {"logits": backward(0.8, forward(logits, targets, IGNORE, eps)[1])}
    assert_matches_finite_differences(lambda: forward(logits, targets, IGNORE, eps)[0], {"logits": logits},
                                      np.array(0.8), analytic)


def _hand_written_loss(logits: np.ndarray, targets: np.ndarray, ignore_index: int, on: float, off: float) -> float:
    """-sum_c q_c log softmax(z)_c averaged over the kept positions, one position at a time in plain Python."""
    total, count = 0.0, 0
    for z, t in zip(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), strict=True):
        if t == ignore_index:
            continue
        log_norm = math.log(sum(math.exp(v) for v in z))
        total -= sum((on if c == t else off) * (float(v) - log_norm) for c, v in enumerate(z))
        count += 1
    return total / count


@pytest.mark.parametrize("ignore_index", [IGNORE, 0])
def test_label_smoothing_conventions_match_their_formulas(ignore_index) -> None:
    """torch: q = 1 - eps + eps/V on the target, eps/V elsewhere. Paper: 1 - eps on the target, eps/(V-1)
    elsewhere. With V = 5, eps = 0.1 they differ, and each implementation matches its own formula."""
    V, eps = 5, 0.1
    logits, targets = _loss_case(2, 4, V, seed=3, ignore_index=ignore_index)
    want_torch = _hand_written_loss(logits, targets, ignore_index, 1 - eps + eps / V, eps / V)
    want_paper = _hand_written_loss(logits, targets, ignore_index, 1 - eps, eps / (V - 1))
    assert abs(want_torch - want_paper) > 1e-3
    for convention, want in (("torch", want_torch), ("paper", want_paper)):
        forward, _, scratch, native = CONVENTIONS[convention]
        got = {"reference": float(forward(logits, targets, ignore_index, eps)[0]),
               "scratch": scratch(torch.tensor(logits), torch.tensor(targets), ignore_index, eps).item(),
               "native": native(torch.tensor(logits), torch.tensor(targets), ignore_index, eps).item()}
        for label, value in got.items():
            assert abs(value - want) <= 1e-13 * abs(want), f"{convention} {label}: {value} != {want}"


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_ignored_positions_neither_count_nor_get_gradient(convention) -> None:
    """Changing the logits at an ignored position leaves the loss unchanged and its gradient is exactly 0; the
    mean divides by the kept positions only (two kept of three: loss = mean of the two per-position losses)."""
    forward, backward = CONVENTIONS[convention][:2]
    logits = np.random.default_rng(5).standard_normal((1, 3, 4))
    targets = np.array([[1, IGNORE, 3]])
    loss, cache = forward(logits, targets, IGNORE, 0.1)
    changed = logits.copy()
    changed[0, 1] += 10.0
    assert float(forward(changed, targets, IGNORE, 0.1)[0]) == float(loss)
    dlogits = backward(1.0, cache)
    np.testing.assert_array_equal(dlogits[0, 1], 0.0)
    per_position = [float(forward(logits[:, [i]], targets[:, [i]], IGNORE, 0.1)[0]) for i in (0, 2)]
    assert abs(float(loss) - sum(per_position) / 2) <= 1e-15 * abs(float(loss))


@given(shape=st.sampled_from([(1,), (5,), (3, 1), (2, 3, 2)]), dloss=st.sampled_from([1.0, 0.37]), seed=seeds)
def test_mean_squared_error_and_its_gradient_agree_across_implementations(shape, dloss, seed) -> None:
    rng = np.random.default_rng(seed)
    predicted, targets = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, residual = mse_forward(predicted, targets)
    expected = {"out": loss, "dpredicted": mse_backward(dloss, residual)}
    targets_t = torch.tensor(targets)
    for label, loss_fn in (("scratch", scratch_losses.mse), ("native", native_losses.mse)):
        actual = run_torch_block(nn.Module(), {}, {"predicted": predicted}, np.array(dloss),
                                 lambda t, f=loss_fn: f(t["predicted"], targets_t))
        assert_agree(actual, expected, label)
    analytic = {"predicted": mse_backward(0.8, residual)}
    assert_matches_finite_differences(lambda: mse_forward(predicted, targets)[0], {"predicted": predicted},
                                      np.array(0.8), analytic)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: cross_entropy_forward(np.ones((2, 3, 4)), np.zeros((2, 4), int)), ValueError,
         r"targets: expected the shape of logits without its last axis \(2, 3\), got \(2, 4\)"),
        (lambda: cross_entropy_forward(np.ones((2, 4)), np.zeros(2)), TypeError,
         r"targets: expected an integer dtype, got float64"),
        (lambda: cross_entropy_forward(np.ones((2, 4)), np.array([0, 4])), ValueError,
         r"targets: expected ids in \[0, 4\) or ignore_index=-100, got ids from 0 to 4"),
        (lambda: cross_entropy_forward(np.ones((2, 4)), np.array([-100, -100])), ValueError,
         r"targets: every target equals ignore_index=-100"),
        (lambda: paper_label_smoothing_forward(np.ones((2, 4)), np.array([0, 1]), label_smoothing=1.5), ValueError,
         r"label_smoothing: expected a finite number in \[0, 1\], got 1.5"),
        (lambda: paper_label_smoothing_forward(np.ones((2, 1)), np.array([0, 0]), label_smoothing=0.1), ValueError,
         r"logits: the paper's smoothing eps/\(V-1\) needs V >= 2 classes, got V=1"),
        (lambda: scratch_losses.cross_entropy(torch.ones(2, 4), torch.tensor([0, 9])), ValueError,
         r"targets: expected ids in \[0, 4\)"),
        (lambda: native_losses.paper_label_smoothing_loss(torch.ones(2, 1), torch.tensor([0, 0]), -100, 0.1),
         ValueError, r"logits: the paper's smoothing eps/\(V-1\) needs V >= 2 classes, got V=1"),
        (lambda: mse_forward(np.ones((3, 1)), np.ones(3)), ValueError,
         r"targets: expected the shape of predicted \(3, 1\), got \(3,\)"),
        (lambda: native_losses.mse(torch.ones(3, 1), torch.ones(3)), ValueError,  # F.mse_loss would broadcast
         r"targets: expected the shape of predicted \(3, 1\), got \(3,\)"),
        (lambda: scratch_losses.mse(torch.ones(3), torch.ones(3, dtype=torch.int64)), TypeError,
         r"targets: expected a floating dtype, got torch.int64"),
        (lambda: mse_forward(np.ones((0, 1)), np.ones((0, 1))), ValueError,
         r"predicted: expected at least one element, got shape \(0, 1\)"),
    ],
)
def test_losses_reject_bad_input_naming_the_argument(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
