"""One block (a component, an attention layer, a stack) in the three implementations.

A case is a flat parameter dictionary, NumPy inputs and an output gradient ``dy``. The reference runs its
hand-written forward and backward; scratch and native run the torch module (parameters copied through
``torch_impl.convert``) with autograd. Every runner returns float64 NumPy arrays keyed alike: ``out``,
``d<input>`` and the flat dictionary's parameter names, so that ``block_errors`` compares them key by key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from reference.config import TransformerConfig
from reference.masks import causal_mask
from torch_impl.convert import load_native, load_scratch, module_grads, native_grads
from torch_impl.registry import BLOCKS
from triad.tolerance import max_rel_err


def random_params(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Different random float64 values for every key (never torch's identical ``_get_clones`` layers).

    Matrices ~ N(0, 1/fan_in) keep activations of unit scale; norm weights ~ 1 + N(0, 0.04);
    biases ~ N(0, 0.04), non-zero so that a dropped bias is caught.
    """
    params = {}
    for key, shape in shapes.items():
        if len(shape) == 2:
            params[key] = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif key.endswith("weight"):
            params[key] = 1.0 + 0.2 * rng.standard_normal(shape)
        else:
            params[key] = 0.2 * rng.standard_normal(shape)
    return params


def run_torch_block(
    module: nn.Module,
    params: Mapping[str, np.ndarray],
    inputs: Mapping[str, np.ndarray],
    dy: np.ndarray,
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    native: nn.Module | None = None,
) -> dict[str, np.ndarray]:
    """Run a scratch block (``native=None``) or a native one (``native`` = its torch module) in float64.

    ``params`` are loaded through ``torch_impl.convert``; ``forward`` maps the input tensors (each
    requiring grad) to the output. Returns ``out``, ``d<input>`` for every input and ``<param key>``
    gradients for every parameter, all keyed in the flat dictionary's names, as float64 NumPy.
    """
    module.double()
    if native is None:
        load_scratch(module, params)
    else:
        load_native(native, params)
    tensors = {name: torch.tensor(x, dtype=torch.float64, requires_grad=True) for name, x in inputs.items()}
    out = forward(tensors)
    out.backward(torch.tensor(dy, dtype=torch.float64))
    grads = native_grads(native) if native is not None else module_grads(module)
    results = {"out": out, **{f"d{name}": t.grad for name, t in tensors.items()}, **grads}
    return {key: value.detach().double().numpy() for key, value in results.items()}


MASK_KINDS = ("none", "padding", "causal", "causal_bottom_right", "causal_padding", "random_keep", "additive")


def make_mask(kind: str, B: int, H: int, Lq: int, Lk: int, rng: np.random.Generator) -> np.ndarray | None:
    """A mask of ``kind`` for scores (B, H, Lq, Lk): keep-masks (bool) or a finite additive mask (float64).

    ``padding`` pads a random tail of each sequence's keys (possibly all of them: fully masked rows);
    a finite ``additive`` mask catches an implementation that adds it before scaling.
    """
    if kind == "none":
        return None
    if kind in ("padding", "causal_padding"):
        lengths = rng.integers(0, Lk + 1, size=B)  # (B,); 0 = every key padded
        keep = (np.arange(Lk)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lk)
        return keep & causal_mask(Lq, Lk) if kind == "causal_padding" else keep  # (B, 1, Lq | 1, Lk)
    if kind == "causal":
        return causal_mask(Lq, Lk)  # (Lq, Lk)
    if kind == "causal_bottom_right":
        return causal_mask(Lq, Lk, "bottom_right")  # (Lq, Lk)
    if kind == "random_keep":
        return rng.random((B, H, Lq, Lk)) < 0.7  # (B, H, Lq, Lk)
    if kind == "additive":
        return rng.standard_normal((B, 1, Lq, Lk))  # (B, 1, Lq, Lk)
    raise ValueError(f"kind: expected one of {MASK_KINDS}, got {kind!r}")


