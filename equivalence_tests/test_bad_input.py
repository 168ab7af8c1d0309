"""Bad input, class by class: every one a clear error naming the argument, or (where the input is valid) the
right answer; never a traceback, a silently wrong answer or a NaN nobody asked for.

Each ``Probe`` is one class of bad input, run on every implementation it applies to (``impls``): the NumPy
reference, scratch and native for a component, ``cli`` for the command line. ``test_bad_input`` is the one
parametrised test over all of them; ``test_every_component_is_probed`` fails when a component exported by
``torch_impl.scratch`` or ``torch_impl.native`` has no probe, so a new component cannot skip this module.
The contract for non-finite values is written in docs/conventions.md ("Non-finite inputs").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import torch_impl.native as native
import torch_impl.scratch as scratch
from reference import activations as ref_activations
from reference.attention import attention_forward
from reference.config import TransformerConfig
from reference.decoding import next_token
from reference.dropout import dropout_forward
from reference.embedding import embedding_forward
from reference.feed_forward import feed_forward_forward
from reference.layer_norm import layer_norm_forward
from reference.linear import linear_forward
from reference.losses import cross_entropy_forward, mse_forward, paper_label_smoothing_forward
from reference.masks import causal_mask, padding_mask
from reference.multi_head_attention import mha_forward, mha_param_shapes
from reference.optim import Adam, clip_grad_norm
from reference.positional_encoding import positional_encoding_forward, sinusoidal_table
from reference.schedule import warmup_rate
from reference.softmax import log_softmax_forward, softmax_forward
from torch_impl.native.softmax import softmax as native_softmax
from torch_impl.scratch.dropout import dropout as scratch_dropout
from torch_impl.scratch.multi_head_attention import MultiHeadAttention as ScratchMHA
from torch_impl.scratch.softmax import softmax as scratch_softmax
from triad.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from triad.cli import app
from triad.train import make_model, make_task

IMPLS = ("reference", "scratch", "native")
TORCH = ("scratch", "native")
NAN, INF = float("nan"), float("inf")
RNG = np.random.default_rng(0)
Q = RNG.standard_normal((1, 2, 3, 4))  # (B, H, Lq, E)
K = RNG.standard_normal((1, 2, 5, 4))  # (B, H, Lk, E)
V = RNG.standard_normal((1, 2, 5, 4))  # (B, H, Lk, Ev)
X = RNG.standard_normal((2, 3, 4))  # (B, L, D) activations
LOGITS = RNG.standard_normal((2, 3, 5))  # (B, L, V)
TARGETS = np.array([[0, 1, 2], [3, 4, 0]])  # (B, L)


@dataclass(frozen=True)
class Probe:
    """One class of bad input: ``call(impl, tmp)`` must raise ``error`` with ``match`` in its message, or, when
    ``error`` is None (the input is valid), return a result that ``check(result)`` accepts."""

    component: str
    name: str
    call: Callable[[str, Path], Any]
    error: type[Exception] | None = None
    match: str = ""
    impls: tuple[str, ...] = IMPLS
    check: Callable[[Any], None] | None = None
    cpu_only_torch: bool = False  # the probe means "no CUDA here": skipped where torch has CUDA


PROBES: list[Probe] = []


def probe(component: str, name: str, call: Callable[..., Any], error: type[Exception] | None = None,
          match: str = "", impls: tuple[str, ...] = IMPLS, check: Callable[[Any], None] | None = None,
          cpu_only_torch: bool = False) -> None:
    PROBES.append(Probe(component, name, call, error, match, impls, check, cpu_only_torch))


def _t(a: Any) -> Any:
    """A NumPy array as a torch tensor (anything else unchanged: the probes pass wrong types on purpose)."""
    return torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _with(a: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    out = np.array(a, copy=True)
    out[index] = value
    return out


# ---- one entry point per component and implementation --------------------------------------------------


def attention(impl: str, q: Any = Q, k: Any = K, v: Any = V, **kw: Any) -> np.ndarray:
    if impl == "reference":
        return attention_forward(q, k, v, **kw)[0]
    if "attn_mask" in kw:
        kw["attn_mask"] = _t(kw["attn_mask"])
    fn = scratch.scaled_dot_product_attention if impl == "scratch" else native.scaled_dot_product_attention
    return _np(fn(_t(q), _t(k), _t(v), **kw))


def linear(impl: str, x: Any, n_in: int = 4, n_out: int = 3, bias: np.ndarray | None = None) -> np.ndarray:
    if impl == "reference":
        return linear_forward(x, np.ones((n_out, n_in)), np.zeros(n_out) if bias is None else bias)[0]
    module = (scratch.Linear if impl == "scratch" else native.Linear)(n_in, n_out).double()
    return _np(module(_t(x)))


def embed(impl: str, tokens: Any, vocab: int = 5) -> np.ndarray:
    if impl == "reference":
        return embedding_forward(tokens, np.ones((vocab, 4)))[0]
    return _np((scratch.Embedding if impl == "scratch" else native.Embedding)(vocab, 4)(_t(tokens)))


def positional(impl: str, x: np.ndarray, max_len: int = 4, d_model: int = 4) -> np.ndarray:
    if impl == "reference":
        return positional_encoding_forward(x, sinusoidal_table(max_len, d_model))[0]
    return _np((scratch.PositionalEncoding if impl == "scratch" else native.PositionalEncoding)(d_model, max_len)(
        _t(x)))


def softmax(impl: str, x: Any) -> np.ndarray:
    if impl == "reference":
        return softmax_forward(x)[0]
    return _np((scratch_softmax if impl == "scratch" else native_softmax)(_t(x)))


def log_softmax(impl: str, x: Any) -> np.ndarray:
    if impl == "reference":
        return log_softmax_forward(x)[0]
    return _np((scratch.log_softmax if impl == "scratch" else native.log_softmax)(_t(x)))


def layer_norm(impl: str, eps: Any = 1e-5, x: np.ndarray = X, d: int = 4) -> np.ndarray:
    if impl == "reference":
        return layer_norm_forward(x, np.ones(d), np.zeros(d), eps)[0]
    return _np((scratch.LayerNorm if impl == "scratch" else native.LayerNorm)(d, eps).double()(_t(x)))


def dropout(impl: str, p: Any, keep: np.ndarray | None = None) -> np.ndarray:
    if impl == "reference":
        return dropout_forward(X, p, keep=keep, rng=np.random.default_rng(0))[0]
    if impl == "scratch" and keep is not None:
        return _np(scratch_dropout(_t(X), p, _t(keep)))
    return _np((scratch.Dropout if impl == "scratch" else native.Dropout)(p)(_t(X)))


def activation(impl: str, name: str) -> np.ndarray:
    if impl == "reference":
        return ref_activations.activation_forward(X, name)[0]
    return _np((scratch.activation if impl == "scratch" else native.activation)(_t(X), name))


def feed_forward(impl: str, x: np.ndarray = X, name: str = "relu", d: int = 4) -> np.ndarray:
    if impl == "reference":
        params = {"linear1.weight": np.ones((6, d)), "linear1.bias": np.zeros(6), "linear2.weight": np.ones((d, 6)),
                  "linear2.bias": np.zeros(d)}
        return feed_forward_forward(x, params, name)[0]
    return _np((scratch.FeedForward if impl == "scratch" else native.FeedForward)(d, 6, name).double()(_t(x)))


def loss(impl: str, kind: str = "ce", logits: Any = LOGITS, targets: Any = TARGETS, **kw: Any) -> np.ndarray:
    if impl == "reference":
        fn = {"ce": cross_entropy_forward, "paper": paper_label_smoothing_forward, "mse": mse_forward}[kind]
        return fn(logits, targets, **kw)[0]
    module = scratch.losses if impl == "scratch" else native.losses
    fn = {"ce": module.cross_entropy, "paper": module.paper_label_smoothing_loss, "mse": module.mse}[kind]
    return _np(fn(_t(logits), _t(targets), **kw))


def mha(impl: str, x_q: np.ndarray = X, x_kv: np.ndarray = X, n_heads: int = 2, mask: Any = None,
        d: int = 4) -> np.ndarray:
    if impl == "reference":
        params = {name: np.ones(shape) for name, shape in mha_param_shapes(x_q.shape[-1]).items()}
        return mha_forward(x_q, x_kv, params, n_heads, mask)[0]
    cls = ScratchMHA if impl == "scratch" else native.multi_head_attention.MultiHeadAttention
    return _np(cls(d, n_heads).double()(_t(x_q), _t(x_kv), _t(mask)))


# ---- expectations of the valid inputs --------------------------------------------------------------------


def nan_rows(expected: list[bool]) -> Callable[[np.ndarray], None]:
    """The output's query rows (axis -2) that hold NaN are exactly ``expected``, in every (B, H)."""
    def check(out: np.ndarray) -> None:
        got = np.isnan(out).any(axis=-1)  # (..., Lq)
        assert (got == np.array(expected)).all(), f"NaN rows {got.tolist()}, expected {expected}"
    return check


