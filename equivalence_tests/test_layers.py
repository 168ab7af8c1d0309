"""Encoder and decoder layers: reference, scratch and native agree, post-norm and pre-norm; the backward is right."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence_tests.component_helpers import assert_all_close
from reference.config import ACTIVATIONS, TransformerConfig
from reference.gradcheck import numerical_gradients
from reference.layers import encoder_layer_forward, encoder_layer_param_shapes
from torch_impl.convert import load_native, native_params
from torch_impl.native.layers import EncoderLayer as NativeEncoderLayer
from torch_impl.scratch.layers import EncoderLayer as ScratchEncoderLayer
from triad.harness.blocks import (
    BLOCKS,
    block_errors,
    block_magnitudes,
    fixed_case,
    make_mask,
    random_params,
    reference_block,
    torch_block,
)
from triad.tolerance import F64_REL_BOUND, FD_REL_BOUND, FD_STEP, max_rel_err

SELF_MASKS = ("none", "padding", "causal", "causal_padding", "random_keep", "additive")
MEMORY_MASKS = ("none", "padding", "random_keep", "additive")


@st.composite
def configs(draw: st.DrawFn, max_layers: int = 1, max_d_head: int = 3, dropout: float = 0.0) -> TransformerConfig:
    """Small configs: odd d_head and head counts, every activation, both norm placements, bias and final norm."""
    n_heads = draw(st.integers(1, 3))
    # d_model >= 3: over D <= 2 features a layer norm's input gradient is 0 up to rounding (it projects dy
    # away from 1 and from x_hat, which span everything), so every gradient upstream is pure rounding noise.
    min_d_head = -(-3 // n_heads)
    d_head = draw(st.integers(min_d_head, max(min_d_head, max_d_head)))
    n_layers = draw(st.integers(1, max_layers))
    return TransformerConfig(
        d_model=n_heads * d_head, n_heads=n_heads, d_ff=draw(st.integers(1, 5)), n_encoder_layers=n_layers,
        n_decoder_layers=n_layers, dropout=dropout, activation=draw(st.sampled_from(ACTIVATIONS)),
        norm_first=draw(st.booleans()), bias=draw(st.booleans()), final_norm=draw(st.booleans()),
    )


@st.composite
def block_cases(draw: st.DrawFn, block: str, config: TransformerConfig, max_len: int = 5) -> dict:
    """Inputs, masks, distinct random parameters and dy for ``block`` (Lt != Ls allowed for decoders)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    B, Lt, Ls = draw(st.integers(1, 2)), draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    D, H = config.d_model, config.n_heads
    case = {"params": random_params(BLOCKS[block].param_shapes(config), rng), "x": rng.standard_normal((B, Lt, D)),
            "dy": rng.standard_normal((B, Lt, D))}
    if BLOCKS[block].has_memory:
        case["memory"] = rng.standard_normal((B, Ls, D))
        case["tgt_mask"] = make_mask(draw(st.sampled_from(SELF_MASKS)), B, H, Lt, Lt, rng)
        case["memory_mask"] = make_mask(draw(st.sampled_from(MEMORY_MASKS)), B, H, Lt, Ls, rng)
    else:
        case["src_mask"] = make_mask(draw(st.sampled_from(SELF_MASKS)), B, H, Lt, Lt, rng)
    return case


def assert_three_agree(block: str, config: TransformerConfig, case: dict) -> None:
    expected, _ = reference_block(block, config, case)
    for name, native in (("scratch", False), ("native", True)):
        assert_all_close(torch_block(block, config, case, native), expected, F64_REL_BOUND,
                         block_magnitudes(expected), f"{name} {block}")


def assert_backward_matches_finite_differences(block: str, config: TransformerConfig, case: dict) -> None:
    analytic, _ = reference_block(block, config, case)
    inputs = {"x": case["x"], **({"memory": case["memory"]} if "memory" in case else {}), **case["params"]}
    forward = lambda: reference_block(block, config, case)[0]["out"]  # noqa: E731  # reads the perturbed arrays
    numeric = numerical_gradients(forward, inputs, case["dy"], h=FD_STEP)
    numeric = {("d" + k if k in ("x", "memory") else k): v for k, v in numeric.items()}
    assert_all_close(analytic, numeric, FD_REL_BOUND, block_magnitudes(numeric), f"{block} vs finite differences")


@given(data=st.data(), config=configs())
def test_encoder_layer_grads_agree_across_implementations(data: st.DataObject, config: TransformerConfig) -> None:
    assert_three_agree("encoder_layer", config, data.draw(block_cases("encoder_layer", config)))


@given(data=st.data(), config=configs())
def test_decoder_layer_grads_agree_across_implementations(data: st.DataObject, config: TransformerConfig) -> None:
    assert_three_agree("decoder_layer", config, data.draw(block_cases("decoder_layer", config)))


@pytest.mark.parametrize("block", ["encoder_layer", "decoder_layer"])
@given(data=st.data(), config=configs(max_d_head=2))
@settings(max_examples=10)  # finite differences: two full forwards per parameter element (~150 of them)
def test_reference_layer_backward_matches_finite_differences(block: str, data: st.DataObject,
                                                             config: TransformerConfig) -> None:
    assert_backward_matches_finite_differences(block, config, data.draw(block_cases(block, config, max_len=3)))


