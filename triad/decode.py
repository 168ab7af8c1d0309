"""Incremental decoding with a key/value cache for the torch models, scratch and native.

The maths and the cache are ``reference/decoding.py``'s (its docstring): each layer keeps the keys and
values of its self-attention, new tokens attend under the bottom-right causal mask, the encoder-decoder
computes its memory and cross-attention keys/values once. Each implementation computes with its *own*
modules: scratch with its ``Linear``/``LayerNorm``/``FeedForward`` and its attention maths, native with
``nn.LayerNorm``, ``nn.Linear``, the weights packed in ``nn.MultiheadAttention.in_proj_weight`` and
``F.scaled_dot_product_attention``. ``TorchOps`` is the only place where the two differ.

``TorchKVDecoder.step`` returns NumPy logits, so the shared sampler (``reference.decoding.next_token``)
draws the same tokens from the same logits in all three implementations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference.config import TransformerConfig
from torch_impl.native.multi_head_attention import torch_masks
from torch_impl.scratch.attention import scaled_dot_product_attention as scratch_attention
from torch_impl.scratch.multi_head_attention import merge_heads, split_heads

Projections = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None,
                    torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]


@dataclass(frozen=True)
class TorchOps:
    """What differs between scratch and native: reading attention weights, the FFN, the attention core."""

    projections: Callable[[nn.Module], Projections]  # attention module -> Wq, bq, Wk, bk, Wv, bv, Wo, bo
    ffn: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # layer, x -> FFN(x)
    attention: Callable[..., torch.Tensor]  # SDPA signature: (q, k, v, attn_mask) -> out
    cross_attn: str  # the layer's cross-attention attribute


def _scratch_projections(attn: nn.Module) -> Projections:
    return tuple(t for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj)
                 for t in (proj.weight, proj.bias))  # type: ignore[return-value]


def _native_projections(attn: nn.MultiheadAttention) -> Projections:
    Wq, Wk, Wv = attn.in_proj_weight.chunk(3)  # (D, D) each, [W_q; W_k; W_v]
    bq, bk, bv = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    return Wq, bq, Wk, bk, Wv, bv, attn.out_proj.weight, attn.out_proj.bias


SCRATCH = TorchOps(_scratch_projections, lambda layer, x: layer.ffn(x), scratch_attention, "cross_attn")
NATIVE = TorchOps(
    _native_projections,
    lambda layer, x: layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))),
    F.scaled_dot_product_attention,
    "multihead_attn",
)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = x @ weight.T  # (B, n, D)
    return y if bias is None else y + bias


class TorchKVDecoder:
    """``step(new tokens (B, n)) -> logits (B, n, V)`` as NumPy, for a scratch or native ``DecoderLM`` or
    ``EncoderDecoder`` (give ``src`` for the latter); equal to the model's forward on the whole prefix."""

    def __init__(self, model: nn.Module, impl: str, src: torch.Tensor | None = None,
                 src_mask: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None) -> None:
        if impl not in ("scratch", "native"):
            raise ValueError(f"impl: expected 'scratch' or 'native', got {impl!r}")
        self.model, self.impl = model.eval(), impl
        self.ops = SCRATCH if impl == "scratch" else NATIVE
        self.config: TransformerConfig = model.config
        self.encoder_decoder = hasattr(model, "generator")
        if self.encoder_decoder != (src is not None):
            raise ValueError("src: expected source tokens for an encoder-decoder, none for a decoder LM")
        self.t = 0
        self.self_kv: list[dict[str, torch.Tensor]] = [{} for _ in model.decoder.layers]
        self.cross_kv: list[dict[str, torch.Tensor]] = []
        self.memory_mask = memory_mask
        if src is not None:
            with torch.no_grad():
                self._encode(src, src_mask)

    # -- the per-implementation model pieces ---------------------------------------------------------

    def _embed(self, tokens: torch.Tensor, which: str) -> torch.Tensor:
        """s * E[tokens] (B, n, D): the scratch and native embeddings both apply the scale s themselves."""
        return getattr(self.model, which)(tokens)  # (B, n, D)

    def _positional(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x (B, n, D) at positions start .. start + n - 1 -> x + PE[start : start + n]."""
        n = x.shape[1]
        if start + n > self.config.max_len:
            raise ValueError(f"tokens: positions up to {start + n - 1} exceed max_len={self.config.max_len}")
        owner = self.model.inputs if self.impl == "scratch" else self.model
        pe = owner.positional_encoding
        return x + pe.table[start:start + n].to(x.dtype)  # (B, n, D)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        head = self.model.generator if self.encoder_decoder else self.model.lm_head
        if self.impl == "scratch" and self.config.tie_weights:
            tied = self.model.tgt_embed if self.encoder_decoder else self.model.embed
            return head(h, tied.weight)  # (B, n, V)
        return head(h)  # (B, n, V)

    def _encode(self, src: torch.Tensor, src_mask: torch.Tensor | None) -> None:
        """The memory (B, Ls, D), then each decoder layer's cross-attention keys and values of it."""
        H = self.config.n_heads
        if self.impl == "scratch":
            memory = self.model.encoder(self.model.inputs(src, self.model.src_embed), src_mask=src_mask)
        else:
            B, Ls = src.shape
            attn_mask, padding, is_causal = torch_masks(src_mask, B, H, Ls, Ls, "src_mask")  # True = blocked
            memory = self.model.encoder(self._positional(self._embed(src, "src_embed"), 0), mask=attn_mask,
                                        src_key_padding_mask=padding, is_causal=is_causal)  # (B, Ls, D)
        for layer in self.model.decoder.layers:
            _, _, Wk, bk, Wv, bv, _, _ = self.ops.projections(getattr(layer, self.ops.cross_attn))
            self.cross_kv.append({"k": split_heads(_linear(memory, Wk, bk), H),  # (B, H, Ls, d_head)
                                  "v": split_heads(_linear(memory, Wv, bv), H)})  # (B, H, Ls, d_head)

    # -- the cached maths, shared ----------------------------------------------------------------------

    def _attend(self, x: torch.Tensor, attn: nn.Module, kv: dict[str, torch.Tensor],
                mask: torch.Tensor | None, append: bool) -> torch.Tensor:
        """Queries from x (B, n, D) over the cached keys/values (after appending x's own when ``append``)."""
        H = self.config.n_heads
        Wq, bq, Wk, bk, Wv, bv, Wo, bo = self.ops.projections(attn)
        q = split_heads(_linear(x, Wq, bq), H)  # (B, H, n, d_head)
        if append:
            new = {"k": split_heads(_linear(x, Wk, bk), H),  # (B, H, n, d_head)
                   "v": split_heads(_linear(x, Wv, bv), H)}  # (B, H, n, d_head)
            for name in ("k", "v"):  # (B, H, t + n, d_head)
                kv[name] = torch.cat([kv[name], new[name]], dim=2) if name in kv else new[name]
        out = self.ops.attention(q, kv["k"], kv["v"], attn_mask=mask)  # (B, H, n, d_head)
        return _linear(merge_heads(out), Wo, bo)  # (B, n, D)

    def _block(self, x: torch.Tensor, norm: nn.Module, sublayer: Callable[[torch.Tensor], torch.Tensor]
               ) -> torch.Tensor:
        if self.config.norm_first:
            return x + sublayer(norm(x))  # (B, n, D)
        return norm(x + sublayer(x))  # (B, n, D)

    def step(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """New tokens (B, n) -> their logits (B, n, V) as a NumPy array; advances the cache by n."""
        device = next(self.model.parameters()).device
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device)
        n = tokens.shape[1]
        causal = torch.ones(n, self.t + n, dtype=torch.bool, device=device)  # (n, t + n)
        causal = causal.tril(diagonal=self.t)  # bottom-right: new query i sees keys j <= t + i
        with torch.no_grad():
            embedding = "tgt_embed" if self.encoder_decoder else "embed"
            h = self._positional(self._embed(tokens, embedding), self.t)  # (B, n, D)
            for i, layer in enumerate(self.model.decoder.layers):
                h = self._block(h, layer.norm1, lambda x, i=i, layer=layer: self._attend(
                    x, layer.self_attn, self.self_kv[i], causal, append=True))  # (B, n, D)
                norm_ffn = layer.norm2
                if self.encoder_decoder:
                    cross = getattr(layer, self.ops.cross_attn)
                    h = self._block(h, layer.norm2, lambda x, i=i, cross=cross: self._attend(
                        x, cross, self.cross_kv[i], self.memory_mask, append=False))  # (B, n, D)
                    norm_ffn = layer.norm3
                h = self._block(h, norm_ffn, lambda x, layer=layer: self.ops.ffn(layer, x))  # (B, n, D)
            if self.model.decoder.norm is not None:
                h = self.model.decoder.norm(h)  # (B, n, D)
            logits = self._head(h)  # (B, n, V)
        self.t += n
        return logits.cpu().numpy()