def equals(expected: np.ndarray, rtol: float = 1e-12) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        np.testing.assert_allclose(np.asarray(out), expected, rtol=rtol, atol=1e-12)
    return check


def usage_error(match: str) -> Callable[[Any], None]:
    """A CLI result: exit 2, ``match`` in the output, no traceback."""
    def check(result: Any) -> None:
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert match in result.output, result.output
    return check


def cli(*args: str) -> Callable[[str, Path], Any]:
    """Run ``triad ARGS`` in-process; ``{tmp}`` and ``{impl}`` in an argument are filled in."""
    def call(impl: str, tmp: Path) -> Any:
        return CliRunner().invoke(app, [a.format(tmp=tmp, impl=impl) for a in args])
    return call


# ---- attention: the core ---------------------------------------------------------------------------------

A = "scaled_dot_product_attention"
probe(A, "q is not an array", lambda i, _: attention(i, q=Q.tolist()), TypeError, "q: expected")
probe(A, "q integer dtype", lambda i, _: attention(i, q=Q.astype(np.int64)), TypeError, "q: expected")
probe(A, "q, k, v of different dtypes", lambda i, _: attention(i, k=K.astype(np.float32)), TypeError,
      "q, k, v: expected one dtype")
probe(A, "q of one dim", lambda i, _: attention(i, q=Q[0, 0, 0]), ValueError, "q: expected")
probe(A, "k with another d_head", lambda i, _: attention(i, k=K[..., :3]), ValueError, "k: expected")
probe(A, "v with another Lk", lambda i, _: attention(i, v=V[..., :4, :]), ValueError, "v: expected")
probe(A, "k with other leading dims", lambda i, _: attention(i, k=K[:, :1]), ValueError, "k: expected")
probe(A, "mask not broadcastable", lambda i, _: attention(i, attn_mask=np.ones((3, 4), bool)), ValueError,
      "attn_mask: expected a shape")
