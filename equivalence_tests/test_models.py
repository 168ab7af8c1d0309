"""The three model kinds: reference, scratch and native agree; the reference backward is right; bad input is refused.

Every property runs in float64 on small models (d_model <= 6, <= 2 layers per stack) whose every parameter is
drawn at random, so a swapped layer or a mixed-up key shows; padding and causal masks are always on.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from equivalence_tests.component_helpers import assert_all_close
from reference import models as ref
from reference.config import ACTIVATIONS, TransformerConfig
from reference.gradcheck import numerical_gradients
from torch_impl.convert import load_native, load_scratch
from torch_impl.registry import MODEL_KINDS, TORCH_MODELS
from triad.harness.models import (
    grad_magnitudes,
    make_case,
    reference_forward,
    reference_grads,
    reference_loss,
    run_reference_model,
    run_torch_model,
)
from triad.tolerance import F64_REL_BOUND, FD_REL_BOUND, max_rel_err

IMPLEMENTATIONS = ("scratch", "native")


@st.composite
def model_cases(draw: st.DrawFn, kind: str):
    """A small config with every switch drawn (norm placement, final norm, tying, bias, activation, scaling,
    layer-norm eps, padding id)."""
    n_heads = draw(st.sampled_from([1, 2]))
    # d_model >= 3: a layer norm over 2 entries is ill-conditioned when they nearly agree (a drawn d_model=2
    # case measured 1.3e-10 relative between two correct float64 implementations).
    d_head = draw(st.integers(3, 4))
    max_len = draw(st.integers(4, 7))
    src_vocab_size, tgt_vocab_size = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    config = TransformerConfig(
        d_model=n_heads * d_head,
        n_heads=n_heads,
        d_ff=draw(st.integers(1, 5)),
        n_encoder_layers=draw(st.integers(0, 2)),  # 0: the stack is its final norm
        n_decoder_layers=draw(st.integers(0, 2)),
        dropout=0.0,
        activation=draw(st.sampled_from(ACTIVATIONS)),
        norm_first=draw(st.booleans()),
        bias=draw(st.booleans()),
        final_norm=draw(st.booleans()),
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        max_len=max_len,
        layer_norm_eps=draw(st.sampled_from([1e-5, 1e-6, 1e-2])),  # 1e-2: the eps visibly moves the result
        pad_id=draw(st.integers(0, min(src_vocab_size, tgt_vocab_size) - 1)),
        tie_weights=draw(st.booleans()),
        scale_embedding=draw(st.booleans()),
        n_outputs=draw(st.integers(1, 3)),
    )
    B = draw(st.integers(1, 3))
    Ls, Lt = draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    return make_case(kind, config, B, Ls, Lt, seed=draw(st.integers(0, 2**32 - 1)))


# ---------------------------------------------------------------------------------------------------------
# Agreement across the three implementations
# ---------------------------------------------------------------------------------------------------------


def _assert_agree(case, implementation: str) -> None:
    expected = run_reference_model(case)
    assert {k for k in expected if k.startswith("grad:")} == {f"grad:{k}" for k in case.params}
    actual = run_torch_model(case, implementation)
    assert set(actual) == set(expected), "every parameter has a gradient, under the flat dictionary's name"
    assert_all_close(actual, expected, F64_REL_BOUND, grad_magnitudes(expected), implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(case=model_cases("encoder_decoder"))
def test_encoder_decoder_logits_loss_and_grads_agree_across_implementations(case, implementation: str) -> None:
    _assert_agree(case, implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(case=model_cases("encoder_classifier"))
def test_encoder_classifier_outputs_loss_and_grads_agree_across_implementations(case, implementation: str) -> None:
    _assert_agree(case, implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(case=model_cases("decoder_lm"))
def test_decoder_lm_logits_loss_and_grads_agree_across_implementations(case, implementation: str) -> None:
    _assert_agree(case, implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("kind", "n_encoder", "n_decoder"), [("encoder_decoder", 0, 1), ("encoder_decoder", 1, 0),
                                                               ("encoder_classifier", 0, 0), ("decoder_lm", 0, 0)])
def test_a_stack_of_zero_layers_is_its_final_norm_in_all_three(kind: str, n_encoder: int, n_decoder: int,
                                                               implementation: str) -> None:
    # torch's stacks index their first layer and fail with none: native wraps them
    config = TransformerConfig(d_model=6, n_heads=2, d_ff=4, n_encoder_layers=n_encoder, n_decoder_layers=n_decoder,
                               dropout=0.0, src_vocab_size=5, tgt_vocab_size=5, max_len=6)
    _assert_agree(make_case(kind, config, 2, 4, 3, seed=0), implementation)


# ---------------------------------------------------------------------------------------------------------
# The reference backward against finite differences
# ---------------------------------------------------------------------------------------------------------

TINY = {"d_model": 4, "n_heads": 2, "d_ff": 3, "n_encoder_layers": 1, "n_decoder_layers": 1, "dropout": 0.0,
        "src_vocab_size": 5, "tgt_vocab_size": 6, "max_len": 4, "n_outputs": 3}
VARIANTS = {
    "post_norm": {},
    "pre_norm_no_final_norm_gelu": {"norm_first": True, "final_norm": False, "activation": "gelu"},
    "tied_no_bias_unscaled": {"tie_weights": True, "bias": False, "scale_embedding": False},
    "regressor": {"n_outputs": 1},  # the classifier's head only
    "training_dropout": {"dropout": 0.2, "norm_first": True},
}


@pytest.mark.parametrize(("kind", "variant"), [(kind, variant) for kind in MODEL_KINDS for variant in VARIANTS
                                               if variant != "regressor" or kind == "encoder_classifier"])
def test_reference_model_grads_match_finite_differences(kind: str, variant: str) -> None:
    """Every entry of every parameter (170 to 432 per model, all of them: no sampling), central differences
    on the loss.

    With dropout the generator is re-seeded for every evaluation, so each one draws the same keep-masks.
    """
    config = TransformerConfig(**{**TINY, **VARIANTS[variant]})
    case = make_case(kind, config, B=2, Ls=3, Lt=4, seed=7)
    training = config.dropout > 0

    def loss() -> np.ndarray:
        out, _ = reference_forward(case, training=training, rng=np.random.default_rng(0))
        return reference_loss(case, out)[0]

    expected = numerical_gradients(loss, case.params, np.float64(1.0))
    _, _, actual = reference_grads(case, training=training, rng=np.random.default_rng(0))
    assert set(actual) == set(expected)
    assert_all_close(actual, expected, FD_REL_BOUND, grad_magnitudes(expected), "finite differences")


# ---------------------------------------------------------------------------------------------------------
# Model-level traps: tied weights, embedding scale, causality, padding
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["encoder_decoder", "decoder_lm"])
def test_tied_weight_gradient_is_the_sum_of_both_uses(kind: str) -> None:
    """A tied model equals the untied one whose projection holds a copy of the embedding, and the tied
    gradient is the untied embedding gradient plus the untied projection gradient."""
    embed, head = ("tgt_embed", "generator") if kind == "encoder_decoder" else ("embed", "lm_head")
    tied = make_case(kind, TransformerConfig(**TINY, tie_weights=True), B=2, Ls=3, Lt=4, seed=3)
    untied = dataclasses.replace(tied, config=TransformerConfig(**TINY),
                                 params={**tied.params, f"{head}.weight": tied.params[f"{embed}.weight"].copy()})
    out_tied, _, grads_tied = reference_grads(tied)
    out_untied, _, grads_untied = reference_grads(untied)
    np.testing.assert_array_equal(out_tied, out_untied)
    both_uses = grads_untied[f"{embed}.weight"] + grads_untied[f"{head}.weight"]
    assert f"{head}.weight" not in grads_tied
    assert max_rel_err(grads_tied[f"{embed}.weight"], both_uses) <= F64_REL_BOUND


@pytest.mark.parametrize("implementation", ["reference", *IMPLEMENTATIONS])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_scale_embedding_multiplies_embeddings_by_sqrt_d_model(kind: str, implementation: str) -> None:
    """scale_embedding=True equals scale_embedding=False with every embedding table times sqrt(d_model)
    (catches a forgotten, doubled or wrongly rooted scale)."""
    sizes = {**TINY, "d_model": 6, "n_heads": 2}
    scaled = make_case(kind, TransformerConfig(**sizes), B=2, Ls=3, Lt=4, seed=5)
    plain = dataclasses.replace(scaled, config=TransformerConfig(**sizes, scale_embedding=False), params={
        k: v * math.sqrt(6) if k.endswith("embed.weight") else v for k, v in scaled.params.items()})
    if implementation == "reference":
        outs = [run_reference_model(case)["out"] for case in (scaled, plain)]
    else:
        outs = [run_torch_model(case, implementation)["out"] for case in (scaled, plain)]
    assert max_rel_err(outs[1], outs[0]) <= F64_REL_BOUND


def _outputs(kind: str, config: TransformerConfig, params: dict, tokens: np.ndarray, implementation: str
             ) -> np.ndarray:
    """The classifier's or the LM's output on ``tokens`` (no loss, no backward)."""
    if implementation == "reference":
        forward = ref.encoder_classifier_forward if kind == "encoder_classifier" else ref.decoder_lm_forward
        return forward(tokens, params, config)[0]
    module = TORCH_MODELS[implementation][kind](config).double().eval()
    (load_scratch if implementation == "scratch" else load_native)(module, params)
    with torch.no_grad():
        return module(torch.from_numpy(tokens)).numpy()


@pytest.mark.parametrize("implementation", ["reference", *IMPLEMENTATIONS])
def test_decoder_lm_logits_at_a_position_do_not_see_later_tokens(implementation: str) -> None:
    case = make_case("decoder_lm", TransformerConfig(**{**TINY, "max_len": 6}), B=2, Ls=1, Lt=6, seed=11)
    tokens = case.inputs["tokens"]
    changed = tokens.copy()
    changed[:, 3:] = (changed[:, 3:] + 1) % case.config.tgt_vocab_size  # (B, L): tokens 3.. differ
    before = _outputs("decoder_lm", case.config, case.params, tokens, implementation)
    after = _outputs("decoder_lm", case.config, case.params, changed, implementation)
    assert max_rel_err(after[:, :3], before[:, :3]) <= F64_REL_BOUND
    assert max_rel_err(after[:, 3:], before[:, 3:]) > 1e-3  # the later positions do see them


@pytest.mark.parametrize("implementation", ["reference", *IMPLEMENTATIONS])
def test_encoder_classifier_output_ignores_padding(implementation: str) -> None:
    """Appending pad tokens changes neither the attention (pads are masked keys) nor the mean (pads are left
    out), though the padded positions' own hidden states are anything."""
    config = TransformerConfig(**{**TINY, "max_len": 6})
    case = make_case("encoder_classifier", config, B=2, Ls=1, Lt=3, seed=13)
    tokens = np.array([[1, 2, 3], [4, 1, config.pad_id]])  # (B, 3)
    padded = np.concatenate([tokens, np.full((2, 3), config.pad_id)], axis=1)  # (B, 6)
    short = _outputs("encoder_classifier", config, case.params, tokens, implementation)
    long = _outputs("encoder_classifier", config, case.params, padded, implementation)
    assert max_rel_err(long, short) <= F64_REL_BOUND


