"""Training workflows: one loop for the three tasks on any of the three implementations.

The recipe is the paper's: Adam (betas 0.9/0.98, eps 1e-9), the warm-up schedule
``reference.schedule.warmup_rate`` written into the optimiser before every step, gradient clipping by
global norm 1, cross-entropy (torch's convention, ``ignore_index`` -100). The reference trains with
its own hand-written backward and ``reference.optim``; scratch and native with autograd and
``torch.optim``. All three start from the same flat parameter dict (``reference.models.init_params``
with the run's seed), so with dropout 0 in float64 they follow the same trajectory
(``equivalence_tests/test_train.py``).

Torch side of the schedule: ``warmup_lambda_lr`` sets every group's rate to 1 and wraps the optimiser
in a ``LambdaLR`` whose factor for ``last_epoch`` e is ``warmup_rate(e + 1)``. ``LambdaLR`` writes
``param_group["lr"]`` itself, on construction (the rate of step 1) and on each ``scheduler.step()``,
exactly when ``reference.schedule.WarmupSchedule`` writes ``optimizer.lr``.

Tasks (``triad.tasks``): ``copy`` trains the encoder-decoder and scores exact-match greedy decoding
(with the key/value cache) on each of its four distinct sequences (there are no others to hold out);
``charlm`` trains the decoder-only LM and scores the share of sentences regenerated exactly from their
first word; ``classify`` trains the encoder classifier and scores held-out accuracy; ``regress`` trains
the same encoder with a one-output head on the mean squared error and scores held-out :math:`R^2`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference import models as ref
from reference.config import TransformerConfig
from reference.decoding import (
    cached_next_logits,
    encoder_decoder_cache,
    encoder_decoder_step,
    generate,
)
from reference.losses import cross_entropy_backward, cross_entropy_forward, mse_backward, mse_forward
from reference.masks import causal_mask
from reference.optim import Adam, clip_grad_norm
from reference.schedule import WarmupSchedule, warmup_rate
from torch_impl.convert import load_native, load_scratch, native_params, scratch_params, to_numpy
from torch_impl.native import losses as native_losses
from torch_impl.registry import PARAM_SHAPES, REFERENCE_BACKWARD, TORCH_MODELS
from torch_impl.scratch import losses as scratch_losses
from torch_impl.validate import check_device
from triad.checkpoint import load_checkpoint, save_checkpoint
from triad.decode import TorchKVDecoder
from triad.output_paths import check_output_paths, output_path_problem, write_output
from triad.tasks import charlm, classify, copy
from triad.tasks.common import IGNORE_INDEX

IMPLEMENTATIONS = ("reference", "scratch", "native")
TASK_KINDS = {"copy": "encoder_decoder", "charlm": "decoder_lm", "classify": "encoder_classifier",
              "regress": "encoder_classifier"}
Batch = dict[str, np.ndarray]


def warmup_lambda_lr(
    optimizer: torch.optim.Optimizer, d_model: int, warmup_steps: int, factor: float = 1.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that sets each group's lr to warmup_rate(t) for step t = 1, 2, ... (base rate 1)."""
    warmup_rate(1, d_model, warmup_steps, factor)  # validates the arguments now, not at the first step
    for group in optimizer.param_groups:
        group["lr"] = 1.0  # LambdaLR multiplies this base rate by the factor: 1.0 * rate is exact
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda=lambda epoch: warmup_rate(epoch + 1, d_model, warmup_steps, factor)
    )