probe(A, "mask of integers", lambda i, _: attention(i, attn_mask=np.ones((3, 5), np.int64)), TypeError,
      "attn_mask: expected a boolean")
probe(A, "mask and is_causal together", lambda i, _: attention(i, attn_mask=np.ones((3, 5), bool), is_causal=True),
      ValueError, "attn_mask: cannot be combined")
probe(A, "dropout_p = 1", lambda i, _: attention(i, dropout_p=1.0), ValueError, "dropout_p: expected a probability")
probe(A, "dropout_p < 0", lambda i, _: attention(i, dropout_p=-0.1), ValueError, "dropout_p: expected")
probe(A, "dropout_p NaN", lambda i, _: attention(i, dropout_p=NAN), ValueError, "dropout_p: expected")
probe(A, "dropout_p a string", lambda i, _: attention(i, dropout_p="0.1"), TypeError, "dropout_p: expected a real")
probe(A, "scale NaN", lambda i, _: attention(i, scale=NAN), ValueError, "scale: expected a finite number")
probe(A, "scale inf", lambda i, _: attention(i, scale=INF), ValueError, "scale: expected a finite number")
probe(A, "scale a string", lambda i, _: attention(i, scale="0.5"), TypeError, "scale: expected a real number")
probe(A, "scale a bool", lambda i, _: attention(i, scale=True), TypeError, "scale: expected a real number")
probe(A, "no keys (Lk = 0)", lambda i, _: attention(i, k=K[..., :0, :], v=V[..., :0, :]), ValueError,
      "k: expected at least one key")
probe(A, "d_head = 0", lambda i, _: attention(i, q=Q[..., :0], k=K[..., :0]), ValueError, "q: expected d_head >= 1")
probe(A, "additive mask holding NaN", lambda i, _: attention(i, attn_mask=_with(np.zeros((3, 5)), (0, 1), NAN)),
      ValueError, "attn_mask: an additive mask must not hold NaN or +inf")
probe(A, "additive mask holding +inf", lambda i, _: attention(i, attn_mask=_with(np.zeros((3, 5)), (0, 1), INF)),
      ValueError, "attn_mask: an additive mask must not hold NaN or +inf")
probe(A, "NaN in a query row: that row NaN", lambda i, _: attention(i, q=_with(Q, (0, 0, 1, 2), NAN)),
      check=nan_rows([[False, True, False], [False, False, False]]))
Q32, K32, V32 = (a.astype(np.float32) for a in (Q, K, V))
probe(A, "NaN in a query row, float32: that row NaN (SDPA's CPU kernel gave 0)",
      lambda i, _: attention(i, q=_with(Q32, (0, 0, 1, 2), NAN), k=K32, v=V32),
      check=nan_rows([[False, True, False], [False, False, False]]))
probe(A, "+inf in a query row: that row NaN", lambda i, _: attention(i, q=_with(Q, (0, 1, 2, 0), INF)),
      check=nan_rows([[False, False, False], [False, False, True]]))
probe(A, "NaN in a key: every row that sees it NaN", lambda i, _: attention(i, k=_with(K, (0, 0, 3, 1), NAN)),
      check=nan_rows([[True, True, True], [False, False, False]]))
probe(A, "NaN in a value: every row NaN", lambda i, _: attention(i, v=_with(V, (0, 1, 0, 0), NAN)),
      check=nan_rows([[False, False, False], [True, True, True]]))
probe(A, "NaN in a query row with a causal mask", lambda i, _: attention(i, q=_with(Q, (0, 0, 0, 0), NAN),
      is_causal=True), check=nan_rows([[True, False, False], [False, False, False]]))
probe(A, "a fully masked row: output 0", lambda i, _: attention(i, attn_mask=np.array([[True] * 5, [False] * 5,
      [True] * 5]))[:, :, 1], check=equals(np.zeros((1, 2, 4))))
probe(A, "a negative scale: the right answer", lambda i, _: attention(i, scale=-0.5),
      check=equals(attention_forward(Q, K, V, scale=-0.5)[0]))
