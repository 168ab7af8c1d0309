"""NumPy optimisers, clipping and the warm-up schedule against torch.optim, step for step, in float64.

The gradients depend on the parameters (loss ``0.25 |p|^2 + <noise_t, p>``, so ``g = 0.5 p + noise_t``):
each implementation computes them from its *own* parameters, so a difference in any step is carried
into every later one instead of being reset by shared gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.optim import SGD, Adam, AdamW, clip_grad_norm
from reference.schedule import WarmupSchedule, warmup_rate
from triad.tolerance import F64_REL_BOUND, max_rel_err
from triad.train import warmup_lambda_lr

SHAPES = {"a.weight": (3, 4), "a.bias": (3,), "b.weight": (2, 2, 3)}
REFERENCE = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _hyper(kind: str, lr: float, weight_decay: float, momentum: float, eps: float) -> dict:
    if kind == "sgd":
        return {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
    return {"lr": lr, "betas": (0.9, 0.98), "eps": eps, "weight_decay": weight_decay}


def _run_both(kind, hyper, steps, seed, grad_scale, max_norm, schedule):
    """Train the same start K steps in NumPy and in torch; return both final parameter dicts and lrs."""
    rng = np.random.default_rng(seed)
    start = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    noises = [
        {name: grad_scale * rng.standard_normal(shape) for name, shape in SHAPES.items()}
        for _ in range(steps)
    ]

    params = {name: p.copy() for name, p in start.items()}
    opt = REFERENCE[kind](params, **hyper)
    sched = WarmupSchedule(opt, d_model=16, warmup_steps=3) if schedule else None
    ref_lrs = []
    for noise in noises:
        grads = {name: 0.5 * params[name] + noise[name] for name in params}
        if max_norm is not None:
            grads, _ = clip_grad_norm(grads, max_norm)
        ref_lrs.append(opt.lr)
        opt.step(grads)
        if sched is not None:
            sched.step()

    tparams = {name: torch.tensor(p, requires_grad=True) for name, p in start.items()}
    topt = TORCH[kind](list(tparams.values()), **hyper)
    tsched = warmup_lambda_lr(topt, d_model=16, warmup_steps=3) if schedule else None
    torch_lrs = []
    for noise in noises:
        topt.zero_grad()
        loss = sum(0.25 * (p * p).sum() + (p * torch.from_numpy(noise[n])).sum() for n, p in tparams.items())
        loss.backward()
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(tparams.values()), max_norm)
        torch_lrs.append(topt.param_groups[0]["lr"])
        topt.step()
        if tsched is not None:
            tsched.step()
    return params, {n: p.detach().numpy() for n, p in tparams.items()}, ref_lrs, torch_lrs


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@given(
    seed=st.integers(0, 2**16),
    steps=st.integers(1, 6),
    lr=st.sampled_from([1e-3, 0.1]),
    weight_decay=st.sampled_from([0.0, 0.1]),
    momentum=st.sampled_from([0.0, 0.9]),
    eps=st.sampled_from([1e-8, 1e-3]),
    grad_scale=st.sampled_from([1.0, 1e-6]),  # 1e-6: eps dominates, so its placement shows
    max_norm=st.sampled_from([None, 0.5, 100.0]),
    schedule=st.booleans(),
)
def test_optimizer_steps_agree_with_torch_optim(
    kind, seed, steps, lr, weight_decay, momentum, eps, grad_scale, max_norm, schedule
):
    hyper = _hyper(kind, lr, weight_decay, momentum, eps)
    ref, tch, ref_lrs, torch_lrs = _run_both(kind, hyper, steps, seed, grad_scale, max_norm, schedule)
    assert ref_lrs == torch_lrs
    for name in SHAPES:
        assert max_rel_err(tch[name], ref[name]) <= F64_REL_BOUND, name


@given(seed=st.integers(0, 2**16), max_norm=st.sampled_from([1e-3, 1.0, 1e3]), zero=st.booleans())
def test_clip_grad_norm_agrees_with_torch(seed, max_norm, zero):
    rng = np.random.default_rng(seed)
    grads = {name: (0.0 if zero else 1.0) * rng.standard_normal(shape) for name, shape in SHAPES.items()}
    clipped, total = clip_grad_norm(grads, max_norm)
    tensors = [torch.zeros(shape, dtype=torch.float64, requires_grad=True) for shape in SHAPES.values()]
    for t, g in zip(tensors, grads.values(), strict=True):
        t.grad = torch.from_numpy(g.copy())
    torch_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert abs(total - float(torch_total)) <= F64_REL_BOUND * max(total, 1.0)
    for t, name in zip(tensors, SHAPES, strict=True):
        assert max_rel_err(t.grad.numpy(), clipped[name]) <= F64_REL_BOUND
    global_norm = np.sqrt(sum(np.sum(g * g) for g in clipped.values()))
    assert global_norm <= max_norm * (1 + 1e-12)


def test_clip_grad_norm_leaves_its_input_untouched():
    grads = {"w": np.full((2, 2), 10.0)}
    clipped, total = clip_grad_norm(grads, 1.0)
    assert total == 20.0
    assert np.all(grads["w"] == 10.0)
    assert np.allclose(clipped["w"], 10.0 / (20.0 + 1e-6))


@given(step=st.integers(1, 10**5), d_model=st.integers(1, 1024), warmup=st.integers(1, 10**4))
def test_warmup_rate_matches_the_formula(step, d_model, warmup):
    rising = step / (d_model**0.5 * warmup**1.5)  # t * w^-1.5 * d^-0.5
    decaying = 1.0 / (d_model**0.5 * step**0.5)  # t^-0.5 * d^-0.5
    expected = rising if step <= warmup else decaying
    assert warmup_rate(step, d_model, warmup) == pytest.approx(expected, rel=1e-12)
    assert warmup_rate(step, d_model, warmup, factor=2.0) == pytest.approx(2.0 * expected, rel=1e-12)


def test_warmup_rate_peaks_at_the_end_of_warmup():
    rates = [warmup_rate(t, 512, 4000) for t in range(1, 10001)]
    assert int(np.argmax(rates)) + 1 == 4000
    assert rates[3999] == pytest.approx(512**-0.5 * 4000**-0.5, rel=1e-12)


@pytest.mark.parametrize("step", [0, -1, 1.5, True])
def test_warmup_rate_rejects_steps_before_one(step):
    with pytest.raises(ValueError, match="step: expected an int >= 1"):
        warmup_rate(step, 512, 4000)


def test_warmup_schedule_writes_the_rate_into_the_optimiser():
    params = {"w": np.ones(3)}
    opt = SGD(params, lr=123.0)
    sched = WarmupSchedule(opt, d_model=4, warmup_steps=2)
    assert opt.lr == warmup_rate(1, 4, 2)
    opt.step({"w": np.ones(3)})  # the step really uses the scheduled rate, not 123
    assert np.allclose(params["w"], 1.0 - warmup_rate(1, 4, 2))
    assert sched.step() == opt.lr == warmup_rate(2, 4, 2)

    tparam = torch.ones(3, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([tparam], lr=123.0)
    tsched = warmup_lambda_lr(topt, d_model=4, warmup_steps=2)
    assert topt.param_groups[0]["lr"] == warmup_rate(1, 4, 2)
    tparam.grad = torch.ones(3, dtype=torch.float64)
    topt.step()
    tsched.step()
    assert topt.param_groups[0]["lr"] == warmup_rate(2, 4, 2)
    assert np.allclose(tparam.detach().numpy(), 1.0 - warmup_rate(1, 4, 2))


def test_optimizers_reject_missing_extra_and_misshaped_gradients():
    opt = Adam({"w": np.zeros((2, 3)), "b": np.zeros(2)})
    with pytest.raises(
        ValueError,
        match=r"grads: expected the keys of params; missing \['b'\], extra \['c'\]",
    ):
        opt.step({"w": np.zeros((2, 3)), "c": np.zeros(2)})
    with pytest.raises(
        ValueError,
        match=r"grads\['w'\]: expected shape \(2, 3\) like the parameter, got \(3, 2\)",
    ):
        opt.step({"w": np.zeros((3, 2)), "b": np.zeros(2)})


def test_optimizers_reject_bad_arguments():
    with pytest.raises(TypeError, match=r"params\['w'\]: expected a floating numpy.ndarray, got dtype int64"):
        SGD({"w": np.zeros(2, dtype=np.int64)}, lr=0.1)
    with pytest.raises(TypeError, match="params: expected a non-empty dict"):
        SGD({}, lr=0.1)
    with pytest.raises(ValueError, match=r"lr: expected a finite value >= 0, got -1"):
        SGD({"w": np.zeros(2)}, lr=-1)
    with pytest.raises(ValueError, match=r"betas\[1\]: expected a finite value in \[0, 1\), got 1.0"):
        AdamW({"w": np.zeros(2)}, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"max_norm: expected a finite value >= 0, got -1"):
        clip_grad_norm({"w": np.zeros(2)}, -1)
    with pytest.raises(ValueError, match="warmup_steps: expected an int >= 1, got 0"):
        WarmupSchedule(SGD({"w": np.zeros(2)}, lr=0.1), d_model=4, warmup_steps=0)