# ---------------------------------------------------------------------------------------------------------
# Parameter count of the base model
# ---------------------------------------------------------------------------------------------------------


def _counts(config: TransformerConfig) -> dict[str, int]:
    """Parameters of the encoder-decoder in each implementation; torch modules built on the meta device
    (shapes only, no memory); a tied parameter counts once."""
    counts = {"reference": sum(math.prod(shape) for shape in ref.encoder_decoder_param_shapes(config).values())}
    with torch.device("meta"):
        for name, models in TORCH_MODELS.items():
            counts[name] = sum(p.numel() for p in models["encoder_decoder"](config).parameters())
    return counts


def test_base_config_parameter_count_is_nn_transformer_plus_embeddings_and_generator() -> None:
    """d=512, 8 heads, 6+6 layers, d_ff=2048: the same count in all three implementations, equal to
    nn.Transformer's own count plus the two embeddings and the generator (weight and bias)."""
    config = TransformerConfig()
    assert (config.d_model, config.n_heads, config.n_encoder_layers, config.n_decoder_layers, config.d_ff) == (
        512, 8, 6, 6, 2048)
    with torch.device("meta"):
        transformer = nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                                     dim_feedforward=2048)
        transformer_count = sum(p.numel() for p in transformer.parameters())
    D, V_src, V_tgt = config.d_model, config.src_vocab_size, config.tgt_vocab_size
    expected = transformer_count + V_src * D + V_tgt * D + (V_tgt * D + V_tgt)
    assert _counts(config) == dict.fromkeys(("reference", *IMPLEMENTATIONS), expected)


