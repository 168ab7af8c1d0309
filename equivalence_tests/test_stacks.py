"""Encoder and decoder stacks: the three agree with distinct layers and an optional final norm; backward is right."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence_tests.test_layers import (
    assert_backward_matches_finite_differences,
    assert_three_agree,
    block_cases,
    configs,
)
from reference.config import TransformerConfig
from reference.stacks import decoder_forward, encoder_forward, encoder_param_shapes
from torch_impl.convert import load_native, native_params
from torch_impl.native.stacks import Encoder as NativeEncoder
from torch_impl.registry import BLOCKS
from triad.harness.blocks import block_errors, fixed_case, random_params, reference_block, torch_block
from triad.tolerance import F64_REL_BOUND


@pytest.mark.parametrize("block", ["encoder", "decoder"])
@given(data=st.data(), config=configs(max_layers=3))
@settings(max_examples=20)  # up to 3 layers of three implementations per example
def test_stack_grads_agree_across_implementations(block: str, data: st.DataObject, config: TransformerConfig) -> None:
    assert_three_agree(block, config, data.draw(block_cases(block, config)))


@pytest.mark.parametrize("block", ["encoder", "decoder"])
@given(data=st.data(), config=configs(max_layers=2, max_d_head=2))
@settings(max_examples=3)  # finite differences over two layers' parameters: ~300 forwards per example
def test_reference_stack_backward_matches_finite_differences(block: str, data: st.DataObject,
                                                             config: TransformerConfig) -> None:
    """For the decoder this checks that dmemory sums every layer's contribution."""
    assert_backward_matches_finite_differences(block, config, data.draw(block_cases(block, config, max_len=2)))


def test_native_stacks_start_with_identical_layers_and_load_distinct_ones() -> None:
    """torch's _get_clones deep-copies one layer; comparisons must load different weights into each."""
    config = TransformerConfig(d_model=4, n_heads=2, d_ff=3, n_encoder_layers=2, dropout=0.0)
    module = NativeEncoder(config).double()
    first, second = (dict(layer.state_dict()) for layer in module.stack.layers)
    assert all(torch.equal(first[key], second[key]) for key in first)
    params = random_params(encoder_param_shapes(config), np.random.default_rng(20))
    load_native(module.stack, params)
    loaded = native_params(module.stack)
    assert not torch.equal(loaded["layers.0.self_attn.q_proj.weight"], loaded["layers.1.self_attn.q_proj.weight"])
    # A stack of two *different* layers is not a stack of the first layer twice: the test cases can tell.
    case = fixed_case("encoder", config, seed=21)
    repeated = {**case, "params": {**case["params"], **{key.replace("layers.0", "layers.1"): value for key, value
                                                         in case["params"].items() if key.startswith("layers.0")}}}
    assert not np.allclose(reference_block("encoder", config, case)[0]["out"],
                           reference_block("encoder", config, repeated)[0]["out"])


@pytest.mark.parametrize("block", ["encoder", "decoder"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_scratch_stack_dropout_agrees_with_reference_given_the_same_keep_masks(block: str, norm_first: bool) -> None:
    config = TransformerConfig(d_model=6, n_heads=3, d_ff=4, n_encoder_layers=2, n_decoder_layers=2, dropout=0.2,
                               norm_first=norm_first)
    case = fixed_case(block, config, seed=22)
    expected, keeps = reference_block(block, config, case, training=True, rng=np.random.default_rng(1))
    assert {key.split(".")[1] for key in keeps} == {"0", "1"}  # masks for every layer, keyed layers.{i}.<site>
    errors = block_errors(torch_block(block, config, case, native=False, dropout_keeps=keeps), expected)
    assert max(errors.values()) <= F64_REL_BOUND


def test_final_norm_is_present_exactly_when_configured() -> None:
    for final_norm in (False, True):
        config = TransformerConfig(d_model=4, n_heads=2, d_ff=3, n_encoder_layers=1, n_decoder_layers=1,
                                   final_norm=final_norm)
        for block in ("encoder", "decoder"):
            keys = set(BLOCKS[block].param_shapes(config))
            assert ("norm.weight" in keys) is final_norm
            assert set(BLOCKS[block].scratch(config).state_dict()) == keys
            assert set(native_params(BLOCKS[block].native(config).stack)) == keys


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
@pytest.mark.parametrize("fastpath", [False, True])
def test_native_encoder_eval_no_grad_agrees_on_non_padded_queries(fastpath: bool) -> None:
    """Eval + no_grad with a padding mask: with the fast path on torch runs nested tensors (checked) and zeroes
    padded query rows before the final norm (pytorch #86120), so only non-padded rows are compared."""
    config = TransformerConfig(d_model=8, n_heads=2, d_ff=6, n_encoder_layers=2, dropout=0.0)
    case = fixed_case("encoder", config, seed=23)
    expected, _ = reference_block("encoder", config, case)
    module = NativeEncoder(config).double().eval()
    load_native(module.stack, case["params"])
    nested = mock.Mock(wraps=torch._nested_tensor_from_mask)
    torch.backends.mha.set_fastpath_enabled(fastpath)
    try:
        with torch.no_grad(), mock.patch.object(torch, "_nested_tensor_from_mask", nested):
            out = module(torch.tensor(case["x"]), torch.tensor(case["src_mask"])).numpy()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert nested.called is fastpath
    real = case["src_mask"][:, 0, 0, :]  # (B, L)
    assert not real.all()
    assert block_errors({"out": out[real]}, {"out": expected["out"][real]})["out"] <= F64_REL_BOUND


def test_bad_stack_inputs_name_the_argument() -> None:
    config = TransformerConfig(d_model=4, n_heads=2, d_ff=3, n_encoder_layers=2, n_decoder_layers=1)
    rng = np.random.default_rng(24)
    params = random_params(encoder_param_shapes(config), rng)
    x = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"params: missing key 'layers.1.norm2.bias', expected shape \(4,\)"):
        encoder_forward(x, {k: v for k, v in params.items() if k != "layers.1.norm2.bias"}, config)
    with pytest.raises(ValueError, match=r"params: unexpected key 'layers.2.norm1.weight'"):
        encoder_forward(x, {**params, "layers.2.norm1.weight": np.ones(4)}, config)
    decoder_params = random_params(BLOCKS["decoder"].param_shapes(config), rng)
    with pytest.raises(ValueError, match=r"memory: expected \(B, L, d_model\) with d_model=4, got \(2, 3\)"):
        decoder_forward(x, rng.standard_normal((2, 3)), decoder_params, config)
    with pytest.raises(ValueError, match=r"memory_mask: expected a shape broadcastable to \(B, H, Lq, Lk\) = "
                                         r"\(2, 2, 3, 5\), got \(3, 3\)"):
        decoder_forward(x, rng.standard_normal((2, 5, 4)), decoder_params, config, memory_mask=np.ones((3, 3), bool))
