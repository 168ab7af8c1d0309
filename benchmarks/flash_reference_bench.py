"""The float64 reference's dense and tiled (flash) attention at long contexts, beside torch on the same CPU.

One head, d = 64, fwd+bwd, causal and not, L = 1k ... 128k::

    PYTHONPATH=. python benchmarks/flash_reference_bench.py            # writes benchmarks/results/flash-reference-cpu.*
    PYTHONPATH=. python benchmarks/flash_reference_bench.py --lengths 1024 4096 --out /tmp/bench

Each point runs in a fresh subprocess (so one point's memory cannot inflate the next one's peak):

- ``reference-dense``: ``flash_attention_forward/backward(block_size=None)``, the (L, L) matrices at once;
- ``reference-tiled``: the same with ``block_size`` (the tiled algorithm, O(L d + block_size^2) memory);
- ``torch-naive``: plain float64 ``softmax(s q k^T + mask) v`` with autograd (what a tutorial writes);
- ``torch-sdpa``: ``F.scaled_dot_product_attention(..., is_causal)`` in float64 (top-left causal, which equals
  bottom-right at Lq = Lk).

Dense and naive run only where their (L, L) matrices fit the budget (``--dense-budget-gib``, ~4 L^2 8 bytes).
**FLOPs** follow FlashAttention's (and ``triad bench``'s) convention: fwd ``4 L^2 d``, fwd+bwd 3.5 x fwd
(the backward's five matmuls, one of them the recomputation of ``q k^T``), causal counted as half.
The dense and naive kernels compute the whole (L, L) matrix even when causal, and store P instead of
recomputing it, so their rate is in the same units of useful work, not in what they executed.
The **fp64 matmul rate** (2048^3, best of three, before and after the points) is measured in the same run.
**Peak memory**: ``tracemalloc`` (NumPy reports its buffers to it) over fwd+bwd, the inputs excluded and
the outputs, the LSE and the gradients included; for torch (invisible to tracemalloc) the growth of the
peak resident set size over the process's size before the call. The load average is recorded, since
this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

D_HEAD = 64
LENGTHS = (1024, 4096, 16384, 32768, 131072)
IMPLS = ("reference-dense", "reference-tiled", "torch-naive", "torch-sdpa")
RESULTS = Path(__file__).resolve().parent / "results"


def flops(L: int, causal: bool) -> float:
    """fwd+bwd, FlashAttention's convention: 3.5 x 4 L^2 d, halved for causal."""
    return 3.5 * 4.0 * L * L * D_HEAD / (2.0 if causal else 1.0)


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    a, b = np.random.default_rng(0).standard_normal((2, n, n))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2.0 * n**3 / best / 1e9