# ---------------------------------------------------------------------------------------------------------
# The recipe and the tasks
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Optimisation settings (the paper's, with a factor on the schedule for these tiny models)."""

    steps: int
    warmup_steps: int
    lr_factor: float
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0  # torch's convention: eps/V on every class


@dataclass
class Task:
    """A task bound to a seed: its model, its recipe, its batches and its metric."""

    name: str
    kind: str
    config: TransformerConfig
    recipe: Recipe
    batch: Callable[[int], Batch]  # step -> the training batch of that step
    metadata: dict[str, Any] = field(default_factory=dict)  # stored in checkpoints (e.g. the vocabulary)

    @property
    def regression(self) -> bool:
        """A one-output encoder head, trained on the mean squared error (else cross-entropy)."""
        return self.kind == "encoder_classifier" and self.config.n_outputs == 1


def make_task(
    name: str, seed: int, steps: int | None = None, override: TransformerConfig | None = None
) -> Task:
    """The task ``name`` with its default model and recipe; ``steps`` and ``override`` replace the defaults
    (a config must keep the task's vocabulary sizes and ``n_outputs``, and a ``max_len`` at least the task's).

    Training batches are drawn with seed ``seed * 100_003 + step``, the held-out sets of ``classify`` and
    ``regress`` with
    ``seed + 1_000_000_007``: disjoint streams for any seed below 10^4 and runs below 10^5 steps."""
    if name == "copy":
        V = copy.VOCAB_SIZE
        config = TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=1, n_decoder_layers=1,
                                   dropout=0.0, src_vocab_size=V, tgt_vocab_size=V, max_len=16)
        recipe = Recipe(steps=800, warmup_steps=30, lr_factor=1.0, label_smoothing=0.1)  # the paper's eps

        def batch(step: int) -> Batch:
            data = copy.copy_data(32, seed=seed * 100_003 + step)
            return {"src": data.src, "tgt": data.tgt[:, :-1], "targets": data.tgt[:, 1:]}

        metadata = {"name": name, "length": 8}
    elif name == "charlm":
        data = charlm.charlm_data()
        V = data.vocab.size
        config = TransformerConfig(d_model=48, n_heads=4, d_ff=96, n_encoder_layers=0, n_decoder_layers=2,
                                   dropout=0.0, src_vocab_size=V, tgt_vocab_size=V, max_len=data.window)
        recipe = Recipe(steps=300, warmup_steps=50, lr_factor=1.0)

        def batch(step: int) -> Batch:
            return {"tokens": data.inputs, "targets": data.targets}

        metadata = {"name": name, "vocab": data.vocab.to_dict(), "window": data.window}
    elif name in ("classify", "regress"):
        n_outputs = classify.N_CLASSES if name == "classify" else 1
        config = TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=0,
                                   dropout=0.0, src_vocab_size=8, tgt_vocab_size=8, max_len=16, n_outputs=n_outputs)
        recipe = Recipe(steps=200, warmup_steps=40, lr_factor=1.0)

        def batch(step: int) -> Batch:
            data = classify.classify_data(64, seed=seed * 100_003 + step)
            targets = data.labels if name == "classify" else data.values[:, None]  # (B,) ids or (B, 1) values
            return {"tokens": data.tokens, "targets": targets}

        metadata = {"name": name, "n_outputs": n_outputs}
    else:
        raise ValueError(f"task: expected one of {tuple(TASK_KINDS)}, got {name!r}")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
        recipe = dataclasses.replace(recipe, steps=steps)
    if override is not None:
        for field_name in ("src_vocab_size", "tgt_vocab_size", "n_outputs"):
            if getattr(override, field_name) != getattr(config, field_name):
                raise ValueError(f"override: {field_name} must stay {getattr(config, field_name)} for the "
                                 f"{name!r} task, got {getattr(override, field_name)}")
        if override.max_len < config.max_len:
            raise ValueError(f"override: max_len must be at least {config.max_len} for the {name!r} task, "
                             f"got {override.max_len}")
        config = override
    return Task(name, TASK_KINDS[name], config, recipe, batch, metadata)


# ---------------------------------------------------------------------------------------------------------
# One model and its optimiser, per implementation
# ---------------------------------------------------------------------------------------------------------