probe(A, "dropout_keep without dropout", lambda i, _: attention(i, dropout_keep=_t(np.ones((1, 2, 3, 5), bool))
      if i != "reference" else np.ones((1, 2, 3, 5), bool)), ValueError, "dropout_keep: given, but dropout_p is 0",
      impls=("reference", "scratch"))

# ---- linear, embedding, positional encoding ---------------------------------------------------------------

probe("Linear", "x with the wrong in-features", lambda i, _: linear(i, X[..., :3]), ValueError, "x: expected")
probe("Linear", "x a scalar", lambda i, _: linear(i, np.array(1.0)), ValueError, "x: expected")
probe("Linear", "bias of the wrong shape", lambda i, _: linear(i, X, bias=np.zeros(2)), ValueError, "bias: expected",
      impls=("reference",))
probe("Embedding", "a token >= V", lambda i, _: embed(i, np.array([[0, 5]])), ValueError, "tokens: expected ids")
probe("Embedding", "a negative token", lambda i, _: embed(i, np.array([[0, -1]])), ValueError, "tokens: expected ids")
probe("Embedding", "bool tokens", lambda i, _: embed(i, np.array([[True, False]])), TypeError,
      "tokens: expected an integer dtype")
probe("Embedding", "float tokens", lambda i, _: embed(i, np.array([[0.0, 1.0]])), TypeError,
      "tokens: expected an integer dtype")
probe("Embedding", "tokens of one dim", lambda i, _: embed(i, np.array([0, 1])), ValueError, "tokens: expected (B, L)")
probe("Embedding", "no tokens", lambda i, _: embed(i, np.zeros((1, 0), np.int64)), ValueError,
      "tokens: expected a non-empty")
probe("PositionalEncoding", "L beyond max_len", lambda i, _: positional(i, np.zeros((1, 5, 4))), ValueError,
      "exceeds the table's max_len")
probe("PositionalEncoding", "x with another d_model", lambda i, _: positional(i, np.zeros((1, 2, 3))), ValueError,
      "x: expected (B, L, D) with D=4")
probe("PositionalEncoding", "x not batch-first 3-D", lambda i, _: positional(i, np.zeros((2, 4))), ValueError,
      "x: expected (B, L, D)")
probe("PositionalEncoding", "odd d_model: the right answer", lambda i, _: positional(i, np.zeros((1, 3, 5)), 4, 5),
      check=equals(sinusoidal_table(4, 5)[None, :3]))

# ---- softmax, layer norm, dropout, activations, feed-forward ----------------------------------------------

ROWS = np.array([[0.5, -1.0, 2.0], [-INF, -INF, -INF]])
probe("log_softmax", "softmax of a row of -inf only: 0", lambda i, _: softmax(i, ROWS)[1], check=equals(np.zeros(3)))
probe("log_softmax", "log-softmax of a row of -inf only: -inf", lambda i, _: log_softmax(i, ROWS)[1],
      check=lambda out: np.testing.assert_array_equal(out, [-INF] * 3))
probe("log_softmax", "the other rows unchanged", lambda i, _: log_softmax(i, ROWS)[0],
      check=equals(log_softmax_forward(ROWS[:1])[0][0]))
probe("log_softmax", "NaN in a row: that row NaN", lambda i, _: softmax(i, _with(ROWS, (0, 1), NAN)),
      check=lambda out: np.testing.assert_array_equal(np.isnan(out).any(-1), [True, False]))
probe("log_softmax", "an empty last axis", lambda i, _: log_softmax(i, np.zeros((2, 0))), ValueError,
      "x: expected (..., N) with N >= 1")
probe("log_softmax", "integer input", lambda i, _: softmax(i, np.ones((2, 3), np.int64)), TypeError,
      "x: expected a floating dtype")
probe("LayerNorm", "eps = inf", lambda i, _: layer_norm(i, INF), ValueError, "eps: expected a finite number > 0")
probe("LayerNorm", "eps = 0", lambda i, _: layer_norm(i, 0.0), ValueError, "eps: expected a finite number > 0")
probe("LayerNorm", "eps < 0", lambda i, _: layer_norm(i, -1e-5), ValueError, "eps: expected a finite number > 0")
probe("LayerNorm", "eps NaN", lambda i, _: layer_norm(i, NAN), ValueError, "eps: expected a finite number > 0")
probe("LayerNorm", "eps a string", lambda i, _: layer_norm(i, "1e-5"), TypeError, "eps: expected a real number")
probe("LayerNorm", "x with another D", lambda i, _: layer_norm(i, x=X[..., :3]), ValueError, "weight: expected (D,)")
probe("Dropout", "p = 1", lambda i, _: dropout(i, 1.0), ValueError, "p: expected a probability in [0, 1)")
probe("Dropout", "p < 0", lambda i, _: dropout(i, -0.1), ValueError, "p: expected a probability in [0, 1)")
probe("Dropout", "p NaN", lambda i, _: dropout(i, NAN), ValueError, "p: expected a probability in [0, 1)")
probe("Dropout", "p a string", lambda i, _: dropout(i, "0.1"), TypeError, "p: expected a real number")
probe("Dropout", "keep-mask of another shape", lambda i, _: dropout(i, 0.5, np.ones((2, 3), bool)), ValueError,
      "keep: expected the shape of x", impls=("reference", "scratch"))
