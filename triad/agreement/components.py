"""``triad check`` for the elementwise components: linear, embedding, positional encoding, log-softmax,
feed-forward (relu, gelu, gelu_tanh), layer norm, dropout and both cross-entropy conventions.

One fixed float64 case each (odd sizes, repeated tokens, ignored targets): the hand-written reference
forward and backward against scratch and native, comparing the output, the input gradient and every
parameter gradient with ``F64_REL_BOUND``. Native dropout draws its own mask, so native dropout and the
native feed-forward block are compared at p = 0; scratch is driven by the reference's keep-mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from reference.activations import ACTIVATIONS
from reference.dropout import dropout_backward, dropout_forward
from reference.embedding import embedding_backward, embedding_forward
from reference.feed_forward import feed_forward_backward, feed_forward_forward
from reference.layer_norm import layer_norm_backward, layer_norm_forward
from reference.linear import linear_backward, linear_forward
from reference.losses import (
    cross_entropy_backward,
    cross_entropy_forward,
    paper_label_smoothing_backward,
    paper_label_smoothing_forward,
)
from reference.positional_encoding import positional_encoding_backward, positional_encoding_forward, sinusoidal_table
from reference.softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward
from torch_impl import native, scratch
from torch_impl.native import losses as native_losses
from torch_impl.native import softmax as native_softmax
from torch_impl.scratch import losses as scratch_losses
from torch_impl.scratch import softmax as scratch_softmax
from triad.agreement.base import ComponentResult, compare
from triad.harness.blocks import run_torch_block
from triad.tolerance import F64_REL_BOUND

B, L, D, D_FF, V = 2, 5, 7, 11, 6
DROPOUT_P = 0.3
LABEL_SMOOTHING = 0.1
IGNORE_INDEX = -100


def _compare_all(name: str, expected: dict[str, np.ndarray],
                 runs: list[tuple[str, nn.Module, dict[str, np.ndarray], Callable]],
                 inputs: dict[str, np.ndarray], dy: np.ndarray) -> list[ComponentResult]:
    """Run each (label, module, params, forward) in float64 and compare it with the reference's tensors."""
    results = []
    for label, module, params, forward in runs:
        actual = run_torch_block(module, params, inputs, dy, forward)
        results.append(compare(name, f"{label} vs reference", "float64", actual, expected, F64_REL_BOUND))
    return results


def _both(scratch_module: nn.Module, native_module: nn.Module, params: dict[str, np.ndarray],
          call: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]) -> list[tuple]:
    """The scratch and the native module, each called as ``call(module, input tensors)``."""
    return [("scratch", scratch_module, params, lambda t: call(scratch_module, t)),
            ("native", native_module, params, lambda t: call(native_module, t))]


