"""What ``triad bench`` measures: kernels x devices x dtypes x shapes x causal x modes, and the presets.

Shapes follow FlashAttention's benchmark: per device a fixed token count ``B * L`` and a fixed model
width ``H * d_head``, so every sequence length does the same number of token-head products and only
the quadratic part grows. Lq = Lk = L (self-attention).

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
"""

from __future__ import annotations

from dataclasses import dataclass

from torch_impl.kernels import BUILTIN_KERNELS
from triad.bench.flops import MODES

CPU_DTYPES = ("float32", "float64")  # float32 first: the dtype compared with the GPU, kept if time runs out
CUDA_DTYPES = ("bfloat16", "float16", "float32")  # in this order: if the budget runs out, float32 loses


@dataclass(frozen=True)
class Shape:
    """One attention problem: q, k, v are (B, H, L, d_head)."""

    B: int
    H: int
    L: int
    d_head: int

    def label(self) -> str:
        return f"{self.B}x{self.H}x{self.L}x{self.d_head}"


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

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")
        for L in self.lengths:
            if L < 1 or self.tokens % L:
                raise ValueError(f"lengths: expected divisors of tokens={self.tokens}, got {L}")
        for d in self.head_dims:
            if d < 1 or self.width % d:
                raise ValueError(f"head_dims: expected divisors of width={self.width}, got {d}")

    def shapes(self) -> list[Shape]:
        return [Shape(self.tokens // L, self.width // d, L, d) for d in self.head_dims for L in self.lengths]


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


def preset(name: str, kernels: tuple[str, ...] | None = None, cuda: bool = False) -> Grid:
    """The ``quick`` or ``full`` grid; ``cuda`` adds the GPU grid to ``full``."""
    kernels = tuple(BUILTIN_KERNELS) if kernels is None else kernels
    if name == "quick":
        cpu = DeviceGrid("cpu", CPU_DTYPES, (64,), (64, 128, 256), tokens=256, width=64, matmul_sizes=(256, 512),
                         budget_s=600.0)
        return Grid("quick", kernels, (cpu,))
    if name == "full":
        devices = [DeviceGrid("cpu", CPU_DTYPES, (64, 128), (128, 256, 512, 1024), tokens=1024, width=128,
                              matmul_sizes=(256, 512), budget_s=120.0)]
        if cuda:
            lengths = tuple(2**i for i in range(7, 15))  # 128 .. 16,384
            devices.append(DeviceGrid("cuda", CUDA_DTYPES, (64, 128), lengths, tokens=16384, width=2048,
                                      matmul_sizes=(4096, 8192), budget_s=330.0))
        return Grid("full", kernels, tuple(devices))
    raise ValueError(f"preset: expected 'quick' or 'full', got {name!r}")