probe("Dropout", "keep-mask at p = 0", lambda i, _: dropout(i, 0.0, np.ones(X.shape, bool)), ValueError,
      "keep: given, but p is 0", impls=("reference", "scratch"))
probe("activation", "an unknown activation", lambda i, _: activation(i, "swish"), ValueError, "activation: expected")
probe("FeedForward", "x with another d_model", lambda i, _: feed_forward(i, x=np.ones((2, 3, 5))), ValueError,
      "x: expected (..., in) with in=4")
probe("FeedForward", "an unknown activation", lambda i, _: feed_forward(i, name="tanh"), ValueError,
      "activation: expected")

# ---- losses ------------------------------------------------------------------------------------------------

CE = "cross_entropy"
probe(CE, "a target >= V", lambda i, _: loss(i, targets=_with(TARGETS, (0, 0), 5)), ValueError,
      "targets: expected ids in [0, 5)")
probe(CE, "a negative target", lambda i, _: loss(i, targets=_with(TARGETS, (0, 0), -3)), ValueError,
      "targets: expected ids in [0, 5)")
probe(CE, "every target ignored", lambda i, _: loss(i, targets=np.full((2, 3), -100)), ValueError,
      "targets: every target equals ignore_index")
probe(CE, "no positions (B = 0)", lambda i, _: loss(i, logits=np.zeros((0, 3, 5)), targets=np.zeros((0, 3),
      np.int64)), ValueError, "targets: expected at least one target")
probe(CE, "label_smoothing < 0", lambda i, _: loss(i, label_smoothing=-0.1), ValueError,
      "label_smoothing: expected a finite number in [0, 1]")
probe(CE, "label_smoothing NaN", lambda i, _: loss(i, label_smoothing=NAN), ValueError,
      "label_smoothing: expected a finite number in [0, 1]")
probe(CE, "label_smoothing > 1", lambda i, _: loss(i, label_smoothing=1.5), ValueError,
      "label_smoothing: expected a finite number in [0, 1]")
probe(CE, "label_smoothing a string", lambda i, _: loss(i, label_smoothing="0.1"), TypeError,
      "label_smoothing: expected a real number")
probe(CE, "float targets", lambda i, _: loss(i, targets=TARGETS.astype(np.float64)), TypeError,
      "targets: expected an integer dtype")
probe(CE, "targets of another shape", lambda i, _: loss(i, targets=TARGETS[:, :2]), ValueError,
      "targets: expected the shape of logits")
probe(CE, "label smoothing 0.1: the right answer", lambda i, _: loss(i, label_smoothing=0.1),
      check=equals(cross_entropy_forward(LOGITS, TARGETS, label_smoothing=0.1)[0]))
PAPER = "paper_label_smoothing_loss"
probe(PAPER, "label_smoothing < 0", lambda i, _: loss(i, "paper", label_smoothing=-0.1), ValueError,
      "label_smoothing: expected a finite number in [0, 1]")
probe(PAPER, "label_smoothing NaN", lambda i, _: loss(i, "paper", label_smoothing=NAN), ValueError,
      "label_smoothing: expected a finite number in [0, 1]")
probe(PAPER, "label_smoothing > 1", lambda i, _: loss(i, "paper", label_smoothing=1.5), ValueError,
      "label_smoothing: expected a finite number in [0, 1]")
probe(PAPER, "every target ignored", lambda i, _: loss(i, "paper", targets=np.full((2, 3), -100)), ValueError,
      "targets: every target equals ignore_index")
probe(PAPER, "a target >= V", lambda i, _: loss(i, "paper", targets=_with(TARGETS, (1, 2), 7)), ValueError,
      "targets: expected ids in [0, 5)")
probe(PAPER, "smoothing above (V-1)/V: the right answer (torch's own eps would exceed 1)",
      lambda i, _: loss(i, "paper", label_smoothing=0.95),
      check=equals(paper_label_smoothing_forward(LOGITS, TARGETS, label_smoothing=0.95)[0]))
probe("mse", "targets of another shape", lambda i, _: loss(i, "mse", X, X[:, :2]), ValueError,
      "targets: expected the shape of predicted")
probe("mse", "integer targets", lambda i, _: loss(i, "mse", X, X.astype(np.int64)), TypeError,
      "targets: expected a floating dtype")
probe("mse", "no elements", lambda i, _: loss(i, "mse", X[:0], X[:0]), ValueError,
      "predicted: expected at least one element")

# ---- multi-head attention ----------------------------------------------------------------------------------

MHA = "MultiHeadAttention"
probe(MHA, "d_model not a multiple of n_heads", lambda i, _: mha(i, n_heads=3), ValueError, "d_model: expected")
probe(MHA, "x_kv with another d_model", lambda i, _: mha(i, x_kv=np.ones((2, 3, 6))), ValueError, "x_kv: expected")
probe(MHA, "x_q not (B, L, D)", lambda i, _: mha(i, x_q=X[0]), ValueError, "x_q: expected (B, Lq, d_model)")
probe(MHA, "a mask of the wrong shape", lambda i, _: mha(i, mask=np.ones((4, 4), bool)), ValueError, "attn_mask")