def matmul_rate(threads: int) -> float:
    """The fp64 matmul rate with ``threads`` BLAS threads, measured in a fresh interpreter like the points."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--matmul"], capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))


def run_reference(L: int, causal: bool, block_size: int | None, threads: int) -> dict:
    from reference import flash_attention
    from reference.flash_attention import flash_attention_backward, flash_attention_forward

    flash_attention.TILE_THREADS = threads

    q, k, v, dout = np.random.default_rng(0).standard_normal((4, 1, L, 1, D_HEAD))  # (1, L, 1, d) each
    small = q[:, :1024]  # warm-up: BLAS threads, the thread pool, the allocator
    flash_attention_backward(small, flash_attention_forward(small, small, small, causal=causal,
                                                            block_size=block_size)[2])
    tracemalloc.start()
    started = time.perf_counter()
    out, _, cache = flash_attention_forward(q, k, v, causal=causal, block_size=block_size)
    forward_s = time.perf_counter() - started
    grads = flash_attention_backward(dout, cache)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.all(np.isfinite(out)) and all(np.all(np.isfinite(g)) for g in grads)
    return {"seconds": seconds, "forward_seconds": forward_s, "peak_bytes": peak, "memory_measure": "tracemalloc"}


def torch_attention(q, k, v, causal: bool, impl: str):
    """fwd of the torch baselines: SDPA, or the plain softmax(s q k^T + mask) v."""
    import torch
    import torch.nn.functional as F

    if impl == "torch-sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    L = q.shape[-2]
    scores = (q * D_HEAD**-0.5) @ k.transpose(-1, -2)  # (1, 1, L, L)
    if causal:
        scores = scores.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def run_torch(L: int, causal: bool, impl: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    q, k, v, dout = (torch.randn(1, 1, L, D_HEAD, dtype=torch.float64, generator=generator) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_(True)
    small = [x[:, :, :2048].detach().requires_grad_(True) for x in (q, k, v)]
    torch_attention(*small, causal, impl).backward(dout[:, :, :2048])  # warm-up: the first backward costs ~1 s
    before = _rss_bytes()
    started = time.perf_counter()
    out = torch_attention(q, k, v, causal, impl)
    forward_s = time.perf_counter() - started
    out.backward(dout)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"seconds": seconds, "forward_seconds": forward_s, "peak_bytes": max(peak, 0),
            "memory_measure": "peak RSS growth", "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def run_point(impl: str, L: int, causal: bool, block_size: int, threads: int) -> dict:
    if impl.startswith("reference"):
        return run_reference(L, causal, None if impl == "reference-dense" else block_size, threads)
    return run_torch(L, causal, impl, threads)


def measure(impl: str, L: int, causal: bool, block_size: int, threads: int, timeout_s: float) -> dict:
    """One point in a fresh interpreter; returns its row (status 'ok', 'timeout' or 'error')."""
    row = {"impl": impl, "L": L, "d": D_HEAD, "causal": causal, "block_size": block_size if impl == "reference-tiled"
           else None, "flops": flops(L, causal), "loadavg_before": os.getloadavg()}
    command = [sys.executable, __file__, "--point", impl, str(L), str(int(causal)), str(block_size), str(threads)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}  # BLAS, torch
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {**row, "status": "timeout", "message": f"over {timeout_s:.0f} s"}
    if done.returncode != 0:
        return {**row, "status": "error", "message": done.stderr.strip().splitlines()[-1:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**row, **result, "status": "ok", "gflops": row["flops"] / result["seconds"] / 1e9,
            "loadavg_after": os.getloadavg()}


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        return next((line.split(":")[1].strip() for line in info if "model name" in line), "")


def fits_dense(L: int, budget_gib: float) -> bool:
    return budget_gib * 2**30 >= 4 * L * L * 8  # scores, probs, dP, dS: (L, L) float64 each


def plot(rows: list[dict], matmul: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.5))
    for color, impl in enumerate(IMPLS):
        for causal, style in ((False, "-"), (True, "--")):
            points = [r for r in rows if r["impl"] == impl and r["causal"] == causal and r["status"] == "ok"]
            if not points:
                continue
            label = f"{impl}{' causal' if causal else ''}"
            Ls = [r["L"] for r in points]
            ax_rate.plot(Ls, [r["gflops"] for r in points], style, color=f"C{color}", marker="o", label=label)
            ax_mem.plot(Ls, [r["peak_bytes"] / 2**20 for r in points], style, color=f"C{color}", marker="o",
                        label=label)
    ax_rate.axhline(matmul, color="grey", linestyle=":", label=f"fp64 matmul {matmul:.0f} GFLOP/s")
    ax_rate.axhline(0.6 * matmul, color="grey", linestyle="-.", linewidth=0.8, label="60% of matmul")
    ax_mem.axhline(128, color="red", linestyle=":", linewidth=0.8, label="128 MiB")
    ax_mem.axhline(512, color="darkred", linestyle=":", linewidth=0.8, label="512 MiB")
    for ax, ylabel in ((ax_rate, "GFLOP/s (fwd+bwd, FA convention)"), (ax_mem, "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L (one head, d = 64, float64)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_mem.set_yscale("log")
    ax_rate.legend(fontsize=7)
    ax_mem.legend(fontsize=7)
    fig.suptitle("Reference dense vs tiled attention, fwd+bwd, float64, CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--block-size", type=int, default=None, help="the tiled algorithm's tile (default: its own)")
    parser.add_argument("--dense-budget-gib", type=float, default=4.0)
    parser.add_argument("--torch-max-len", type=int, default=32768, help="torch points only up to this L")
    parser.add_argument("--skip-noncausal-above", type=int, default=32768, help="the longest runs: causal only")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "flash-reference-cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS, torch and exp threads")
    parser.add_argument("--point", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.matmul:
        print(matmul_gflops())
        return
    if args.point:
        impl, L, causal, block_size, threads = args.point
        print(json.dumps(run_point(impl, int(L), causal == "1", int(block_size), int(threads))))
        return
    from reference.flash_attention import DEFAULT_BLOCK_SIZE

    block_size = args.block_size or DEFAULT_BLOCK_SIZE
    matmul_before = matmul_rate(args.threads)
    rows = []
    for L in args.lengths:
        for causal in (False, True):
            if not causal and args.skip_noncausal_above < L:
                continue
            for impl in IMPLS:
                if impl in ("reference-dense", "torch-naive") and not fits_dense(L, args.dense_budget_gib):
                    continue
                if impl.startswith("torch") and args.torch_max_len < L:
                    continue
                row = measure(impl, L, causal, block_size, args.threads, args.timeout_s)
                rows.append(row)
                print(json.dumps({k: row.get(k) for k in ("impl", "L", "causal", "status", "seconds", "gflops",
                                                        "peak_bytes", "loadavg_before")}), flush=True)
    matmul = max(matmul_before, matmul_rate(args.threads))
    for row in rows:
        if row["status"] == "ok":
            row["matmul_share"] = row["gflops"] / matmul
    header = {"created_utc": datetime.now(UTC).isoformat(timespec="seconds"), "d": D_HEAD, "heads": 1,
              "dtype": "float64", "mode": "fwd+bwd", "block_size": block_size,
              "flop_convention": "fwd 4 L^2 d, fwd+bwd 3.5x fwd, causal counted as half (FlashAttention's)",
              "memory_convention": "reference: tracemalloc peak over fwd+bwd, inputs excluded; torch: peak RSS growth",
              "dense_budget_gib": args.dense_budget_gib, "threads": args.threads, "matmul_gflops_fp64": matmul,
              "matmul_gflops_fp64_before": matmul_before, "numpy": np.__version__, "python": platform.python_version(),
              "platform": platform.platform(), "cpu_count": os.cpu_count(),
              "cpu_model": _cpu_model(),
              "loadavg_end": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    plot(rows, matmul, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.json')} and .png; fp64 matmul {matmul:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
