r"""Cross-entropy with ``ignore_index`` and label smoothing, forward and backward, in two conventions.

For one position with logits :math:`z \in \mathbb R^V`, target :math:`t` and a target distribution
:math:`q` (:math:`\sum_c q_c = 1`):

.. math::  \ell = -\sum_c q_c \log \mathrm{softmax}(z)_c, \qquad
           L = \frac{1}{N} \sum_{n:\ t_n \ne \text{ignore}} \ell_n

(:math:`N` = number of positions whose target is not ``ignore_index``; ignored positions add nothing).
Two choices of :math:`q` with smoothing :math:`\varepsilon`:

- **torch's** ``F.cross_entropy(label_smoothing=eps)``: :math:`\varepsilon/V` on *every* class, so
  :math:`q_t = 1 - \varepsilon + \varepsilon/V` and :math:`q_c = \varepsilon/V` for :math:`c \ne t`.
- **the 2017 paper's code** (tensor2tensor's convention): :math:`q_t = 1 - \varepsilon` and
  :math:`q_c = \varepsilon/(V-1)` for :math:`c \ne t`. (The Annotated Transformer also zeroes the padding
  class and so spreads :math:`\varepsilon/(V-2)`; it minimises the KL divergence
  :math:`\sum_c q_c \log(q_c / p_c)`, which differs from :math:`\ell` by the constant entropy of :math:`q`:
  same gradient. Here every class is a class.)

Backward. With :math:`\log p_c = z_c - \log\sum_j e^{z_j}`, :math:`\partial \log p_c / \partial z_j =
\delta_{cj} - p_j`, so

.. math::  \frac{\partial \ell}{\partial z_j} = -\sum_c q_c(\delta_{cj} - p_j) = p_j \sum_c q_c - q_j = p_j - q_j,
           \qquad dz_n = \frac{dL}{N}\,(p_n - q_n), \ \ dz_n = 0 \text{ at ignored positions.}

**Mean squared error** (the regression head): for predictions :math:`\hat y` and targets :math:`y` of the
same shape, with :math:`N` elements,

.. math::  L = \frac{1}{N} \sum_n (\hat y_n - y_n)^2, \qquad
           \frac{\partial L}{\partial \hat y_n} = \frac{2}{N} (\hat y_n - y_n).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.softmax import log_softmax_forward
from reference.validate import check_loss_inputs, check_mse_inputs


def _smoothed_cross_entropy(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int, on_target: float, off_target: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """Mean cross-entropy against q = on_target at the target, off_target elsewhere."""
    V = logits.shape[-1]
    logits_rows = logits.reshape(-1, V)  # (N_all, V)
    targets_rows = targets.reshape(-1)  # (N_all,)
    valid = targets_rows != ignore_index  # (N_all,)
    log_probs, probs = log_softmax_forward(logits_rows[valid])  # (N, V), (N, V)
    q = np.full(log_probs.shape, off_target, dtype=logits.dtype)  # (N, V)
    q[np.arange(q.shape[0]), targets_rows[valid]] = on_target  # (N, V)
    n_valid = q.shape[0]
    loss = -np.sum(q * log_probs) / n_valid  # ()
    return np.asarray(loss, dtype=logits.dtype), {"probs": probs, "q": q, "valid": valid, "shape": logits.shape}


def _smoothed_cross_entropy_backward(dloss: float, cache: dict[str, Any]) -> np.ndarray:
    """dL -> dlogits (..., V) = dL / N * (softmax - q), zero at ignored positions."""
    probs, q, valid = cache["probs"], cache["q"], cache["valid"]
    V = probs.shape[-1]
    dlogits_rows = np.zeros((valid.shape[0], V), dtype=probs.dtype)  # (N_all, V)
    dlogits_rows[valid] = float(dloss) / q.shape[0] * (probs - q)  # (N, V)
    return dlogits_rows.reshape(cache["shape"])  # (..., V)


def cross_entropy_forward(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100, label_smoothing: float = 0.0
) -> tuple[np.ndarray, dict[str, Any]]:
    """logits (..., V), targets (...) int -> mean loss (a 0-d array), torch's convention (eps / V on every
    class); returns (loss, cache)."""
    check_loss_inputs(logits, targets, ignore_index, label_smoothing)
    V = logits.shape[-1]
    eps = float(label_smoothing)
    return _smoothed_cross_entropy(logits, targets, ignore_index, 1.0 - eps + eps / V, eps / V)


def cross_entropy_backward(dloss: float, cache: dict[str, Any]) -> np.ndarray:
    """dloss (scalar) -> dlogits (..., V)."""
    return _smoothed_cross_entropy_backward(dloss, cache)


def paper_label_smoothing_forward(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100, label_smoothing: float = 0.0
) -> tuple[np.ndarray, dict[str, Any]]:
    """logits (..., V), targets (...) int -> mean loss (a 0-d array), the 2017 paper's convention (1 - eps on
    the target, eps / (V - 1) on each other class); returns (loss, cache)."""
    check_loss_inputs(logits, targets, ignore_index, label_smoothing)
    V = logits.shape[-1]
    eps = float(label_smoothing)
    if eps > 0.0 and V < 2:
        raise ValueError(f"logits: the paper's smoothing eps/(V-1) needs V >= 2 classes, got V={V}")
    return _smoothed_cross_entropy(logits, targets, ignore_index, 1.0 - eps, eps / (V - 1) if eps > 0.0 else 0.0)


def paper_label_smoothing_backward(dloss: float, cache: dict[str, Any]) -> np.ndarray:
    """dloss (scalar) -> dlogits (..., V)."""
    return _smoothed_cross_entropy_backward(dloss, cache)


def mse_forward(predicted: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """predicted (...), targets (...) -> mean squared error (a 0-d array); returns (loss, cache = residual)."""
    check_mse_inputs(predicted, targets)
    residual = predicted - targets  # (...)
    return np.mean(residual**2), residual


def mse_backward(dloss: float, residual: np.ndarray) -> np.ndarray:
    """dloss (scalar) -> dpredicted (...) = 2 dloss (predicted - targets) / N."""
    return 2.0 * dloss * residual / residual.size  # (...)