# ---- decoding (shared by the three implementations: it reads logits only) ---------------------------------

D = "next_token"
probe(D, "logits all NaN", lambda i, _: next_token(np.full((2, 4), NAN)), ValueError, "logits: NaN in rows [0, 1]",
      impls=("reference",))
probe(D, "one NaN in a row", lambda i, _: next_token(_with(np.zeros((2, 4)), (1, 2), NAN)), ValueError,
      "logits: NaN in rows [1]", impls=("reference",))
probe(D, "temperature < 0", lambda i, _: next_token(np.zeros((1, 3)), -1.0), ValueError, "temperature: expected",
      impls=("reference",))
probe(D, "temperature NaN", lambda i, _: next_token(np.zeros((1, 3)), NAN), ValueError, "temperature: expected",
      impls=("reference",))
probe(D, "temperature inf", lambda i, _: next_token(np.zeros((1, 3)), INF), ValueError, "temperature: expected",
      impls=("reference",))
probe(D, "logits of one dim", lambda i, _: next_token(np.zeros(3)), ValueError, "logits: expected floating (B, V)",
      impls=("reference",))
probe(D, "sampling without a generator", lambda i, _: next_token(np.zeros((1, 3)), 1.0), TypeError,
      "rng: expected a numpy Generator", impls=("reference",))

# ---- configuration, optimisation, masks (shared) ----------------------------------------------------------


def config(**kw: Any) -> TransformerConfig:
    return TransformerConfig(**{"d_model": 8, "n_heads": 2, "d_ff": 16, "src_vocab_size": 5, "tgt_vocab_size": 5,
                                "max_len": 8, **kw})


C = "TransformerConfig"
probe(C, "d_model not a multiple of n_heads", lambda i, _: config(n_heads=3), ValueError,
      "d_model: expected a multiple", impls=("reference",))
probe(C, "layer_norm_eps inf", lambda i, _: config(layer_norm_eps=INF), ValueError, "layer_norm_eps: expected",
      impls=("reference",))
probe(C, "layer_norm_eps a string", lambda i, _: config(layer_norm_eps="1e-5"), TypeError, "layer_norm_eps: expected",
      impls=("reference",))
probe(C, "dropout = 1", lambda i, _: config(dropout=1.0), ValueError, "dropout: expected a probability",
      impls=("reference",))
probe(C, "dropout a string", lambda i, _: config(dropout="0.1"), TypeError, "dropout: expected a real number",
      impls=("reference",))
probe(C, "an unknown activation", lambda i, _: config(activation="swish"), ValueError, "activation: expected",
      impls=("reference",))
probe(C, "a vocabulary of 0", lambda i, _: config(src_vocab_size=0), ValueError, "src_vocab_size: expected",
      impls=("reference",))
probe(C, "a bool given as a string", lambda i, _: config(norm_first="false"), ValueError, "norm_first: expected a bool",
      impls=("reference",))
OPT = "optim"
probe(OPT, "warm-up at step 0", lambda i, _: warmup_rate(0, 8, 4), ValueError, "step: expected an int >= 1",
      impls=("reference",))
probe(OPT, "warm-up of 0 steps", lambda i, _: warmup_rate(1, 8, 0), ValueError, "warmup_steps: expected",
      impls=("reference",))
probe(OPT, "schedule factor inf", lambda i, _: warmup_rate(1, 8, 4, INF), ValueError, "factor: expected",
      impls=("reference",))
probe(OPT, "Adam lr < 0", lambda i, _: Adam({"w": np.ones(2)}, lr=-1.0), ValueError, "lr: expected",
      impls=("reference",))
probe(OPT, "Adam lr NaN", lambda i, _: Adam({"w": np.ones(2)}, lr=NAN), ValueError, "lr: expected",
      impls=("reference",))
probe(OPT, "Adam beta = 1", lambda i, _: Adam({"w": np.ones(2)}, betas=(0.9, 1.0)), ValueError, "betas[1]: expected",
      impls=("reference",))
probe(OPT, "clipping to a negative norm", lambda i, _: clip_grad_norm({"w": np.ones(2)}, -1.0), ValueError,
      "max_norm: expected", impls=("reference",))
probe(OPT, "clipping to a NaN norm", lambda i, _: clip_grad_norm({"w": np.ones(2)}, NAN), ValueError,
      "max_norm: expected", impls=("reference",))
M = "masks"
probe(M, "an unknown causal alignment", lambda i, _: causal_mask(3, 3, "center"), ValueError, "align: expected",
      impls=("reference",))
probe(M, "a negative length", lambda i, _: causal_mask(-1, 3), ValueError, "Lq: expected", impls=("reference",))
probe(M, "padding of float tokens", lambda i, _: padding_mask(np.zeros((1, 3)), 0), (TypeError, ValueError),
      "tokens", impls=("reference",))

# ---- checkpoints ---------------------------------------------------------------------------------------------