class ReferenceModel:
    """The NumPy model: hand-written backward, ``reference.optim.Adam`` with the warm-up schedule."""

    def __init__(self, task: Task, params: dict[str, np.ndarray]) -> None:
        self.task, self.config = task, task.config
        self.params = {name: p.copy() for name, p in params.items()}
        r = task.recipe
        self.optimizer = Adam(self.params, betas=r.betas, eps=r.eps)
        self.schedule = WarmupSchedule(self.optimizer, self.config.d_model, r.warmup_steps, r.lr_factor)

    def forward(self, batch: Batch) -> tuple[np.ndarray, Any]:
        kind, config = self.task.kind, self.config
        if kind == "encoder_decoder":
            Lt = batch["tgt"].shape[1]
            return ref.encoder_decoder_forward(batch["src"], batch["tgt"], self.params, config,
                                               tgt_mask=causal_mask(Lt, Lt))
        forward = ref.decoder_lm_forward if kind == "decoder_lm" else ref.encoder_classifier_forward
        return forward(batch["tokens"], self.params, config)

    def train_step(self, batch: Batch) -> float:
        out, cache = self.forward(batch)
        if self.task.regression:
            loss, residual = mse_forward(out, batch["targets"])
            dout = mse_backward(1.0, residual)
        else:
            loss, loss_cache = cross_entropy_forward(out, batch["targets"], ignore_index=IGNORE_INDEX,
                                                     label_smoothing=self.task.recipe.label_smoothing)
            dout = cross_entropy_backward(1.0, loss_cache)
        grads = REFERENCE_BACKWARD[self.task.kind](dout, cache)
        grads, _ = clip_grad_norm(grads, self.task.recipe.max_grad_norm)
        self.optimizer.step(grads)
        self.schedule.step()
        return float(loss)

    def logits(self, batch: Batch) -> np.ndarray:
        return self.forward(batch)[0]

    def decode_step(self, src: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        cache = encoder_decoder_cache(src, self.params, self.config)
        return lambda tgt: encoder_decoder_step(tgt, self.params, self.config, cache)

    def flat_params(self) -> dict[str, np.ndarray]:
        return {name: p.copy() for name, p in self.params.items()}


class TorchModel:
    """A scratch or native model: autograd, ``torch.optim.Adam`` with ``warmup_lambda_lr``."""

    def __init__(self, task: Task, params: dict[str, np.ndarray], impl: str, device: str = "cpu",
                 dtype: torch.dtype = torch.float64) -> None:
        self.task, self.config, self.impl = task, task.config, impl
        self.device = torch.device(device)
        self.module = TORCH_MODELS[impl][task.kind](task.config).to(dtype)
        (load_scratch if impl == "scratch" else load_native)(self.module, params)
        self.module.to(self.device)
        self.losses = scratch_losses if impl == "scratch" else native_losses
        r = task.recipe
        self.optimizer = torch.optim.Adam(self.module.parameters(), betas=r.betas, eps=r.eps)
        self.schedule = warmup_lambda_lr(self.optimizer, self.config.d_model, r.warmup_steps, r.lr_factor)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.task.kind == "encoder_decoder":
            Lt = batch["tgt"].shape[1]
            causal = torch.ones(Lt, Lt, dtype=torch.bool, device=self.device).tril()  # (Lt, Lt)
            return self.module(self._tensor(batch["src"]), self._tensor(batch["tgt"]), tgt_mask=causal)
        return self.module(self._tensor(batch["tokens"]))

    def train_step(self, batch: Batch) -> float:
        self.module.train()  # dropout as configured; train mode also keeps native off its eval fast path
        self.optimizer.zero_grad()
        out, targets = self.forward(batch), self._tensor(batch["targets"])
        if self.task.regression:
            loss = self.losses.mse(out, targets.to(out.dtype))
        else:
            loss = self.losses.cross_entropy(out, targets, ignore_index=IGNORE_INDEX,
                                             label_smoothing=self.task.recipe.label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.task.recipe.max_grad_norm)
        self.optimizer.step()
        self.schedule.step()
        return float(loss.detach())

    def logits(self, batch: Batch) -> np.ndarray:
        self.module.eval()
        with torch.no_grad():
            return self.forward(batch).cpu().double().numpy()

    def decode_step(self, src: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return TorchKVDecoder(self.module, self.impl, src=self._tensor(src)).step

    def flat_params(self) -> dict[str, np.ndarray]:
        params = scratch_params(self.module) if self.impl == "scratch" else native_params(self.module)
        return {name: array.copy() for name, array in to_numpy(params).items()}  # a snapshot, not live weights


def make_model(task: Task, impl: str, seed: int, device: str = "cpu",
               params: dict[str, np.ndarray] | None = None) -> ReferenceModel | TorchModel:
    """The task's model on ``impl`` with ``params``, by default ``init_params`` drawn with ``seed`` (the same
    start for all three implementations)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl: expected one of {IMPLEMENTATIONS}, got {impl!r}")
    if impl == "reference" and device != "cpu":
        raise ValueError(f"device: the NumPy reference runs on the CPU only, got {device!r}")
    check_device(device)
    if params is None:
        params = ref.init_params(PARAM_SHAPES[task.kind](task.config), np.random.default_rng(seed))
    return ReferenceModel(task, params) if impl == "reference" else TorchModel(task, params, impl, device)


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


def copy_exact_match(model: ReferenceModel | TorchModel) -> float:
    """Share of the copy task's four distinct pairs whose greedy decoding (KV cache) equals the target exactly."""
    data = copy.all_pairs()
    next_logits = cached_next_logits(model.decode_step(data.src))
    out = generate(next_logits, data.tgt[:, :1], max_tokens=data.tgt.shape[1] - 1)  # from SOS
    return float(np.mean(np.all(out == data.tgt, axis=1)))


def charlm_generate(model: ReferenceModel | TorchModel, vocab: charlm.CharVocab, window: int,
                    prompts: list[str], temperature: float = 0.0, rng: np.random.Generator | None = None,
                    max_tokens: int = 100) -> list[str]:
    """Continue each prompt until EOS or ``max_tokens``, each step on its left-padded last ``window`` ids."""
    prompt = charlm.left_pad([vocab.encode(p) for p in prompts])  # (B, P)

    def next_logits(tokens: np.ndarray) -> np.ndarray:
        return model.logits({"tokens": charlm.context_window(tokens, window)})[:, -1]  # (B, V)

    out = generate(next_logits, prompt, max_tokens, temperature, rng, charlm.EOS)  # (B, P + n)
    return [vocab.decode(row) for row in out]


def charlm_reproduction(model: ReferenceModel | TorchModel, task: Task) -> float:
    """Share of the corpus sentences regenerated exactly (greedy) from their first word."""
    vocab = charlm.CharVocab.from_dict(task.metadata["vocab"])
    sentences = charlm.animal_sentences()
    generated = charlm_generate(model, vocab, task.metadata["window"], [s.split(" ")[0] for s in sentences])
    return float(np.mean([g == s for g, s in zip(generated, sentences, strict=True)]))


def classify_accuracy(model: ReferenceModel | TorchModel, seed: int, n: int = 500) -> float:
    data = classify.classify_data(n, seed=seed + 1_000_000_007)
    return classify.accuracy(np.argmax(model.logits({"tokens": data.tokens}), axis=-1), data.labels)


def regress_r_squared(model: ReferenceModel | TorchModel, seed: int, n: int = 500) -> float:
    """R^2 of the one-output head on held-out sequences (the fraction of positions holding marker 1)."""
    data = classify.classify_data(n, seed=seed + 1_000_000_007)
    return classify.r_squared(model.logits({"tokens": data.tokens})[:, 0], data.values)


TARGETS = {"copy": copy.TARGET_EXACT_MATCH, "charlm": charlm.TARGET_REPRODUCED, "classify": classify.TARGET_ACCURACY,
           "regress": classify.TARGET_R2}  # the documented goal of each task's metric (docs/workflows.md)


def verdict(task_name: str, metric_name: str, metric: float) -> str:
    """'accuracy 0.984 >= 0.90: met' (or '< 0.90: not met') against the task's documented target."""
    target = TARGETS[task_name]
    met = metric >= target
    relation, outcome = (">=", "met") if met else ("<", "NOT met")
    return f"{metric_name.replace('_', ' ')} {metric:.3f} {relation} {target:.2f}: {outcome}"


def task_metric(task: Task, model: ReferenceModel | TorchModel, seed: int) -> tuple[str, float]:
    if task.name == "copy":
        return "exact_match", copy_exact_match(model)
    if task.name == "charlm":
        return "sentences_reproduced", charlm_reproduction(model, task)
    if task.name == "regress":
        return "r_squared", regress_r_squared(model, seed)
    return "accuracy", classify_accuracy(model, seed)


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    task: str
    impl: str
    config: TransformerConfig
    losses: list[float]
    step_seconds: list[float]
    metric_name: str
    metric: float
    model: ReferenceModel | TorchModel

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "impl": self.impl, "config": self.config.to_dict(), "losses": self.losses,
                "step_seconds": self.step_seconds, "metric": {self.metric_name: self.metric}}


def train(task_name: str, impl: str, seed: int = 0, steps: int | None = None, device: str = "cpu",
          on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``task_name`` on ``impl`` and score it; ``on_step(step, loss)`` after each step (progress)."""
    task = make_task(task_name, seed, steps)
    model = make_model(task, impl, seed, device)
    losses, seconds = [], []
    for step in range(task.recipe.steps):
        started = time.perf_counter()
        losses.append(model.train_step(task.batch(step)))
        seconds.append(time.perf_counter() - started)
        if on_step is not None:
            on_step(step, losses[-1])
    name, value = task_metric(task, model, seed)
    return TrainResult(task_name, impl, task.config, losses, seconds, name, value, model)


# ---------------------------------------------------------------------------------------------------------
# The command line: ``triad train`` and ``triad generate``
# ---------------------------------------------------------------------------------------------------------


def save_loss_plot(result: TrainResult, path: Path) -> None:
    """The loss curve as a PNG (log scale: the interesting part is the last decades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(result.losses) + 1), result.losses)
    ylabel = "mean squared error" if result.task == "regress" else "cross-entropy"
    ax.set(xlabel="step", ylabel=ylabel, yscale="log",
           title=f"triad train {result.task} --impl {result.impl}: {result.metric_name} {result.metric:.3f}")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def default_save_path(task_name: str, impl: str, seed: int) -> Path | None:
    """Where ``triad train`` saves a model ``triad generate`` can use when ``--save`` is not given (copy and
    charlm: ``./triad-TASK-IMPL-seedN.safetensors``); None for the tasks that do not generate."""
    return Path(f"triad-{task_name}-{impl}-seed{seed}.safetensors") if task_name in ("copy", "charlm") else None


def _progress_lines(console: Any, task_name: str, impl: str, total: int) -> Callable[[int, float], None]:
    """Progress for a log or a pipe (no live bar there): one line at each tenth of the run."""
    started, every = time.perf_counter(), max(1, total // 10)

    def report(step: int, loss: float) -> None:
        if (step + 1) % every == 0 or step + 1 == total:
            console.print(f"{task_name} on {impl}: step {step + 1}/{total}, loss {loss:.4f}, "
                          f"{time.perf_counter() - started:.0f} s")

    return report


def run_train(task_name: str, impl: str, device: str, steps: int | None, seed: int, json_path: Path | None,
              plot_path: Path | None, save_path: Path | None, console: Any = None) -> tuple[TrainResult, Path | None]:
    """``triad train``: train with progress (a bar on a terminal, a line per tenth elsewhere), then write the
    JSON, PNG and checkpoint asked for; returns the result and where the checkpoint went (None: not saved)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = console or Console()
    check_output_paths({"--save": save_path, "--json": json_path, "--plot": plot_path})  # before the training
    task = make_task(task_name, seed, steps)
    check_device(device)
    total = task.recipe.steps
    if console.is_terminal:
        columns = (TextColumn(f"{task_name} on {impl}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("train", total=total, loss=float("nan"))
            result = train(task_name, impl, seed, steps, device,
                           on_step=lambda step, loss: progress.update(bar, advance=1, loss=loss))
    else:
        result = train(task_name, impl, seed, steps, device, on_step=_progress_lines(console, task_name, impl, total))
    if save_path is not None:
        save_path = write_output(save_path, lambda path: save_checkpoint(
            path, result.model.flat_params(), result.config, task.kind, task.metadata), "--save")
    if json_path is not None:
        write_output(json_path, lambda path: path.write_text(json.dumps(result.to_json(), indent=2)), "--json")
    if plot_path is not None:
        write_output(plot_path, lambda path: save_loss_plot(result, path), "--plot")
    return result, save_path


def run_generate(checkpoint: Path, prompt: str, temperature: float, max_tokens: int | None, impl: str,
                 seed: int, device: str = "cpu") -> str:
    """``triad generate``: continue ``prompt`` with a trained ``copy`` or ``charlm`` checkpoint."""
    header = load_checkpoint(checkpoint)
    task_name = header.task.get("name")
    if task_name not in ("copy", "charlm"):
        raise ValueError(f"checkpoint: expected a 'copy' or 'charlm' checkpoint to generate from, got task "
                         f"{task_name!r} (a classifier predicts, it does not generate)")
    task = make_task(task_name, seed, override=header.config)
    ckpt = load_checkpoint(checkpoint, kind=task.kind, expected_shapes=PARAM_SHAPES[task.kind](header.config))
    model = make_model(task, impl, seed, device, params=ckpt.params)
    rng = np.random.default_rng(seed) if temperature > 0 else None
    if task_name == "charlm":
        vocab = charlm.CharVocab.from_dict(ckpt.task["vocab"])
        n = 100 if max_tokens is None else max_tokens
        return charlm_generate(model, vocab, ckpt.task["window"], [prompt], temperature, rng, n)[0]
    if not prompt or set(prompt) - {"0", "1"}:
        raise ValueError(f"prompt: expected 0s and 1s for the copy task, e.g. 10101010, got {prompt!r}")
    trained = ["".join(map(str, row[1:-1])) for row in copy.all_pairs(ckpt.task.get("length", 8)).src]
    if prompt not in trained:
        raise ValueError(f"prompt: this copy model was trained on exactly these bodies: {', '.join(trained)} "
                         f"(length {len(trained[0])}); it would answer {prompt!r} wrongly")
    src = np.array([[copy.SOS, *map(int, prompt), copy.EOS]])  # (1, L + 2)
    n = len(prompt) + 1 if max_tokens is None else max_tokens
    out = generate(cached_next_logits(model.decode_step(src)), np.array([[copy.SOS]]), n, temperature, rng,
                   copy.EOS)  # (1, 1 + n')
    return "".join(str(t) for t in out[0, 1:] if t in (copy.ZERO, copy.ONE))


def train_command(task_name: str, impl: str, device: str, steps: int | None, seed: int,
                  json_path: Path | None, plot_path: Path | None, save_path: Path | None) -> int:
    """What ``triad train`` runs: 0 when trained (the metric and its verdict are printed), 2 on a usage error."""
    from rich.console import Console

    console = Console()
    if save_path is None and task_name in TASK_KINDS:
        save_path = default_save_path(task_name, impl, seed)
        if save_path is not None and output_path_problem(save_path):  # the default must not stop the run
            console.print(f"not saving to {save_path}: {output_path_problem(save_path)}; give --save PATH")
            save_path = None
    try:
        result, saved = run_train(task_name, impl, device, steps, seed, json_path, plot_path, save_path, console)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    console.print(f"{task_name} on {impl}: {len(result.losses)} steps, final loss {result.losses[-1]:.4g}, "
                  f"{np.mean(result.step_seconds):.4f} s/step; "
                  f"{verdict(task_name, result.metric_name, result.metric)} (the documented target)")
    if saved is not None:
        example = "elephants" if task_name == "charlm" else "10101010"
        console.print(f"checkpoint written to {saved}; continue a prompt with:\n"
                      f"  triad generate {saved} --prompt {example} --impl {impl}", soft_wrap=True)
    return 0


def generate_command(checkpoint: Path, prompt: str, temperature: float, max_tokens: int | None, impl: str,
                     seed: int, device: str) -> int:
    """What ``triad generate`` runs: prints the continuation; 2 on a usage error or a bad checkpoint."""
    from rich.console import Console

    try:
        print(run_generate(checkpoint, prompt, temperature, max_tokens, impl, seed, device))
    except (ValueError, FileNotFoundError) as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        return 2
    return 0
