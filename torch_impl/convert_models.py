"""Whole native models <-> the flat dictionary: ``torch_impl/convert.py``'s rules, plus tied weights.

A native model with tied weights holds one ``nn.Parameter`` under two ``state_dict()`` names
(``generator.weight`` is ``tgt_embed.weight``; ``lm_head.weight`` is ``embed.weight``). The flat
dictionary holds it once, under the embedding's name (see ``reference/models.py``). Here the second
name, the *alias*, is left out when reading a native model and filled from its owner when loading one;
everything else is ``convert.py``'s ``from_native`` / ``to_native``. Scratch models need nothing extra
(their tied projection owns no weight): use ``convert.load_scratch`` / ``convert.scratch_params``.
Gradients: ``convert.native_grads`` reads ``named_parameters()``, which lists a tied parameter once,
under its first name (the embedding, registered before the projection), with both uses summed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from reference.params import check_param_shapes
from torch_impl.convert import from_native, to_native, to_torch


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


def native_model_params(module: nn.Module) -> dict[str, torch.Tensor]:
    """A native model's flat dictionary: each tied parameter once, under its owner's name."""
    aliases = tied_aliases(module)
    return from_native({name: value for name, value in module.state_dict().items() if name not in aliases})


def load_native_model(module: nn.Module, params: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Copy a flat dictionary into a native model, after checking every key and shape (flat names)."""
    expected = {key: tuple(value.shape) for key, value in native_model_params(module).items()}
    check_param_shapes(params, expected, "params")
    native = to_native(params)
    for alias, owner in tied_aliases(module).items():
        native[alias] = native[owner]
    module.load_state_dict(to_torch(native), strict=True)