def test_tied_base_model_counts_the_shared_weight_once() -> None:
    tied = TransformerConfig(tie_weights=True)
    untied_count = _counts(TransformerConfig())["reference"]
    expected = untied_count - tied.tgt_vocab_size * tied.d_model
    assert _counts(tied) == dict.fromkeys(("reference", *IMPLEMENTATIONS), expected)


# ---------------------------------------------------------------------------------------------------------
# Bad input: each a clear error naming the argument
# ---------------------------------------------------------------------------------------------------------


def _with_id(tokens: np.ndarray, token_id: int) -> np.ndarray:
    bad = tokens.copy()
    bad[-1, 0] = token_id
    return bad


BAD_TOKENS = {  # name -> (make the bad tokens from good ones and the vocabulary size, error, message)
    "id_too_large": (lambda t, v: _with_id(t, v), ValueError, r"expected token ids in \[0, \d+\), got \d+"),
    "negative_id": (lambda t, v: _with_id(t, -1), ValueError, r"expected token ids in \[0, \d+\), got -1"),
    "longer_than_max_len": (lambda t, v: np.ones((t.shape[0], 5), dtype=t.dtype), ValueError,
                            r"sequence length 5 is longer than max_len=4"),
    "empty_sequence": (lambda t, v: t[:, :0], ValueError, r"expected a non-empty batch of non-empty sequences"),
    "float_ids": (lambda t, v: t.astype(np.float64), TypeError, r"expected integer token ids, got dtype float64"),
    "one_dimensional": (lambda t, v: t[0], ValueError, r"expected token ids of shape \(B, L\)"),
}