def _call_on_x(module: nn.Module, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return module(tensors["x"])


def check_components() -> list[ComponentResult]:
    """Every elementwise component, scratch and native against the float64 reference."""
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((B, L, D)), rng.standard_normal((B, L, D))
    results = []

    linear = {"weight": rng.standard_normal((D_FF, D)), "bias": rng.standard_normal(D_FF)}
    dy_ff = rng.standard_normal((B, L, D_FF))
    y, cache = linear_forward(x, linear["weight"], linear["bias"])
    dx, dweight, dbias = linear_backward(dy_ff, cache)
    runs = _both(scratch.Linear(D, D_FF), native.Linear(D, D_FF), linear, _call_on_x)
    results += _compare_all("linear", {"out": y, "dx": dx, "weight": dweight, "bias": dbias}, runs, {"x": x}, dy_ff)

    tokens = np.array([[1, 4, 1, 0, 5], [2, 2, 3, 1, 1]])  # (B, L), repeated tokens
    table = rng.standard_normal((V, D))
    y, cache = embedding_forward(tokens, table, math.sqrt(D))
    expected = {"out": y, "weight": embedding_backward(dy, cache)}
    runs = _both(scratch.Embedding(V, D, math.sqrt(D)), native.Embedding(V, D, math.sqrt(D)), {"weight": table},
                 lambda m, t: m(torch.tensor(tokens)))
    results += _compare_all("embedding", expected, runs, {}, dy)

    y, cache = positional_encoding_forward(x, sinusoidal_table(L + 3, D))
    runs = _both(scratch.PositionalEncoding(D, L + 3), native.PositionalEncoding(D, L + 3), {}, _call_on_x)
    results += _compare_all("positional encoding", {"out": y, "dx": positional_encoding_backward(dy, cache)}, runs,
                            {"x": x}, dy)

    logits = 5.0 * rng.standard_normal((B, L, V))
    dz = rng.standard_normal((B, L, V))
    softmaxes = (("softmax", softmax_forward, softmax_backward, scratch_softmax.softmax, native_softmax.softmax),
                 ("log-softmax", log_softmax_forward, log_softmax_backward, scratch_softmax.log_softmax,
                  native_softmax.log_softmax))
    for label, forward, backward, scratch_fn, native_fn in softmaxes:
        z, cache = forward(logits)
        runs = [(impl, nn.Module(), {}, lambda t, f=f: f(t["x"])) for impl, f in (("scratch", scratch_fn),
                                                                                   ("native", native_fn))]
        results += _compare_all(label, {"out": z, "dx": backward(dz, cache)}, runs, {"x": logits}, dz)

    ffn = {"linear1.weight": rng.standard_normal((D_FF, D)) / math.sqrt(D), "linear1.bias": rng.standard_normal(D_FF),
           "linear2.weight": rng.standard_normal((D, D_FF)) / math.sqrt(D_FF), "linear2.bias": rng.standard_normal(D)}
    keep = rng.random((B, L, D_FF)) >= DROPOUT_P
    for activation in ACTIVATIONS:
        for p, keep_p in ((DROPOUT_P, keep), (0.0, None)):
            y, cache = feed_forward_forward(x, ffn, activation, p, dropout_keep=keep_p)
            dx, grads = feed_forward_backward(dy, cache)
            keep_t = None if keep_p is None else torch.tensor(keep_p)
            s = scratch.FeedForward(D, D_FF, activation, p).train()
            runs = [("scratch", s, ffn, lambda t, m=s, k=keep_t: m(t["x"], k))]
            if p == 0.0:
                n = native.FeedForward(D, D_FF, activation, p).train()
                runs.append(("native", n, ffn, lambda t, m=n: m(t["x"])))
            results += _compare_all(f"feed-forward {activation} p={p}", {"out": y, "dx": dx, **grads}, runs,
                                    {"x": x}, dy)

    norm = {"weight": 1.0 + 0.3 * rng.standard_normal(D), "bias": rng.standard_normal(D)}
    x_shifted = 2.0 + 3.0 * x
    y, cache = layer_norm_forward(x_shifted, norm["weight"], norm["bias"])
    dx, dweight, dbias = layer_norm_backward(dy, cache)
    runs = _both(scratch.LayerNorm(D), native.LayerNorm(D), norm, _call_on_x)
    results += _compare_all("layer norm", {"out": y, "dx": dx, "weight": dweight, "bias": dbias}, runs,
                            {"x": x_shifted}, dy)

    keep = rng.random((B, L, D)) >= DROPOUT_P
    for p, keep_p in ((DROPOUT_P, keep), (0.0, None)):
        y, cache = dropout_forward(x, p, keep=keep_p)
        keep_t = None if keep_p is None else torch.tensor(keep_p)
        s = scratch.Dropout(p).train()
        runs = [("scratch", s, {}, lambda t, m=s, k=keep_t: m(t["x"], k))]
        if p == 0.0:
            n = native.Dropout(p).train()
            runs.append(("native", n, {}, lambda t, m=n: m(t["x"])))
        results += _compare_all(f"dropout p={p}", {"out": y, "dx": dropout_backward(dy, cache)}, runs, {"x": x}, dy)

    targets = rng.integers(0, V, (B, L))
    targets[1, 3:] = IGNORE_INDEX
    dloss = np.array(1.0)
    for name, forward, backward, scratch_loss, native_loss in (
        ("cross-entropy (torch smoothing eps/V)", cross_entropy_forward, cross_entropy_backward,
         scratch_losses.cross_entropy, native_losses.cross_entropy),
        ("cross-entropy (paper smoothing eps/(V-1))", paper_label_smoothing_forward, paper_label_smoothing_backward,
         scratch_losses.paper_label_smoothing_loss, native_losses.paper_label_smoothing_loss),
    ):
        loss, cache = forward(logits, targets, IGNORE_INDEX, LABEL_SMOOTHING)
        expected = {"out": loss, "dlogits": backward(1.0, cache)}
        runs = [(label, nn.Module(), {}, lambda t, f=f: f(t["logits"], torch.tensor(targets), IGNORE_INDEX,
                                                           LABEL_SMOOTHING))
                for label, f in (("scratch", scratch_loss), ("native", native_loss))]
        results += _compare_all(name, expected, runs, {"logits": logits}, dloss)
    return results
