"""One configuration for all three implementations (pure Python, no numpy or torch).

Defaults equal ``nn.Transformer``'s: d_model 512, 8 heads, 6 + 6 layers, d_ff 2048,
dropout 0.1, ReLU, post-norm, layer-norm eps 1e-5, biases on, and a final layer norm
on each stack (``nn.Transformer`` adds one even in post-norm).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from reference.validate import check_real

Activation = Literal["relu", "gelu", "gelu_tanh"]
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1
    activation: Activation = "relu"  # "gelu" is exact (erf) GELU, "gelu_tanh" the tanh approximation
    norm_first: bool = False  # False: post-norm (2017 paper); True: pre-norm (GPT)
    layer_norm_eps: float = 1e-5
    bias: bool = True  # False also removes the layer norms' biases, as in torch.nn
    final_norm: bool = True  # a final LayerNorm after each stack, as nn.Transformer adds
    src_vocab_size: int = 32
    tgt_vocab_size: int = 32
    max_len: int = 512
    tie_weights: bool = False  # output projection shares the target embedding's weight
    scale_embedding: bool = True  # multiply embeddings by sqrt(d_model), as the paper does
    pad_id: int = 0  # padding token id: masked as a key, left out of the classifier's mean pooling
    n_outputs: int = 2  # the encoder classifier's head: n classes, or 1 for a regressor (no softmax)

    def __post_init__(self) -> None:
        positive = ("d_model", "n_heads", "d_ff", "src_vocab_size", "tgt_vocab_size", "max_len")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model: expected a multiple of n_heads={self.n_heads}, got {self.d_model} "
                f"(d_head would be {self.d_model / self.n_heads:g})"
            )
        check_real("dropout", self.dropout, 0.0, 1.0, open_high=True, what="a probability")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {self.activation!r}")
        for name in ("norm_first", "bias", "final_norm", "tie_weights", "scale_embedding"):
            if not isinstance(getattr(self, name), bool):  # "false" from a file is truthy: refuse it
                raise ValueError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        check_real("layer_norm_eps", self.layer_norm_eps, 0.0, open_low=True, what="a positive finite float")
        if isinstance(self.n_outputs, bool) or not isinstance(self.n_outputs, int) or self.n_outputs < 1:
            raise ValueError(f"n_outputs: expected a positive int (1 for a regressor), got {self.n_outputs!r}")
        smallest_vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or not 0 <= self.pad_id < smallest_vocab:
            raise ValueError(
                f"pad_id: expected an int in [0, {smallest_vocab}) (inside both vocabularies), got {self.pad_id!r}"
            )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**values)
