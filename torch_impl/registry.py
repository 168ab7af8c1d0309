"""What exists, by name: the attention kernels, the blocks and the models, in each implementation.

This is the one place that names them; everything that runs "every block" or "every model"
(``triad check``, the tests, ``triad train``) reads these tables.

- **kernels**: ``torch_impl.kernels`` (``BUILTIN_KERNELS``, ``resolve_kernel``): callables with
  ``F.scaled_dot_product_attention``'s signature.
- **blocks** (``BLOCKS``): multi-head-attention layers and stacks, each as its reference forward,
  backward and parameter shapes, and its scratch and native module.
- **models** (``MODEL_KINDS``, ``PARAM_SHAPES``, ``REFERENCE_BACKWARD``, ``TORCH_MODELS``): the three
  model kinds, their parameter shapes and reference backward, and their scratch and native modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from reference import models as ref
from reference.config import TransformerConfig
from reference.layers import (
    decoder_layer_backward,
    decoder_layer_forward,
    decoder_layer_param_shapes,
    encoder_layer_backward,
    encoder_layer_forward,
    encoder_layer_param_shapes,
)
from reference.stacks import (
    decoder_backward,
    decoder_forward,
    decoder_param_shapes,
    encoder_backward,
    encoder_forward,
    encoder_param_shapes,
)
from torch_impl.native import layers as native_layers
from torch_impl.native import models as native
from torch_impl.native import stacks as native_stacks
from torch_impl.scratch import layers as scratch_layers
from torch_impl.scratch import models as scratch
from torch_impl.scratch import stacks as scratch_stacks


@dataclass(frozen=True)
class Block:
    """One attention block in its three implementations, and how to call each."""

    forward: Callable[..., tuple[np.ndarray, Any]]
    backward: Callable[..., tuple]
    param_shapes: Callable[[TransformerConfig], dict[str, tuple[int, ...]]]
    scratch: type[nn.Module]
    native: type[nn.Module]
    native_core: str  # the attribute holding the torch.nn module whose state_dict convert maps
    masks: tuple[str, ...]

    @property
    def has_memory(self) -> bool:
        return "memory_mask" in self.masks


BLOCKS = {
    "encoder_layer": Block(encoder_layer_forward, encoder_layer_backward, encoder_layer_param_shapes,
                           scratch_layers.EncoderLayer, native_layers.EncoderLayer, "layer", ("src_mask",)),
    "decoder_layer": Block(decoder_layer_forward, decoder_layer_backward, decoder_layer_param_shapes,
                           scratch_layers.DecoderLayer, native_layers.DecoderLayer, "layer",
                           ("tgt_mask", "memory_mask")),
    "encoder": Block(encoder_forward, encoder_backward, encoder_param_shapes, scratch_stacks.Encoder,
                     native_stacks.Encoder, "stack", ("src_mask",)),
    "decoder": Block(decoder_forward, decoder_backward, decoder_param_shapes, scratch_stacks.Decoder,
                     native_stacks.Decoder, "stack", ("tgt_mask", "memory_mask")),
}


MODEL_KINDS = ("encoder_decoder", "encoder_classifier", "decoder_lm")
PARAM_SHAPES = {
    "encoder_decoder": ref.encoder_decoder_param_shapes,
    "encoder_classifier": ref.encoder_classifier_param_shapes,
    "decoder_lm": ref.decoder_lm_param_shapes,
}
TORCH_MODELS = {
    "scratch": {"encoder_decoder": scratch.EncoderDecoder, "encoder_classifier": scratch.EncoderClassifier,
                "decoder_lm": scratch.DecoderLM},
    "native": {"encoder_decoder": native.EncoderDecoder, "encoder_classifier": native.EncoderClassifier,
               "decoder_lm": native.DecoderLM},
}
REFERENCE_BACKWARD: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "encoder_decoder": ref.encoder_decoder_backward,
    "encoder_classifier": ref.encoder_classifier_backward,
    "decoder_lm": ref.decoder_lm_backward,
}