def block_magnitudes(expected: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The scale of each bias gradient: at least its weight's gradient's.

    Both are sums of the same rows (``db = sum dY``, ``dW = dY^T X`` with X of unit size), so they carry the
    same rounding. This matters for the key projection's bias, whose gradient is 0 up to rounding (softmax
    ignores a shift of a whole row of scores, and ``q . b_k`` is one).
    """
    magnitudes = {}
    for key in expected:
        weight_key = key.removesuffix(".bias") + ".weight"
        if key.endswith(".bias") and weight_key in expected:
            magnitudes[key] = float(np.max(np.abs(expected[weight_key])))
    return magnitudes


def block_errors(actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``max_rel_err`` of every tensor of ``expected`` (a missing one is an error of inf), bias gradients measured
    on ``block_magnitudes``."""
    magnitudes = block_magnitudes(expected)
    return {key: max_rel_err(actual[key], value, magnitudes.get(key, 0.0)) if key in actual else float("inf")
            for key, value in expected.items()}


def fixed_case(block: str, config: TransformerConfig, seed: int, B: int = 2, Lt: int = 5, Ls: int = 3
               ) -> dict[str, Any]:
    """A deterministic case for ``block``: distinct random parameters, inputs and dy, padding masks on the
    keys (the second sequence padded), a causal target mask and Lt != Ls for decoders."""
    rng = np.random.default_rng(seed)
    D = config.d_model
    case = {"params": random_params(BLOCKS[block].param_shapes(config), rng), "x": rng.standard_normal((B, Lt, D)),
            "dy": rng.standard_normal((B, Lt, D))}
    lengths = np.array([Lt] + [Lt - 2] * (B - 1))  # (B,)
    if BLOCKS[block].has_memory:
        memory_keep = (np.arange(Ls)[None, :] < np.array([Ls] + [Ls - 1] * (B - 1))[:, None])  # (B, Ls)
        case |= {"memory": rng.standard_normal((B, Ls, D)), "tgt_mask": causal_mask(Lt, Lt),
                 "memory_mask": memory_keep[:, None, None, :]}  # (Lt, Lt), (B, 1, 1, Ls)
    else:
        case["src_mask"] = (np.arange(Lt)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lt)
    return case


def reference_block(name: str, config: TransformerConfig, case: Mapping[str, Any], training: bool = False,
                    rng: np.random.Generator | None = None) -> tuple[dict[str, np.ndarray], Any]:
    """The reference's ``out``, ``dx`` (and ``dmemory``) and parameter gradients; also the dropout keeps used.

    ``case`` holds ``params``, ``x``, ``memory`` (decoders), the block's masks and ``dy``.
    """
    block = BLOCKS[name]
    masks = [case.get(mask) for mask in block.masks]
    if block.has_memory:
        y, cache = block.forward(case["x"], case["memory"], case["params"], config, *masks, training, rng)
        dx, dmemory, grads = block.backward(case["dy"], cache)
        return {"out": y, "dx": dx, "dmemory": dmemory, **grads}, cache["keeps"]
    y, cache = block.forward(case["x"], case["params"], config, *masks, training, rng)
    dx, grads = block.backward(case["dy"], cache)
    return {"out": y, "dx": dx, **grads}, cache["keeps"]


def torch_block(name: str, config: TransformerConfig, case: Mapping[str, Any], native: bool,
                dropout_keeps: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Scratch or native (float64, train mode) on the same case; ``dropout_keeps`` drives scratch's dropout."""
    block = BLOCKS[name]
    module = (block.native if native else block.scratch)(config)
    masks = [None if case.get(mask) is None else torch.tensor(case[mask]) for mask in block.masks]
    keeps = {} if dropout_keeps is None else {"dropout_keeps": {k: torch.tensor(v) for k, v in dropout_keeps.items()}}
    inputs = {"x": case["x"], "memory": case["memory"]} if block.has_memory else {"x": case["x"]}

    def forward(t: dict[str, torch.Tensor]) -> torch.Tensor:
        return module(*t.values(), *masks, **keeps)

    core = getattr(module, block.native_core) if native else None
    return run_torch_block(module, case["params"], inputs, case["dy"], forward, core)
