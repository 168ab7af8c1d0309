"""Parameters between the three implementations: flat dictionary <-> scratch <-> native.

- reference <-> scratch: identity on names; ``to_torch`` / ``to_numpy`` change only the array type.
- scratch <-> native: ``to_native`` / ``from_native`` rename and re-pack keys, for a single
  multi-head attention, a layer, a stack or a whole ``nn.Transformer`` (keys ``encoder.*``,
  ``decoder.*``); keys no rule touches (embeddings, output projections) pass unchanged.

==============================================  ==============================================
flat dictionary (scratch ``state_dict()``)      native (``torch.nn`` ``state_dict()``)
==============================================  ==============================================
``P.q_proj.weight``, ``P.k_proj.weight``,        ``P.in_proj_weight (3D, D)`` = ``[W_q; W_k; W_v]``
``P.v_proj.weight`` (each ``(D, D)``)
``P.{q,k,v}_proj.bias`` (each ``(D,)``)          ``P.in_proj_bias (3D,)``
``P.out_proj.*``                                 ``P.out_proj.*``
``…cross_attn.*``                                ``…multihead_attn.*``
``…ffn.linear1.*``, ``…ffn.linear2.*``           ``…linear1.*``, ``…linear2.*``
``norm1..3.*``, ``norm.*`` (final norms)          the same
==============================================  ==============================================

**Tied weights.** A native model with tied weights holds one ``nn.Parameter`` under two ``state_dict()``
names (``generator.weight`` is ``tgt_embed.weight``; ``lm_head.weight`` is ``embed.weight``). The flat
dictionary holds it once, under the embedding's name (see ``reference/models.py``): ``native_params``
leaves the second name, the *alias*, out, and ``load_native`` fills it from its owner. Scratch models
need nothing extra (their tied projection owns no weight).

Packing is concatenation and unpacking is slicing, so round trips are bitwise exact.
``load_scratch`` / ``load_native`` check every key and shape first: a missing, extra or
mis-shaped key is a ValueError naming the key (in the flat dictionary's names) and its
expected shape. Values are copied into the module's own dtype: load float64 arrays into a
float64 module (``module.double()``) for an exact copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from reference.validate import check_param_shapes

Array = TypeVar("Array", np.ndarray, torch.Tensor)

QKV = ("q", "k", "v")
# Whole-segment renames, flat name -> native name (and back).
RENAMES = {"cross_attn": "multihead_attn", "ffn.linear1": "linear1", "ffn.linear2": "linear2"}


def _rename(key: str, renames: Mapping[str, str]) -> str:
    parts = f".{key}."
    for old, new in renames.items():
        parts = parts.replace(f".{old}.", f".{new}.")
    return parts[1:-1]


def _concatenate(arrays: list[Array]) -> Array:
    if isinstance(arrays[0], torch.Tensor):
        return torch.cat(arrays, dim=0)
    return np.concatenate(arrays, axis=0)


def _split_projection(key: str) -> tuple[str, str, str]:
    """"layers.0.self_attn.q_proj.weight" -> ("layers.0.self_attn.", "q_proj", "weight")."""
    head, _, tail = key.rpartition(".")
    owner, _, proj = head.rpartition(".")
    return (f"{owner}." if owner else ""), proj, tail


def to_native(params: Mapping[str, Array]) -> dict[str, Array]:
    """Flat dictionary -> native ``state_dict`` names and layouts (q/k/v packed into ``in_proj_*``)."""
    native: dict[str, Array] = {}
    for key, value in params.items():
        prefix, proj, tail = _split_projection(key)
        if proj not in ("q_proj", "k_proj", "v_proj"):
            native[_rename(key, RENAMES)] = value
            continue
        part_keys = [f"{prefix}{name}_proj.{tail}" for name in QKV]
        for part_key in part_keys:
            if part_key not in params:
                raise ValueError(f"params: missing key {part_key!r}, expected shape {tuple(value.shape)} "
                                 f"like {key!r} (packed together into in_proj_{tail})")
        if proj == "q_proj":
            native[_rename(f"{prefix}in_proj_{tail}", RENAMES)] = _concatenate(
                [params[part_key] for part_key in part_keys])  # (3D, D) or (3D,)
    return native


def from_native(state: Mapping[str, Array]) -> dict[str, Array]:
    """Native ``state_dict`` -> flat dictionary (``in_proj_*`` split into q/k/v, names mapped back)."""
    back = {new: old for old, new in RENAMES.items()}
    params: dict[str, Array] = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        if leaf not in ("in_proj_weight", "in_proj_bias"):
            params[_rename(key, back)] = value
            continue
        if value.shape[0] % 3 != 0:
            raise ValueError(f"state_dict[{key!r}]: expected (3 * d_model, ...) packing [W_q; W_k; W_v], "
                             f"got {tuple(value.shape)}")
        d_model = value.shape[0] // 3
        prefix = f"{_rename(head, back)}." if head else ""
        tail = leaf.removeprefix("in_proj_")
        for i, name in enumerate(QKV):
            params[f"{prefix}{name}_proj.{tail}"] = value[i * d_model:(i + 1) * d_model]  # (D, D) or (D,)
    return params


def to_torch(params: Mapping[str, np.ndarray | torch.Tensor], dtype: torch.dtype | None = None
             ) -> dict[str, torch.Tensor]:
    """Arrays -> tensors, names unchanged; ``dtype=None`` keeps each array's dtype (a bitwise copy)."""
    tensors = {key: value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
               for key, value in params.items()}
    return tensors if dtype is None else {key: value.to(dtype) for key, value in tensors.items()}


