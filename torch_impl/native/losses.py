r"""Cross-entropy, native: ``F.cross_entropy(ignore_index=..., label_smoothing=...)`` (eps / V on every class);
the mean squared error through ``F.mse_loss``.

torch has no loss in the 2017 paper's convention (1 - eps on the target, eps / (V - 1) elsewhere), but the
two target distributions coincide when torch's eps is :math:`\varepsilon V / (V - 1)`:
its off-target share is then :math:`\varepsilon / (V - 1)` and its target share
:math:`1 - \varepsilon V/(V-1) + \varepsilon/(V-1) = 1 - \varepsilon`. ``paper_label_smoothing_loss`` uses
exactly that; above :math:`\varepsilon = (V-1)/V` torch's eps would exceed 1, which it refuses, so the loss,
linear in eps, is extended from its values at 0 and 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.validate import check_loss_inputs, check_mse_inputs


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """logits (..., V), targets (...) -> mean loss over the targets that are not ``ignore_index``.

    The targets are checked first, as in the reference (ids in range, not all ignored): torch would return NaN
    for no target and, on a GPU, stop at a device assert for an id >= V. Reading them is one device sync."""
    check_loss_inputs(logits, targets, ignore_index, label_smoothing)
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=ignore_index,
                           label_smoothing=label_smoothing)


def paper_label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                               label_smoothing: float = 0.0) -> torch.Tensor:
    """logits (..., V), targets (...) -> mean loss, 1 - eps on the target and eps / (V - 1) elsewhere."""
    check_loss_inputs(logits, targets, ignore_index, label_smoothing)
    V = logits.shape[-1]
    if label_smoothing > 0.0 and V < 2:
        raise ValueError(f"logits: the paper's smoothing eps/(V-1) needs V >= 2 classes, got V={V}")
    torch_eps = label_smoothing * V / (V - 1) if label_smoothing > 0.0 else 0.0
    if torch_eps <= 1.0:
        return cross_entropy(logits, targets, ignore_index, torch_eps)
    # torch takes eps <= 1 only; its loss is linear in eps, (1 - eps) CE(0) + eps CE(1), so extend the line.
    plain, uniform = (cross_entropy(logits, targets, ignore_index, s) for s in (0.0, 1.0))
    return (1.0 - torch_eps) * plain + torch_eps * uniform


def mse(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """predicted (...), targets (...) -> ``F.mse_loss`` (mean reduction); shapes must match (torch would broadcast)."""
    check_mse_inputs(predicted, targets)
    return F.mse_loss(predicted, targets)
