r"""The warm-up schedule of "Attention Is All You Need" (section 5.3), and an object that applies it.

.. math::  \eta(t) = f \cdot d_\text{model}^{-1/2} \cdot \min\big(t^{-1/2},\ t\, w^{-3/2}\big),
           \qquad t = 1, 2, \dots

It rises linearly for the first :math:`w` steps (``warmup_steps``) and then decays as
:math:`t^{-1/2}`; the two branches meet at :math:`t = w`. The paper uses :math:`f = 1`; the
Annotated Transformer adds the factor :math:`f`.

Two tutorial bugs this module avoids: steps start at 1 (``t = 0`` would divide by zero in
:math:`t^{-1/2}`; here it is a ValueError), and the rate is *written into the optimiser*
(``WarmupSchedule`` sets ``optimizer.lr``; computing it and leaving the optimiser at its
initial rate is the bug). The torch side is ``triad.train.warmup_lambda_lr``: a
``LambdaLR`` with base rate 1 whose factor for its ``last_epoch`` e is :math:`\eta(e + 1)`,
so both follow the same sequence of rates step for step.
"""

from __future__ import annotations

from typing import Protocol

from reference.validate import check_real


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")


def warmup_rate(step: int, d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """eta(step) = factor * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), for step >= 1."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(
            f"step: expected an int >= 1 (steps start at 1; step 0 would divide by zero), got {step!r}"
        )
    _check_positive_int("d_model", d_model)
    _check_positive_int("warmup_steps", warmup_steps)
    check_real("factor", factor, 0.0, open_low=True, what="a positive finite float")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


class HasLearningRate(Protocol):
    lr: float


class WarmupSchedule:
    """Writes ``warmup_rate(t)`` into ``optimizer.lr``: rate(1) on construction, rate(t + 1) on each step().

    Call ``schedule.step()`` after each ``optimizer.step(...)``, as with torch's schedulers.
    """

    def __init__(
        self, optimizer: HasLearningRate, d_model: int, warmup_steps: int, factor: float = 1.0
    ) -> None:
        self.optimizer = optimizer
        self.d_model, self.warmup_steps, self.factor = d_model, warmup_steps, factor
        self.t = 1
        self.optimizer.lr = warmup_rate(self.t, d_model, warmup_steps, factor)

    def step(self) -> float:
        """Advance to the next step and set its rate in the optimiser; returns that rate."""
        self.t += 1
        self.optimizer.lr = warmup_rate(self.t, self.d_model, self.warmup_steps, self.factor)
        return self.optimizer.lr