@pytest.mark.parametrize("block", ["encoder_layer", "decoder_layer"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_scratch_layer_dropout_agrees_with_reference_given_the_same_keep_masks(block: str, norm_first: bool) -> None:
    """Dropout on at every site (attention, dropout1..3, the FFN's inner dropout), driven by the reference's masks."""
    config = TransformerConfig(d_model=6, n_heads=2, d_ff=5, dropout=0.3, norm_first=norm_first, activation="gelu")
    case = fixed_case(block, config, seed=11)
    expected, keeps = reference_block(block, config, case, training=True, rng=np.random.default_rng(0))
    assert set(keeps) == {"self_attn", "dropout1", "ffn", "dropout2"} | (
        {"cross_attn", "dropout3"} if block == "decoder_layer" else set())
    errors = block_errors(torch_block(block, config, case, native=False, dropout_keeps=keeps), expected)
    assert max(errors.values()) <= F64_REL_BOUND
    assert not np.allclose(expected["out"], reference_block(block, config, case)[0]["out"])  # dropout acted


@pytest.mark.parametrize("fastpath", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_native_encoder_layer_eval_no_grad_agrees_on_non_padded_queries(fastpath: bool, activation: str) -> None:
    """Eval + no_grad. With the fast path on, relu/gelu run torch's fused layer (checked) and padded query rows
    are not compared; tanh-GELU must *not* take it (the fast path would compute exact GELU, 5e-4 off)."""
    config = TransformerConfig(d_model=8, n_heads=2, d_ff=6, dropout=0.0, activation=activation)
    case = fixed_case("encoder_layer", config, seed=12)
    expected, _ = reference_block("encoder_layer", config, case)
    module = NativeEncoderLayer(config).double().eval()
    load_native(module.layer, case["params"])
    fused = mock.Mock(wraps=torch._transformer_encoder_layer_fwd)
    torch.backends.mha.set_fastpath_enabled(fastpath)
    try:
        with torch.no_grad(), mock.patch.object(torch, "_transformer_encoder_layer_fwd", fused):
            out = module(torch.tensor(case["x"]), torch.tensor(case["src_mask"])).numpy()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert fused.called is (fastpath and activation != "gelu_tanh")
    real = case["src_mask"][:, 0, 0, :]  # (B, L): non-padded query positions
    assert block_errors({"out": out[real]}, {"out": expected["out"][real]})["out"] <= F64_REL_BOUND


def test_scratch_and_reference_layers_have_the_same_parameter_keys_as_native_after_conversion() -> None:
    config = TransformerConfig(d_model=6, n_heads=3, d_ff=4, bias=False)
    for block in ("encoder_layer", "decoder_layer"):
        reference_keys = set(BLOCKS[block].param_shapes(config))
        assert set(BLOCKS[block].scratch(config).state_dict()) == reference_keys
        assert set(native_params(BLOCKS[block].native(config).layer)) == reference_keys


def test_bad_layer_inputs_name_the_argument() -> None:
    config = TransformerConfig(d_model=4, n_heads=2, d_ff=3, dropout=0.1)
    rng = np.random.default_rng(13)
    params = random_params(encoder_layer_param_shapes(config), rng)
    x = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"src_mask: expected a shape broadcastable to \(B, H, Lq, Lk\) = "
                                         r"\(2, 2, 3, 3\), got \(2, 1, 1, 4\)"):
        encoder_layer_forward(x, params, config, np.ones((2, 1, 1, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"params\['ffn.linear1.weight'\]: expected shape \(3, 4\), got \(4, 3\)"):
        encoder_layer_forward(x, {**params, "ffn.linear1.weight": np.zeros((4, 3))}, config)
    with pytest.raises(ValueError, match=r"params: unexpected key 'norm3.weight'"):
        encoder_layer_forward(x, {**params, "norm3.weight": np.ones(4)}, config)
    with pytest.raises(ValueError, match=r"x: expected \(B, L, d_model\) with d_model=4, got \(2, 3, 5\)"):
        encoder_layer_forward(rng.standard_normal((2, 3, 5)), params, config)
    with pytest.raises(ValueError, match=r"rng: training with config.dropout > 0 needs a seeded"):
        encoder_layer_forward(x, params, config, training=True)
    with pytest.raises(ValueError, match=r"dropout_keeps: given, but dropout is off"):
        encoder_layer_forward(x, params, config, dropout_keeps={"dropout1": np.ones((2, 3, 4), dtype=bool)})
    bad_mask = torch.ones(2, 1, 1, 4, dtype=torch.bool)
    for module in (ScratchEncoderLayer(config), NativeEncoderLayer(config)):
        with pytest.raises(ValueError, match=r"src_mask: expected a shape broadcastable to \(B, H, Lq, Lk\)"):
            module(torch.zeros(2, 3, 4), bad_mask)
    with pytest.raises(ValueError, match=r"d_model: expected a multiple of n_heads=4, got 6"):
        TransformerConfig(d_model=6, n_heads=4)


def test_native_encoder_in_eval_without_grad_honours_a_float_mask() -> None:
    """torch's eval fast path turns finite float masks into booleans (pytorch #118628) and returned NaN here;
    the native wrappers keep it off when a float mask is given, so eval/no-grad equals train mode at dropout 0."""
    from torch_impl.native.stacks import Encoder as NativeEncoder

    config = TransformerConfig(d_model=8, n_heads=2, d_ff=6, dropout=0.0, n_encoder_layers=2)
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    mask = torch.randn(2, 1, 5, 5, dtype=torch.float64)  # (B, 1, L, L), finite additive values
    for module in (NativeEncoderLayer(config).double(), NativeEncoder(config).double()):
        expected = module.train()(x, mask)
        with torch.no_grad():
            got = module.eval()(x, mask)
        assert torch.isfinite(got).all()
        assert max_rel_err(got.numpy(), expected.detach().numpy()) <= F64_REL_BOUND
    assert torch.backends.mha.get_fastpath_enabled(), "the fast path is restored afterwards"
