"""``triad check`` for the attention blocks: multi-head attention, encoder/decoder layers and stacks.

Each check builds one fixed float64 case (odd sizes, padding and causal masks, Lq != Lk for
cross-attention) with ``triad.harness.blocks``, runs the hand-written reference forward and backward,
and compares scratch and native (parameters copied through ``torch_impl.convert``) with it: the output,
the input gradients and every parameter gradient, against ``F64_REL_BOUND``.
"""

from __future__ import annotations

import numpy as np
import torch

from reference.config import TransformerConfig
from reference.multi_head_attention import mha_backward, mha_forward, mha_param_shapes
from torch_impl.native import multi_head_attention as native_mha
from torch_impl.scratch import multi_head_attention as scratch_mha
from triad.agreement.base import ComponentResult
from triad.harness.blocks import (
    block_errors,
    block_magnitudes,
    fixed_case,
    random_params,
    reference_block,
    run_torch_block,
    torch_block,
)
from triad.tolerance import F64_REL_BOUND, mismatch_lines


def _result(name: str, implementations: str, actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]
            ) -> ComponentResult:
    """One line of ``triad check``: the output, each input gradient, and the worst of all parameter gradients."""
    errors = block_errors(actual, expected)
    inputs = {key: err for key, err in errors.items() if key.startswith("d") and "." not in key}
    params = [err for key, err in errors.items() if key != "out" and key not in inputs]
    grads = inputs | {f"params ({len(params)})": max(params)}
    result = ComponentResult(name, implementations, "float64", errors["out"], grads, F64_REL_BOUND)
    result.where = mismatch_lines(actual, expected, F64_REL_BOUND, block_magnitudes(expected))
    return result


def check_mha() -> list[ComponentResult]:
    """Cross-attention (Lq 5, Lk 3), d_model 6 in 3 heads, the second sequence's last key padded."""
    rng = np.random.default_rng(0)
    B, Lq, Lk, D, H = 2, 5, 3, 6, 3
    params = random_params(mha_param_shapes(D), rng)
    x_q, x_kv, dy = rng.standard_normal((B, Lq, D)), rng.standard_normal((B, Lk, D)), rng.standard_normal((B, Lq, D))
    keep = np.array([[True] * Lk, [True] * (Lk - 1) + [False]])[:, None, None, :]  # (B, 1, 1, Lk)
    y, cache = mha_forward(x_q, x_kv, params, H, keep)
    dx_q, dx_kv, grads = mha_backward(dy, cache)
    expected = {"out": y, "dx_q": dx_q, "dx_kv": dx_kv, **grads}
    results = []
    for name, cls in (("scratch", scratch_mha.MultiHeadAttention), ("native", native_mha.MultiHeadAttention)):
        module = cls(D, H)
        actual = run_torch_block(module, params, {"x_q": x_q, "x_kv": x_kv}, dy,
                                 lambda t, m=module: m(t["x_q"], t["x_kv"], torch.tensor(keep)),
                                 module.mha if name == "native" else None)
        results.append(_result("multi-head attention", f"{name} vs reference", actual, expected))
    return results


def _check_block(block: str, label: str) -> list[ComponentResult]:
    """Post-norm and pre-norm, 2 layers for the stacks, d_model 6 in 3 heads, GELU, padding and causal masks."""
    results = []
    for norm_first in (False, True):
        config = TransformerConfig(d_model=6, n_heads=3, d_ff=10, n_encoder_layers=2, n_decoder_layers=2,
                                   dropout=0.0, activation="gelu", norm_first=norm_first)
        case = fixed_case(block, config, seed=1)
        expected, _ = reference_block(block, config, case)
        placement = "pre-norm" if norm_first else "post-norm"
        for name, native in (("scratch", False), ("native", True)):
            actual = torch_block(block, config, case, native)
            results.append(_result(label, f"{name} vs reference, {placement}", actual, expected))
    return results


def check_encoder_layer() -> list[ComponentResult]:
    return _check_block("encoder_layer", "encoder layer")


def check_decoder_layer() -> list[ComponentResult]:
    return _check_block("decoder_layer", "decoder layer")


def check_encoder() -> list[ComponentResult]:
    return _check_block("encoder", "encoder stack")


def check_decoder() -> list[ComponentResult]:
    return _check_block("decoder", "decoder stack")
