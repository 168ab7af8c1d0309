r"""Optimisers and gradient clipping in NumPy, in ``torch.optim``'s conventions exactly.

Parameters and gradients are flat ``dict[str, np.ndarray]`` keyed like the scratch modules'
``state_dict()``. ``step(grads)`` updates the parameter arrays **in place** (the model holds the
same arrays), and ``lr`` is a plain attribute so that a schedule can write it before each step.
``t`` counts steps from 1. With :math:`g_t` the gradient, :math:`\theta` a parameter,
:math:`\eta` the learning rate and :math:`\lambda` the weight decay:

**SGD** (``torch.optim.SGD`` with dampening 0 and nesterov off, the only variant here)

.. math::  g'_t = g_t + \lambda\theta_{t-1}, \qquad
           b_1 = g'_1,\quad b_t = \mu b_{t-1} + g'_t, \qquad
           \theta_t = \theta_{t-1} - \eta\, b_t

(without momentum, :math:`\mu = 0`, the step is :math:`\eta g'_t`).

**Adam** (``torch.optim.Adam``, L2 decay added to the gradient, no amsgrad)

.. math::  g'_t = g_t + \lambda\theta_{t-1}, \quad
           m_t = \beta_1 m_{t-1} + (1-\beta_1) g'_t, \quad
           v_t = \beta_2 v_{t-1} + (1-\beta_2) g'^2_t,

.. math::  \theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\,
           \frac{m_t}{\sqrt{v_t}\,/\sqrt{1-\beta_2^t} + \epsilon}

Note where :math:`\epsilon` sits: it is added to :math:`\sqrt{\hat v_t}` (the bias-corrected
root), not to :math:`v_t` and not to the uncorrected :math:`\sqrt{v_t}`.

**AdamW** (``torch.optim.AdamW``): decoupled decay, applied to the parameter before the Adam
step and scaled by the learning rate, :math:`\theta \leftarrow \theta(1 - \eta\lambda)`; the
gradient itself is not decayed.

**Clipping by global norm** (``torch.nn.utils.clip_grad_norm_``, 2-norm)

.. math::  n = \Big(\sum_{\text{tensors } G} \|G\|_2^2\Big)^{1/2}, \qquad
           G \leftarrow G \cdot \min\Big(1, \frac{c}{n + 10^{-6}}\Big)

torch always multiplies (also by exactly 1.0); the ``1e-6`` keeps a zero gradient finite.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference.validate import check_real, fmt_shape

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds this to the total norm


def _check_hyper(name: str, value: float, low: float, high: float | None = None) -> None:
    """value finite in [low, high) (or >= low without high); TypeError or ValueError naming it otherwise."""
    check_real(name, value, low, high, open_high=high is not None, what="a finite value")


class Optimizer:
    """What SGD, Adam and AdamW share: the parameter dict, ``lr``, the step count and the gradient check."""

    def __init__(self, params: dict[str, np.ndarray], lr: float) -> None:
        if not isinstance(params, dict) or not params:
            raise TypeError(
                f"params: expected a non-empty dict[str, np.ndarray], got {type(params).__name__}"
            )
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                kind = f"dtype {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(f"params[{name!r}]: expected a floating numpy.ndarray, got {kind}")
        _check_hyper("lr", lr, 0.0)
        self.params = params
        self.lr = float(lr)
        self.t = 0

    def _check_grads(self, grads: Mapping[str, np.ndarray]) -> None:
        missing = sorted(set(self.params) - set(grads))
        extra = sorted(set(grads) - set(self.params))
        if missing or extra:
            raise ValueError(f"grads: expected the keys of params; missing {missing}, extra {extra}")
        for name, p in self.params.items():
            if np.shape(grads[name]) != p.shape:
                raise ValueError(
                    f"grads[{name!r}]: expected shape {fmt_shape(p.shape)} like the parameter, "
                    f"got {fmt_shape(np.shape(grads[name]))}"
                )


class SGD(Optimizer):
    """torch.optim.SGD(params, lr, momentum, weight_decay) with dampening 0 and nesterov off."""

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, lr)
        _check_hyper("momentum", momentum, 0.0)
        _check_hyper("weight_decay", weight_decay, 0.0)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.buffers: dict[str, np.ndarray] = {}  # b_t per parameter, created on the first step

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        self._check_grads(grads)
        self.t += 1
        for name, p in self.params.items():
            g = grads[name] + self.weight_decay * p if self.weight_decay else grads[name]
            if self.momentum:
                if name in self.buffers:
                    self.buffers[name] = self.momentum * self.buffers[name] + g
                else:
                    self.buffers[name] = np.array(g, dtype=p.dtype)  # b_1 = g'_1, a copy
                g = self.buffers[name]
            p -= self.lr * g


class Adam(Optimizer):
    """torch.optim.Adam(params, lr, betas, eps, weight_decay); ``decoupled=True`` is AdamW."""

    decoupled = False

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_hyper("betas[0]", betas[0], 0.0, 1.0)
        _check_hyper("betas[1]", betas[1], 0.0, 1.0)
        _check_hyper("eps", eps, 0.0)
        _check_hyper("weight_decay", weight_decay, 0.0)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.m = {name: np.zeros_like(p) for name, p in params.items()}  # first moment m_t
        self.v = {name: np.zeros_like(p) for name, p in params.items()}  # second moment v_t

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        self._check_grads(grads)
        self.t += 1
        step_size = self.lr / (1.0 - self.beta1**self.t)
        bias_correction2_sqrt = np.sqrt(1.0 - self.beta2**self.t)
        for name, p in self.params.items():
            g = grads[name]
            if self.decoupled:
                p *= 1.0 - self.lr * self.weight_decay
            elif self.weight_decay:
                g = g + self.weight_decay * p
            self.m[name] = self.beta1 * self.m[name] + (1.0 - self.beta1) * g
            self.v[name] = self.beta2 * self.v[name] + (1.0 - self.beta2) * g * g
            denom = np.sqrt(self.v[name]) / bias_correction2_sqrt + self.eps
            p -= step_size * self.m[name] / denom


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2, as torch)."""

    decoupled = True

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_grad_norm(
    grads: Mapping[str, np.ndarray], max_norm: float
) -> tuple[dict[str, np.ndarray], float]:
    """Scale all gradients together so that their global 2-norm is at most ``max_norm``.

    Returns ``(clipped, total_norm)`` with ``total_norm`` the norm *before* clipping (what
    ``clip_grad_norm_`` returns). Unlike torch the input dict is left untouched.
    """
    _check_hyper("max_norm", max_norm, 0.0)
    if not grads:
        raise ValueError("grads: expected at least one gradient, got an empty dict")
    per_tensor = np.array([np.linalg.norm(np.ravel(g)) for g in grads.values()])  # (n_tensors,)
    total_norm = float(np.linalg.norm(per_tensor))
    clip_coef = min(max_norm / (total_norm + CLIP_EPS), 1.0)
    return {name: g * clip_coef for name, g in grads.items()}, total_norm
