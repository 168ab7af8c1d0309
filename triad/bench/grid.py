"""What ``triad bench`` measures: kernels x devices x dtypes x shapes x causal x modes, and the presets.

Shapes follow FlashAttention's benchmark: per device a fixed token count ``B * L`` and a fixed model
width ``H * d_head``, so every sequence length does the same number of token-head products and only
the quadratic part grows. Lq = Lk = L (self-attention). A shape's ``group`` is the number of query heads
that share one K/V head (GQA: ``Hkv = H / group``; 1 is plain multi-head attention).

Presets:

- ``quick``: CPU only, float64 and float32, d_head 64, L 64..256 at 256 tokens, width 64 (one head): small
  enough that every case runs (both dtypes, every kernel and mode), a quarter of the work of the earlier
  128..512 grid; its 600 s budget only bounds a stalled machine (on a heavily shared 2-core machine the
  40 s budget of that earlier grid skipped every float64 case).
- ``full``: CPU float64/float32, d_head 64 and 128, L 128..1,024 at 1,024 tokens, width 128 (kept small:
  the whole CPU grid must fit its budget); CUDA (when present) bfloat16/float16/float32,
  d_head 64 and 128, L 128..16,384 at 16,384 tokens, width 2,048 (FlashAttention's grid), plus the CPU
  shapes in float32 so that the GPU-over-CPU speed-up exists. Each device has a time budget (CPU 120 s,
  CUDA 330 s): a case that would start after it is recorded as ``skipped``, so the whole run is bounded
  (about 8 minutes on an H100 machine; see docs/benchmarks.md).
- ``gpu``: CUDA only, the grid the GPU run (``benchmarks/gpu/run.sh``) measures: bfloat16 then float16,
  d_head 128 then 64, plain and GQA 8:1, L 512..16,384 at 16,384 tokens, width 2,048; budget 230 s (in
  this order, so what a spent budget skips first is float16's d_head 64).
- ``smoke``: the ``gpu`` grid's plan at toy sizes on the CPU (float32, d_head 8, plain and GQA 2:1,
  L 16 and 32): seconds; what ``run.sh --dry-run`` and the tests run.

Every preset's budgets can be replaced by one number (``triad bench --budget``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch_impl.kernels import BUILTIN_KERNELS
from triad.bench.flops import MODES

CPU_DTYPES = ("float32", "float64")  # float32 first: the dtype compared with the GPU, kept if time runs out
CUDA_DTYPES = ("bfloat16", "float16", "float32")  # in this order: if the budget runs out, float32 loses


@dataclass(frozen=True)
class Shape:
    """One attention problem: q is (B, H, L, d_head), k and v (B, Hkv, L, d_head) with Hkv = H / group."""

    B: int
    H: int
    L: int
    d_head: int
    group: int = 1  # query heads per K/V head (GQA); 1: multi-head attention

    def __post_init__(self) -> None:
        if self.group < 1 or self.H % self.group:
            raise ValueError(f"group: expected a divisor of H={self.H}, got {self.group}")

    @property
    def Hkv(self) -> int:  # noqa: N802  (the maths name, as H and L)
        return self.H // self.group

    def label(self) -> str:
        return f"{self.B}x{self.H}x{self.L}x{self.d_head}" + (f"-gqa{self.group}" if self.group > 1 else "")


@dataclass(frozen=True)
class DeviceGrid:
    """The shapes and dtypes one device runs: L in ``lengths`` at ``tokens = B * L``, ``width = H * d_head``."""

    device: str
    dtypes: tuple[str, ...]
    head_dims: tuple[int, ...]
    lengths: tuple[int, ...]
    tokens: int
    width: int
    matmul_sizes: tuple[int, ...]  # square matmuls whose best throughput is the peak reported beside each row
    budget_s: float  # no case starts on this device after this many seconds
    groups: tuple[int, ...] = (1,)  # query heads per K/V head: 1 is multi-head attention, 8 is GQA 8:1

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")
        for L in self.lengths:
            if L < 1 or self.tokens % L:
                raise ValueError(f"lengths: expected divisors of tokens={self.tokens}, got {L}")
        for d in self.head_dims:
            if d < 1 or self.width % d:
                raise ValueError(f"head_dims: expected divisors of width={self.width}, got {d}")
            for group in self.groups:
                if group < 1 or (self.width // d) % group:
                    raise ValueError(f"groups: expected divisors of the head count {self.width // d}, got {group}")

    def shapes(self) -> list[Shape]:
        return [Shape(self.tokens // L, self.width // d, L, d, group) for d in self.head_dims for group in self.groups
                for L in self.lengths]


@dataclass(frozen=True)
class Case:
    """One kernel on one device, dtype, shape and causality; every mode is timed on the same inputs."""

    kernel: str
    device: str
    dtype: str
    shape: Shape
    causal: bool


@dataclass(frozen=True)
class Grid:
    name: str
    kernels: tuple[str, ...]
    devices: tuple[DeviceGrid, ...]
    causal: tuple[bool, ...] = (False, True)
    modes: tuple[str, ...] = MODES
    rounds: int = 25
    warmup: int = 3

    def __post_init__(self) -> None:
        if self.rounds < 25:
            raise ValueError(f"rounds: expected at least 25 (median and 20/80th percentiles), got {self.rounds}")
        if self.warmup < 1:
            raise ValueError(f"warmup: expected at least 1 (lazy initialisation, autotuning), got {self.warmup}")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise ValueError(f"modes: expected a subset of {MODES}, got {unknown}")

    def cases(self) -> list[Case]:
        """Every case, CPU first (so the GPU rows can report their speed-up over it)."""
        cases: list[Case] = []
        grids = {g.device: g for g in self.devices}
        for grid in self.devices:
            shapes = [(dtype, shape) for dtype in grid.dtypes for shape in grid.shapes()]
            if grid.device == "cuda" and "cpu" in grids:  # the CPU's shapes first (small), for the speed-up
                cpu = grids["cpu"]
                shapes = [(dtype, shape) for dtype in cpu.dtypes if dtype in grid.dtypes for shape in cpu.shapes()
                          if (dtype, shape) not in shapes] + shapes
            cases += [Case(kernel, grid.device, dtype, shape, causal)
                      for dtype, shape in shapes for causal in self.causal for kernel in self.kernels]
        return cases


PRESETS = ("quick", "full", "gpu", "smoke")
GPU_LENGTHS = tuple(2**i for i in range(9, 15))  # 512 .. 16,384


def _cuda_grid(dtypes: tuple[str, ...], head_dims: tuple[int, ...], lengths: tuple[int, ...], budget_s: float,
               groups: tuple[int, ...] = (1,)) -> DeviceGrid:
    """FlashAttention's GPU shapes: 16,384 tokens, width 2,048."""
    return DeviceGrid("cuda", dtypes, head_dims, lengths, tokens=16384, width=2048, matmul_sizes=(4096, 8192),
                      budget_s=budget_s, groups=groups)


