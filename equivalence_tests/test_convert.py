"""The converter: flat dictionary <-> native ``state_dict`` is bitwise exact and rejects bad keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from reference.config import TransformerConfig
from reference.multi_head_attention import mha_param_shapes
from torch_impl.convert import (
    from_native,
    load_native,
    load_scratch,
    native_grads,
    native_params,
    scratch_params,
    to_native,
    to_numpy,
    to_torch,
)
from torch_impl.native.layers import DecoderLayer, EncoderLayer
from torch_impl.native.multi_head_attention import MultiHeadAttention as NativeMHA
from torch_impl.native.stacks import Decoder, Encoder
from torch_impl.registry import BLOCKS
from torch_impl.scratch.multi_head_attention import MultiHeadAttention as ScratchMHA
from triad.harness.blocks import random_params


def shapes_of(params: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in params.items()}


def native_modules(config: TransformerConfig) -> dict[str, nn.Module]:
    """Every block's torch module, in float64, as ``load_native`` receives it."""
    transformer = nn.Transformer(
        config.d_model, config.n_heads, config.n_encoder_layers, config.n_decoder_layers, config.d_ff, 0.0,
        batch_first=True, bias=config.bias,
    )
    modules = {
        "mha": NativeMHA(config.d_model, config.n_heads, bias=config.bias).mha,
        "encoder_layer": EncoderLayer(config).layer,
        "decoder_layer": DecoderLayer(config).layer,
        "encoder": Encoder(config).stack,
        "decoder": Decoder(config).stack,
        "transformer": transformer,
    }
    return {name: module.double() for name, module in modules.items()}


configs = st.builds(
    lambda heads, d_head, bias, final_norm, n_layers: TransformerConfig(
        d_model=heads * d_head, n_heads=heads, d_ff=5, n_encoder_layers=n_layers, n_decoder_layers=n_layers,
        dropout=0.0, bias=bias, final_norm=final_norm,
    ),
    st.integers(1, 3), st.integers(1, 3), st.booleans(), st.booleans(), st.integers(1, 2),
)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # nn.Transformer's note on its fast path
@given(config=configs, seed=st.integers(0, 2**32 - 1))
@settings(max_examples=10)  # six modules per example, each built by torch: ~0.1 s an example
def test_native_round_trip_is_bitwise_exact(config: TransformerConfig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, module in native_modules(config).items():
        params = random_params(shapes_of(native_params(module)), rng)
        load_native(module, params)
        back = to_numpy(native_params(module))
        assert set(back) == set(params), name
        for key, value in params.items():
            assert back[key].dtype == value.dtype and np.array_equal(back[key], value), f"{name}: {key}"
        again = from_native(to_native(params))  # the pure renaming, on NumPy arrays
        assert all(np.array_equal(again[key], value) for key, value in params.items()), name


def test_in_proj_weight_packs_q_k_v_in_that_order() -> None:
    params = random_params({f"self_attn.{p}_proj.{t}": (4, 4) if t == "weight" else (4,)
                            for p in ("q", "k", "v", "out") for t in ("weight", "bias")}, np.random.default_rng(0))
    native = to_native(params)
    assert set(native) == {"self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                           "self_attn.out_proj.bias"}
    for i, name in enumerate("qkv"):
        rows = slice(4 * i, 4 * (i + 1))
        assert np.array_equal(native["self_attn.in_proj_weight"][rows], params[f"self_attn.{name}_proj.weight"])
        assert np.array_equal(native["self_attn.in_proj_bias"][rows], params[f"self_attn.{name}_proj.bias"])


def test_names_map_to_torch_layer_names() -> None:
    native = to_native({"layers.0.cross_attn.out_proj.weight": np.zeros((2, 2)),
                        "layers.0.ffn.linear1.weight": np.zeros((3, 2)), "layers.0.norm3.bias": np.zeros(2),
                        "norm.weight": np.zeros(2), "generator.weight": np.zeros((5, 2))})
    assert set(native) == {"layers.0.multihead_attn.out_proj.weight", "layers.0.linear1.weight",
                           "layers.0.norm3.bias", "norm.weight", "generator.weight"}


def test_native_grads_split_in_proj_grad_in_three() -> None:
    module = NativeMHA(6, 3).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    module(x, x).sum().backward()
    grads = native_grads(module.mha)
    packed = module.mha.in_proj_weight.grad.chunk(3)
    for name, chunk in zip("qkv", packed, strict=True):
        assert torch.equal(grads[f"{name}_proj.weight"], chunk)


def test_reference_scratch_round_trip_is_bitwise_exact() -> None:
    params = random_params({"w": (3, 5), "b": (3,)}, np.random.default_rng(1))
    back = to_numpy(to_torch(params))
    assert all(back[k].dtype == np.float64 and np.array_equal(back[k], v) for k, v in params.items())
    assert to_torch(params, torch.float32)["w"].dtype == torch.float32


@pytest.mark.parametrize("native", [False, True])
def test_loading_rejects_missing_extra_and_misshaped_keys(native: bool) -> None:
    """Errors name the key in the flat dictionary's names (also for native, whose own key is in_proj_weight)."""
    module = (NativeMHA if native else ScratchMHA)(4, 2).double()
    target, loader = (module.mha, load_native) if native else (module, load_scratch)
    good = random_params(mha_param_shapes(4), np.random.default_rng(2))
    missing = {key: value for key, value in good.items() if key != "k_proj.weight"}
    with pytest.raises(ValueError, match=r"params: missing key 'k_proj.weight', expected shape \(4, 4\)"):
        loader(target, missing)
    with pytest.raises(ValueError, match=r"params: unexpected key 'typo\.weight'"):
        loader(target, {**good, "typo.weight": np.ones(4)})
    with pytest.raises(ValueError, match=r"params\['v_proj.bias'\]: expected shape \(4,\), got \(3,\)"):
        loader(target, {**good, "v_proj.bias": np.ones(3)})


@pytest.mark.parametrize("block", ["encoder_layer", "decoder_layer", "encoder", "decoder"])
@pytest.mark.parametrize("bias", [False, True])
def test_scratch_and_native_hold_the_same_flat_keys_and_round_trip_bitwise(block: str, bias: bool) -> None:
    config = TransformerConfig(d_model=6, n_heads=3, d_ff=4, n_encoder_layers=2, n_decoder_layers=2, bias=bias)
    params = random_params(BLOCKS[block].param_shapes(config), np.random.default_rng(3))
    scratch = BLOCKS[block].scratch(config).double()
    native = getattr(BLOCKS[block].native(config).double(), BLOCKS[block].native_core)
    load_scratch(scratch, params)
    load_native(native, params)
    for loaded in (to_numpy(scratch_params(scratch)), to_numpy(native_params(native))):
        assert set(loaded) == set(params)
        assert all(np.array_equal(loaded[key], value) for key, value in params.items())


def test_to_native_names_a_missing_projection_to_pack() -> None:
    with pytest.raises(ValueError, match=r"missing key 'self_attn.v_proj.weight', expected shape \(4, 4\)"):
        to_native({"self_attn.q_proj.weight": np.ones((4, 4)), "self_attn.k_proj.weight": np.ones((4, 4))})


def test_from_native_rejects_an_in_proj_not_three_blocks() -> None:
    with pytest.raises(ValueError, match=r"state_dict\['in_proj_weight'\]: expected \(3 \* d_model, ...\)"):
        from_native({"in_proj_weight": np.ones((4, 4))})
