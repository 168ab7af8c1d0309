"""A whole model in the three implementations: one case, forward, loss and backward in each.

One case = a config, token inputs with padding, masks, loss targets and one flat parameter dictionary.
Each implementation runs forward, the loss and backward on it; the results are the logits ("out"), the
loss and the gradient of every parameter, in float64, keyed like the flat dictionary.

Losses: cross-entropy (torch's convention, ``ignore_index`` on padded targets) for the encoder-decoder,
the LM and a classifier; mean squared error for a regressor (``n_outputs == 1``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference import models as ref
from reference.config import TransformerConfig
from reference.losses import cross_entropy_backward, cross_entropy_forward, mse_backward, mse_forward
from reference.masks import causal_mask, padding_mask
from torch_impl.convert import load_native, load_scratch, native_grads
from torch_impl.native import losses as native_losses
from torch_impl.registry import PARAM_SHAPES, REFERENCE_BACKWARD, TORCH_MODELS
from torch_impl.scratch import losses as scratch_losses
from triad.tolerance import max_rel_err

IGNORE_INDEX = -100
LAYER_PREFIX = re.compile(r"^(grad:)?\w+\.layers\.\d+\.")  # "grad:decoder.layers.0."


@dataclass
class ModelCase:
    kind: str
    config: TransformerConfig
    inputs: dict[str, np.ndarray]  # tokens: "src", "tgt" or "tokens"; keep-masks: "src_mask", ...
    targets: np.ndarray  # class ids (IGNORE_INDEX where padded), or regression values
    params: dict[str, np.ndarray]


def _tokens_with_padding(rng: np.random.Generator, B: int, L: int, vocab: int, pad_id: int) -> np.ndarray:
    """(B, L) ids != pad_id, each row followed by a random amount of padding (at least one real token)."""
    real = np.arange(vocab)[np.arange(vocab) != pad_id]  # the non-pad ids
    tokens = rng.choice(real, size=(B, L))  # (B, L)
    lengths = rng.integers(1, L + 1, size=B)  # (B,)
    tokens[np.arange(L)[None, :] >= lengths[:, None]] = pad_id  # (B, L)
    return tokens


def make_case(kind: str, config: TransformerConfig, B: int, Ls: int, Lt: int, seed: int) -> ModelCase:
    """A case with padding masks (and a causal target mask); ``Ls`` is unused by the classifier and the LM."""
    rng = np.random.default_rng(seed)
    params = ref.init_params(PARAM_SHAPES[kind](config), rng)
    pad = config.pad_id
    if kind == "encoder_decoder":
        src = _tokens_with_padding(rng, B, Ls, config.src_vocab_size, pad)  # (B, Ls)
        tgt = _tokens_with_padding(rng, B, Lt, config.tgt_vocab_size, pad)  # (B, Lt)
        inputs = {
            "src": src, "tgt": tgt,
            "src_mask": padding_mask(src, pad),  # (B, 1, 1, Ls)
            "tgt_mask": padding_mask(tgt, pad) & causal_mask(Lt, Lt),  # (B, 1, Lt, Lt)
            "memory_mask": padding_mask(src, pad),  # (B, 1, 1, Ls)
        }
        targets = np.where(tgt == pad, IGNORE_INDEX, rng.integers(0, config.tgt_vocab_size, size=(B, Lt)))
    elif kind == "encoder_classifier":
        inputs = {"tokens": _tokens_with_padding(rng, B, Lt, config.src_vocab_size, pad)}  # (B, L)
        regression = config.n_outputs == 1
        targets = rng.standard_normal((B, 1)) if regression else rng.integers(0, config.n_outputs, size=B)  # (B, n)
    else:
        tokens = rng.integers(0, config.tgt_vocab_size, size=(B, Lt))  # (B, L)
        targets = np.roll(tokens, -1, axis=1)  # (B, L): the next token ...
        targets[:, -1] = rng.integers(0, config.tgt_vocab_size, size=B)  # ... and any token after the last
        targets[:, :-1][rng.random((B, Lt - 1)) < 0.25] = IGNORE_INDEX  # some ignored, never the last
        inputs = {"tokens": tokens}
    return ModelCase(kind, config, inputs, targets, params)


def _is_regression(case: ModelCase) -> bool:
    return case.kind == "encoder_classifier" and case.config.n_outputs == 1


def reference_forward(case: ModelCase, params: dict[str, np.ndarray] | None = None,
                      training: bool = False, rng: np.random.Generator | None = None) -> tuple[np.ndarray, Any]:
    """The reference model on the case (``params`` defaults to the case's); returns (out, cache)."""
    params = case.params if params is None else params
    if case.kind == "encoder_decoder":
        return ref.encoder_decoder_forward(**_token_inputs(case), params=params, config=case.config,
                                           training=training, rng=rng)
    forward = ref.encoder_classifier_forward if case.kind == "encoder_classifier" else ref.decoder_lm_forward
    return forward(case.inputs["tokens"], params, case.config, training=training, rng=rng)


def _token_inputs(case: ModelCase) -> dict[str, np.ndarray]:
    return {name: case.inputs[name] for name in ("src", "tgt", "src_mask", "tgt_mask", "memory_mask")}


def reference_loss(case: ModelCase, out: np.ndarray) -> tuple[np.ndarray, Any]:
    """(loss, cache) for the case's targets: mean squared error for a regressor, else cross-entropy."""
    if _is_regression(case):
        return mse_forward(out, case.targets)
    return cross_entropy_forward(out, case.targets, ignore_index=IGNORE_INDEX)


def reference_loss_backward(case: ModelCase, cache: Any) -> np.ndarray:
    if _is_regression(case):
        return mse_backward(1.0, cache)
    return cross_entropy_backward(1.0, cache)


def reference_grads(case: ModelCase, training: bool = False, rng: np.random.Generator | None = None
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(out, loss, gradient of every parameter) from the NumPy reference."""
    out, cache = reference_forward(case, training=training, rng=rng)
    loss, loss_cache = reference_loss(case, out)
    grads = REFERENCE_BACKWARD[case.kind](reference_loss_backward(case, loss_cache), cache)
    return out, np.asarray(loss), grads


def run_reference_model(case: ModelCase) -> dict[str, np.ndarray]:
    """out, loss and every parameter gradient (keys "grad:<param>") from the NumPy reference."""
    out, loss, grads = reference_grads(case)
    return {"out": out, "loss": loss, **{f"grad:{key}": value for key, value in grads.items()}}


def run_torch_model(case: ModelCase, implementation: str) -> dict[str, np.ndarray]:
    """out, loss and every parameter gradient from "scratch" or "native", in float64, dropout off."""
    module = TORCH_MODELS[implementation][case.kind](case.config).double().eval()
    if implementation == "scratch":
        load_scratch(module, case.params)
    else:
        load_native(module, case.params)
    tensors = {name: torch.from_numpy(value) for name, value in case.inputs.items()}
    out = module(**tensors) if case.kind == "encoder_decoder" else module(tensors["tokens"])
    targets = torch.from_numpy(case.targets)
    losses = scratch_losses if implementation == "scratch" else native_losses
    loss = losses.mse(out, targets) if _is_regression(case) else losses.cross_entropy(out, targets,
                                                                                       ignore_index=IGNORE_INDEX)
    loss.backward()
    if implementation == "scratch":
        grads = {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in module.named_parameters()}
    else:
        grads = native_grads(module)
    result = {"out": out, "loss": loss, **{f"grad:{key}": value for key, value in grads.items()}}
    return {key: value.detach().double().numpy() for key, value in result.items()}


def grad_magnitudes(expected: dict[str, np.ndarray]) -> dict[str, float]:
    """For every gradient inside a layer (``...layers.{i}.*``): the largest gradient of that layer.

    Some layer gradients are small only by cancellation: the key bias's is exactly 0 (``q . b_k`` shifts a
    whole row of scores); queries and keys get theirs through ``dS = P * (dP - rowsum(dP * P))``, which
    vanishes where one key takes all the probability; a pre-norm decoder's ``norm2`` reaches the loss only
    through the cross-attention queries, so its gradient nearly vanishes when the memory keys nearly agree.
    The rounding in such a gradient is of the size of the rounding in the rest of its layer (the same
    activations flow through it), so every gradient of a layer is measured on the layer's scale; keys outside
    the layers (embeddings, heads, final norms) on their own.
    """
    magnitudes: dict[str, float] = {}
    for key in expected:
        match = LAYER_PREFIX.match(key)
        if match is not None:
            in_layer = [v for k, v in expected.items() if k.startswith(match.group(0))]
            magnitudes[key] = max(float(np.max(np.abs(v))) for v in in_layer)
    return magnitudes


def compare_runs(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative error of every entry of ``expected`` (a missing entry, e.g. a gradient never computed, is inf)."""
    magnitudes = grad_magnitudes(expected)
    return {key: (max_rel_err(actual[key], value, magnitudes.get(key, 0.0)) if key in actual else float("inf"))
            for key, value in expected.items()}