def copy_checkpoint(tmp: Path, nan: bool = False, task_name: str = "copy") -> Path:
    """A freshly initialised (untrained) checkpoint of ``task_name``; with ``nan`` one weight is NaN."""
    task = make_task(task_name, 0)
    params = make_model(task, "reference", 0).flat_params()
    if nan:
        params["src_embed.weight" if task_name == "copy" else next(iter(params))][0, 0] = NAN
    path = tmp / f"{task_name}{'-nan' if nan else ''}.safetensors"
    save_checkpoint(path, params, task.config, task.kind, task.metadata)
    return path


CK = "checkpoint"
probe(CK, "a missing file", lambda i, t: load_checkpoint(t / "none.safetensors"), FileNotFoundError, "none.safetensors",
      impls=("reference",))
probe(CK, "a folder", lambda i, t: load_checkpoint(t), CheckpointError, "is a folder", impls=("reference",))
probe(CK, "corrupt bytes", lambda i, t: (t / "x.safetensors").write_bytes(b"\x00" * 64) and load_checkpoint(
      t / "x.safetensors"), CheckpointError, "corrupt or truncated", impls=("reference",))
probe(CK, "NaN weights under a valid digest", lambda i, t: load_checkpoint(copy_checkpoint(t, nan=True)),
      CheckpointError, "tensor 'src_embed.weight' holds 1 NaN or infinite", impls=("reference",))
probe(CK, "another model kind", lambda i, t: load_checkpoint(copy_checkpoint(t), kind="decoder_lm"), CheckpointError,
      "kind: expected a 'decoder_lm' model", impls=("reference",))

# ---- the command line --------------------------------------------------------------------------------------

CLI = ("cli",)
probe("triad train", "an unknown task", cli("train", "poems"), check=usage_error("task: expected one of"), impls=CLI)
probe("triad train", "an unknown implementation", cli("train", "copy", "--impl", "jax", "--save", "{tmp}/m"),
      check=usage_error("impl: expected one of"), impls=CLI)
probe("triad train", "zero steps", cli("train", "copy", "--steps", "0", "--save", "{tmp}/m"),
      check=usage_error("steps: expected an int >= 1"), impls=CLI)
probe("triad train", "--device cuda without CUDA", cli("train", "copy", "--impl", "{impl}", "--device", "cuda",
      "--save", "{tmp}/m"), check=usage_error("device:"), cpu_only_torch=True)
probe("triad train", "--device of another kind", cli("train", "copy", "--impl", "{impl}", "--device", "tpu",
      "--save", "{tmp}/m"), check=usage_error("device:"), impls=TORCH)
probe("triad train", "--save under a file", cli("train", "copy", "--impl", "{impl}", "--save", "{tmp}/a_file/m"),
      check=usage_error("--save: cannot write"))
probe("triad train", "--save a folder", cli("train", "copy", "--save", "{tmp}"),
      check=usage_error("it is a folder"), impls=CLI)
probe("triad train", "--json under /proc", cli("train", "copy", "--json", "/proc/triad.json", "--save", "{tmp}/m"),
      check=usage_error("it is under /proc"), impls=CLI)
probe("triad train", "--plot under a file", cli("train", "copy", "--plot", "{tmp}/a_file/p.png", "--save", "{tmp}/m"),
      check=usage_error("--plot: cannot write"), impls=CLI)


def trained_into_missing_folder(impl: str, tmp: Path) -> Path:
    result = CliRunner().invoke(app, ["train", "copy", "--impl", impl, "--steps", "1", "--save",
                                      str(tmp / "new" / "folder" / "m.safetensors")])
    assert result.exit_code == 0, result.output
    return tmp / "new" / "folder" / "m.safetensors"


probe("triad train", "--save into a missing folder: created", trained_into_missing_folder,
      check=lambda path: load_checkpoint(path))


def generate(impl: str, tmp: Path, *args: str, nan: bool = False, task: str = "copy") -> Any:
    path = copy_checkpoint(tmp, nan=nan, task_name=task)
    return CliRunner().invoke(app, ["generate", str(path), "--impl", impl, *args])


G = "triad generate"
probe(G, "a copy prompt of another length", lambda i, t: generate(i, t, "--prompt", "101"),
      check=usage_error("trained on exactly these bodies"))
probe(G, "a copy prompt of no trained pattern", lambda i, t: generate(i, t, "--prompt", "11010011"),
      check=usage_error("trained on exactly these bodies"))
probe(G, "a copy prompt that is not binary", lambda i, t: generate(i, t, "--prompt", "1a1a1a1a"),
      check=usage_error("prompt: expected 0s and 1s"))
probe(G, "--device cuda without CUDA", lambda i, t: generate(i, t, "--prompt", "10101010", "--device", "cuda"),
      check=usage_error("device:"), cpu_only_torch=True)
probe(G, "a checkpoint with NaN weights", lambda i, t: generate(i, t, "--prompt", "10101010", nan=True),
      check=usage_error("holds 1 NaN or infinite"))