def _run_tokens(case, implementation: str, name: str, tokens: np.ndarray) -> None:
    inputs = {**case.inputs, name: tokens}
    if implementation == "reference":
        if case.kind == "encoder_decoder":
            ref.encoder_decoder_forward(inputs["src"], inputs["tgt"], case.params, case.config)
        else:
            _outputs(case.kind, case.config, case.params, tokens, "reference")
        return
    module = TORCH_MODELS[implementation][case.kind](case.config).double()
    if case.kind == "encoder_decoder":
        module(torch.from_numpy(inputs["src"]), torch.from_numpy(inputs["tgt"]))
    else:
        module(torch.from_numpy(tokens))


@pytest.mark.parametrize("bad", BAD_TOKENS)
@pytest.mark.parametrize("implementation", ["reference", *IMPLEMENTATIONS])
@pytest.mark.parametrize(("kind", "name"), [("encoder_decoder", "src"), ("encoder_decoder", "tgt"),
                                            ("encoder_classifier", "tokens"), ("decoder_lm", "tokens")])
def test_bad_token_ids_are_refused_naming_the_argument(kind: str, name: str, implementation: str, bad: str) -> None:
    config = TransformerConfig(**TINY)
    case = make_case(kind, config, B=2, Ls=3, Lt=4, seed=1)
    uses_src_vocab = name == "src" or kind == "encoder_classifier"
    vocab = config.src_vocab_size if uses_src_vocab else config.tgt_vocab_size
    make_bad, error, message = BAD_TOKENS[bad]
    with pytest.raises(error, match=rf"^{name}: {message}"):
        _run_tokens(case, implementation, name, make_bad(case.inputs[name], vocab))


@pytest.mark.parametrize("implementation", ["reference", *IMPLEMENTATIONS])
def test_classifier_refuses_a_sequence_of_only_padding(implementation: str) -> None:
    case = make_case("encoder_classifier", TransformerConfig(**TINY), B=2, Ls=1, Lt=3, seed=1)
    tokens = np.array([[1, 2, 0], [0, 0, 0]])  # pad_id 0
    with pytest.raises(ValueError, match=r"^tokens: sequence 1 holds only pad_id=0; nothing to pool"):
        _outputs("encoder_classifier", case.config, case.params, tokens, implementation)


def _mis_shaped(params: dict, key: str) -> dict:
    return {**params, key: np.zeros((*params[key].shape[:-1], params[key].shape[-1] + 1))}


BAD_PARAMS = {  # name -> (make the bad dictionary, message after "params")
    "missing": (lambda p, key: {k: v for k, v in p.items() if k != key}, r": missing key '{key}'"),
    "extra": (lambda p, key: {**p, "decoder.layers.9.norm1.weight": p[key]}, r": unexpected key 'decoder\.layers\.9"),
    "mis_shaped": (_mis_shaped, r"\['{key}'\]: expected shape"),
}


@pytest.mark.parametrize("bad", BAD_PARAMS)
@pytest.mark.parametrize("implementation", ["reference", *IMPLEMENTATIONS])
@pytest.mark.parametrize(("kind", "key"), [("encoder_decoder", "decoder.layers.0.cross_attn.k_proj.weight"),
                                           ("encoder_decoder", "generator.weight"),
                                           ("encoder_classifier", "head.bias"),
                                           ("decoder_lm", "decoder.layers.0.ffn.linear2.weight")])