def to_numpy(params: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Tensors -> NumPy arrays (on the CPU, detached), names and dtypes unchanged."""
    return {key: value.detach().cpu().numpy() for key, value in params.items()}


def _expected_shapes(params: Mapping[str, Array]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in params.items()}


def scratch_params(module: nn.Module) -> dict[str, torch.Tensor]:
    """A scratch module's flat dictionary (its ``state_dict()``)."""
    return dict(module.state_dict())


def module_grads(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's ``.grad`` under its own names (for a scratch module: the flat dictionary).

    A parameter the backward never reached reads as zeros.
    """
    return {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in module.named_parameters()}


def load_scratch(module: nn.Module, params: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Copy a flat dictionary into a scratch module, after checking every key and shape."""
    check_param_shapes(params, _expected_shapes(module.state_dict()), "params")
    module.load_state_dict(to_torch(params), strict=True)


def native_params(module: nn.Module) -> dict[str, torch.Tensor]:
    """A native module's parameters as a flat dictionary: each tied parameter once, under its owner's name."""
    aliases = tied_aliases(module)
    return from_native({name: value for name, value in module.state_dict().items() if name not in aliases})


def native_grads(module: nn.Module) -> dict[str, torch.Tensor]:
    """A native module's ``.grad`` as a flat dictionary (``in_proj_weight.grad`` split in three), zeros where none.

    ``named_parameters()`` lists a tied parameter once, under its first name (the embedding, registered
    before the projection), with the gradients of both uses summed.
    """
    return from_native(module_grads(module))


def load_native(module: nn.Module, params: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Copy a flat dictionary into a native module, after checking every key and shape (flat names).

    A tied parameter's second name (its alias) is filled from its owner.
    """
    check_param_shapes(params, _expected_shapes(native_params(module)), "params")
    native = to_native(params)
    for alias, owner in tied_aliases(module).items():
        native[alias] = native[owner]
    module.load_state_dict(to_torch(native), strict=True)


def tied_aliases(module: nn.Module) -> dict[str, str]:
    """{alias: owner} for every ``state_dict()`` name whose parameter appeared earlier under the owner's name."""
    owners: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, value in module.state_dict(keep_vars=True).items():
        if id(value) in owners:
            aliases[name] = owners[id(value)]
        else:
            owners[id(value)] = name
    return aliases