probe(G, "a classifier's checkpoint", lambda i, t: generate(i, t, "--prompt", "x", task="classify"),
      check=usage_error("expected a 'copy' or 'charlm' checkpoint"))
probe(G, "a folder as the checkpoint", cli("generate", "{tmp}", "--prompt", "x"), check=usage_error("is a folder"),
      impls=CLI)
probe(G, "a missing checkpoint", cli("generate", "{tmp}/none.safetensors", "--prompt", "x"),
      check=usage_error("none.safetensors"), impls=CLI)
probe(G, "a negative temperature", lambda i, t: generate(i, t, "--prompt", "10101010", "--temperature", "-1"),
      check=usage_error("temperature: expected"))
VF = "triad verify"
probe(VF, "--json under /proc", cli("verify", "native", "--max-examples", "1", "--json", "/proc/v.json"),
      check=usage_error("it is under /proc"), impls=CLI)
probe(VF, "--repro a folder", cli("verify", "native", "--max-examples", "1", "--repro", "{tmp}"),
      check=usage_error("--repro: cannot write"), impls=CLI)
probe(VF, "--json under a file", cli("verify", "native", "--max-examples", "1", "--json", "{tmp}/a_file/v.json"),
      check=usage_error("--json: cannot write"), impls=CLI)
probe(VF, "an unknown kernel", cli("verify", "no_such_module_xyz:f"), check=usage_error("cannot import"), impls=CLI)
probe(VF, "an unknown dtype", cli("verify", "native", "--dtype", "int8"), check=usage_error("dtype: expected"),
      impls=CLI)
probe(VF, "--device cuda without CUDA", cli("verify", "native", "--device", "cuda"), check=usage_error("device:"),
      impls=CLI, cpu_only_torch=True)
probe("triad check", "--json under /proc", cli("check", "--json", "/proc/c.json"),
      check=usage_error("it is under /proc"), impls=CLI)
probe("triad check", "--json a folder", cli("check", "--json", "{tmp}"), check=usage_error("it is a folder"),
      impls=CLI)
B = "triad bench"
probe(B, "--json under /proc", cli("bench", "--kernel", "scratch", "--json", "/proc/b.json"),
      check=usage_error("it is under /proc"), impls=CLI)
probe(B, "--plot a folder", cli("bench", "--kernel", "scratch", "--plot", "{tmp}"),
      check=usage_error("it is a folder"), impls=CLI)
probe(B, "--json under a file", cli("bench", "--kernel", "scratch", "--json", "{tmp}/a_file/b.json"),
      check=usage_error("--json: cannot write"), impls=CLI)
probe(B, "an unknown kernel", cli("bench", "--kernel", "no_such_kernel"), check=usage_error("no_such_kernel"),
      impls=CLI)


# ---- the tests ---------------------------------------------------------------------------------------------


def _cases() -> list[Any]:
    return [pytest.param(p, impl, id=f"{p.component}: {p.name} [{impl}]") for p in PROBES for impl in p.impls]


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize(("p", "impl"), _cases())
def test_bad_input(p: Probe, impl: str, tmp_path: Path) -> None:
    """A clear error naming the argument, or the right answer: never a traceback, a silent wrong answer, a NaN."""
    if p.cpu_only_torch and torch.cuda.is_available():
        pytest.skip("this torch has CUDA: the probe is about a torch without it")
    (tmp_path / "a_file").write_text("")
    if p.error is not None:
        with np.errstate(all="ignore"), pytest.raises(p.error) as info:
            p.call(impl, tmp_path)
        assert p.match in str(info.value), f"{type(info.value).__name__}: {info.value}"
        return
    with np.errstate(all="ignore"):
        result = p.call(impl, tmp_path)
    assert p.check is not None, "a probe of valid input says what the right answer is"
    p.check(result)


def test_every_component_is_probed() -> None:
    """Each component scratch or native exports has at least one probe, on every implementation of it."""
    components = {name for module in (scratch, native) for name in module.__all__ if name != "BACKENDS"}
    probed = {p.component for p in PROBES if set(TORCH) <= set(p.impls)}
    assert components - probed == set(), f"components without a three-way probe: {sorted(components - probed)}"


def test_the_probe_list_covers_at_least_105_classes() -> None:
    assert len({(p.component, p.name) for p in PROBES}) >= 105


def test_a_read_only_file_system_is_refused_before_the_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from triad.output_paths import OutputPathError, check_output_paths

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(OutputPathError, match=r"--json: cannot write .* is on a read-only file system"):
        check_output_paths({"--json": tmp_path / "new" / "r.json"})


def test_a_write_that_fails_after_the_check_keeps_the_results(tmp_path: Path) -> None:
    """The disk fills up or the folder goes away during a long run: the results go to a temporary file."""
    from triad.output_paths import write_output

    def write(path: Path) -> None:
        if path.parent == tmp_path:
            raise OSError(28, "No space left on device")
        path.write_text("results")

    written = write_output(tmp_path / "r.json", write, "--json")
    assert written != tmp_path / "r.json" and written.read_text() == "results" and written.suffix == ".json"
    written.unlink()
