"""Cross-entropy with ``ignore_index`` and label smoothing from tensor ops, in torch's convention and the 2017
paper's, and the mean squared error; mirrors ``reference/losses.py`` (the maths is in its docstring)."""

from __future__ import annotations

import torch

from reference.validate import check_loss_inputs, check_mse_inputs
from torch_impl.scratch.softmax import log_softmax


def _smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, on_target: float,
                            off_target: float) -> torch.Tensor:
    V = logits.shape[-1]
    valid = targets.reshape(-1) != ignore_index  # (N_all,)
    log_probs = log_softmax(logits.reshape(-1, V)[valid])  # (N, V)
    q = torch.full_like(log_probs, off_target)  # (N, V)
    q[torch.arange(q.shape[0]), targets.reshape(-1)[valid]] = on_target  # (N, V)
    return -(q * log_probs).sum() / q.shape[0]  # ()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """logits (..., V), targets (...) -> mean loss; eps / V on every class (torch's convention)."""
    check_loss_inputs(logits, targets, ignore_index, label_smoothing)
    V, eps = logits.shape[-1], float(label_smoothing)
    return _smoothed_cross_entropy(logits, targets, ignore_index, 1.0 - eps + eps / V, eps / V)


def paper_label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                               label_smoothing: float = 0.0) -> torch.Tensor:
    """logits (..., V), targets (...) -> mean loss; 1 - eps on the target, eps / (V - 1) elsewhere (the paper's)."""
    check_loss_inputs(logits, targets, ignore_index, label_smoothing)
    V, eps = logits.shape[-1], float(label_smoothing)
    if eps > 0.0 and V < 2:
        raise ValueError(f"logits: the paper's smoothing eps/(V-1) needs V >= 2 classes, got V={V}")
    return _smoothed_cross_entropy(logits, targets, ignore_index, 1.0 - eps, eps / (V - 1) if eps > 0.0 else 0.0)


def mse(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """predicted (...), targets (...) -> mean of (predicted - targets)^2."""
    check_mse_inputs(predicted, targets)
    return ((predicted - targets) ** 2).mean()  # ()