def preset(name: str, kernels: tuple[str, ...] | None = None, cuda: bool = False,
           budget_s: float | None = None) -> Grid:
    """A preset grid (``PRESETS``); ``cuda`` adds the GPU grid to ``full``; ``budget_s`` replaces every device's."""
    kernels = tuple(BUILTIN_KERNELS) if kernels is None else kernels
    if name == "quick":
        devices = [DeviceGrid("cpu", CPU_DTYPES, (64,), (64, 128, 256), tokens=256, width=64,
                              matmul_sizes=(256, 512), budget_s=600.0)]
    elif name == "full":
        devices = [DeviceGrid("cpu", CPU_DTYPES, (64, 128), (128, 256, 512, 1024), tokens=1024, width=128,
                              matmul_sizes=(256, 512), budget_s=120.0)]
        if cuda:
            devices.append(_cuda_grid(CUDA_DTYPES, (64, 128), tuple(2**i for i in range(7, 15)), 330.0))
    elif name == "gpu":
        devices = [_cuda_grid(("bfloat16", "float16"), (128, 64), GPU_LENGTHS, 230.0, groups=(1, 8))]
    elif name == "smoke":
        devices = [DeviceGrid("cpu", ("float32",), (8,), (16, 32), tokens=32, width=16, matmul_sizes=(16, 32),
                              budget_s=10.0, groups=(1, 2))]
    else:
        raise ValueError(f"preset: expected one of {PRESETS}, got {name!r}")
    if budget_s is not None:
        if not budget_s >= 0:
            raise ValueError(f"budget_s: expected seconds >= 0, got {budget_s!r}")
        devices = [replace(device, budget_s=float(budget_s)) for device in devices]
    return Grid(name, kernels, tuple(devices))
