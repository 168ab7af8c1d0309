"""``triad check`` for the three model kinds: scratch and native against the reference on one case each.

The case and the runners are ``triad.harness.models``'s (the model tests use the same ones).
"""

from __future__ import annotations

from reference.config import TransformerConfig
from triad.agreement.base import ComponentResult
from triad.harness.models import compare_runs, grad_magnitudes, make_case, run_reference_model, run_torch_model
from triad.tolerance import F64_REL_BOUND, mismatch_lines


def check_model(kind: str, config: TransformerConfig) -> list[ComponentResult]:
    """Scratch and native against the reference on one fixed case: B=3, Ls=7, Lt=6, padding, seed 0.

    The output error covers the logits and the loss; every parameter gradient is folded into one entry.
    """
    case = make_case(kind, config, B=3, Ls=7, Lt=6, seed=0)
    expected = run_reference_model(case)
    results = []
    for implementation in ("scratch", "native"):
        actual = run_torch_model(case, implementation)
        errs = compare_runs(actual, expected)
        out_err = max(errs.pop("out"), errs.pop("loss"))
        grad_errs = {"d_params": max(errs.values())}  # the worst of every parameter gradient
        result = ComponentResult(kind, f"{implementation} vs reference", "float64", out_err, grad_errs, F64_REL_BOUND)
        result.where = mismatch_lines(actual, expected, F64_REL_BOUND, grad_magnitudes(expected))
        results.append(result)
    return results


def check_encoder_decoder() -> list[ComponentResult]:
    """Post-norm with final norms (nn.Transformer's defaults), ReLU, untied, 2 + 2 layers."""
    return check_model("encoder_decoder", TransformerConfig(
        d_model=8, n_heads=2, d_ff=12, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, src_vocab_size=11,
        tgt_vocab_size=13, max_len=16))


def check_encoder_classifier() -> list[ComponentResult]:
    """Pre-norm, exact GELU, 3 classes, 2 layers."""
    return check_model("encoder_classifier", TransformerConfig(
        d_model=8, n_heads=2, d_ff=12, n_encoder_layers=2, dropout=0.0, activation="gelu", norm_first=True,
        src_vocab_size=11, n_outputs=3, max_len=16))


def check_decoder_lm() -> list[ComponentResult]:
    """Pre-norm, tanh GELU, tied embedding and LM head, 2 layers."""
    return check_model("decoder_lm", TransformerConfig(
        d_model=8, n_heads=2, d_ff=12, n_decoder_layers=2, dropout=0.0, activation="gelu_tanh", norm_first=True,
        tgt_vocab_size=13, max_len=16, tie_weights=True))