def test_bad_parameter_dictionary_is_refused_naming_the_key(kind: str, key: str, implementation: str, bad: str
                                                            ) -> None:
    case = make_case(kind, TransformerConfig(**TINY), B=2, Ls=3, Lt=4, seed=1)
    make_bad, message = BAD_PARAMS[bad]
    params = make_bad(case.params, key)
    with pytest.raises(ValueError, match="^params" + message.format(key=re.escape(key))):
        if implementation == "reference":
            reference_forward(case, params)
        else:
            module = TORCH_MODELS[implementation][kind](case.config).double()
            (load_scratch if implementation == "scratch" else load_native)(module, params)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("n_outputs", 0, r"^n_outputs: expected a positive int \(1 for a regressor\), got 0"),
    ("pad_id", 32, r"^pad_id: expected an int in \[0, 32\) \(inside both vocabularies\), got 32"),
    ("pad_id", -1, r"^pad_id: expected an int in \[0, 32\)"),
    ("pad_id", True, r"^pad_id: expected an int in \[0, 32\)"),
])
def test_model_config_fields_out_of_range_are_refused_naming_the_field(field: str, value: object, message: str
                                                                       ) -> None:
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**{field: value})


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_native_models_in_eval_without_grad_agree_with_reference(kind: str) -> None:
    """Eval mode without gradients lets torch take its fast path (even heads, ReLU, batch first, post-norm).
    In the encoder-decoder's encoder (nested tensors) padded rows then come out different (measured with
    torch 2.13: up to 2.0 off the fast-path-off result; pytorch #86120). Nothing defined may change: padded
    memory keys are masked (``memory_key_padding_mask``, pytorch #132136) and the classifier leaves padded rows
    out of its mean, so every output still agrees with the reference."""
    config = TransformerConfig(**{**TINY, "d_model": 8, "n_heads": 2, "max_len": 8})
    case = make_case(kind, config, B=3, Ls=6, Lt=5, seed=17)
    expected = reference_forward(case)[0]
    module = TORCH_MODELS["native"][kind](config).double().eval()
    load_native(module, case.params)
    tensors = {name: torch.from_numpy(value) for name, value in case.inputs.items()}
    with torch.no_grad():
        out = module(**tensors) if kind == "encoder_decoder" else module(tensors["tokens"])
    assert max_rel_err(out.numpy(), expected) <= F64_REL_BOUND


def test_native_encoder_decoder_in_eval_without_memory_mask_keeps_padded_memory_rows() -> None:
    """The nested-tensor fast path of nn.Transformer's encoder zeroes padded memory rows in eval/no-grad,
    and without memory_key_padding_mask the decoder then attends to those zeros (pytorch #132136).
    With only a source padding mask, native must still equal the reference."""
    from reference.masks import causal_mask, padding_mask
    from torch_impl.native.models import EncoderDecoder

    config = TransformerConfig(d_model=8, n_heads=2, d_ff=16, n_encoder_layers=2, n_decoder_layers=1, dropout=0.0,
                               src_vocab_size=11, tgt_vocab_size=11, max_len=16)
    rng = np.random.default_rng(0)
    params = ref.init_params(ref.encoder_decoder_param_shapes(config), rng)
    src = np.array([[3, 4, 5, 6, 7], [3, 4, 0, 0, 0]])  # second sequence padded (pad_id 0)
    tgt = np.array([[1, 2, 3], [1, 5, 6]])
    keep = padding_mask(src, 0)  # (B, 1, 1, Ls)
    expected, _ = ref.encoder_decoder_forward(src, tgt, params, config, src_mask=keep, tgt_mask=causal_mask(3, 3))
    module = EncoderDecoder(config).double().eval()
    load_native(module, params)
    with torch.no_grad():
        got = module(torch.from_numpy(src), torch.from_numpy(tgt), src_mask=torch.from_numpy(keep),
                     tgt_mask=torch.from_numpy(causal_mask(3, 3)))
    assert max_rel_err(got.numpy(), expected) <= F64_REL_BOUND


@pytest.mark.parametrize(("field", "value"), [("norm_first", "false"), ("bias", 1), ("final_norm", None)])
def test_config_bool_fields_refuse_non_bools(field: str, value: object) -> None:
    """A checkpoint's config saying "false" must not build a pre-norm model because the string is truthy."""
    with pytest.raises(ValueError, match=f"{field}: expected a bool"):
        TransformerConfig.from_dict({field: value})


def test_config_refuses_an_infinite_layer_norm_eps() -> None:
    with pytest.raises(ValueError, match="layer_norm_eps: expected a positive finite float"):
        TransformerConfig(layer_norm_eps=float("inf"))
