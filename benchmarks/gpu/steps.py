"""The Python steps of ``benchmarks/gpu/run.sh``: the machine, its ceilings, and the collected results.

    python3 benchmarks/gpu/steps.py env   LOGS/env.json              # device, driver, versions, kernels
    python3 benchmarks/gpu/steps.py peaks LOGS/peaks.json [--dry-run]  # matmul peaks, copy bandwidth
    python3 benchmarks/gpu/steps.py collect OUTDIR                   # logs.txt, machine.json, verify.json,
                                                                     # summary.txt (the stage table)

``peaks`` measures the ceilings the GPU run's figures are read against: the bf16 and fp16 matmul peaks,
the float32 peak with TF32 off and with TF32 on (``triad.bench.measure``: PyTorch's mem-efficient kernel
runs float32 as 3xTF32 whatever ``allow_tf32`` says, so its float32 rows can pass the TF32-off peak),
and the device-to-device copy bandwidth, each the fastest of 25 timed rounds after 3 warm-up on random
data. ``--dry-run`` measures the same on tiny sizes, on the GPU if there is one and on the CPU if not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

# Kernels the GPU run verifies (in bf16 and fp16) when the registry has them.
# SDPA's interface by name; "NAME/INTERFACE" is the built-in through FlashAttention's interface (--interface).
VERIFY_KERNELS = ("triton", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "flex", "native/flash", "flex/flash")
STAGE_FIELDS = ("stage", "status", "seconds", "detail")


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except Exception as exc:  # absent, or broken at import: say which
        return f"absent ({type(exc).__name__}: {str(exc)[:120]})"


def _nvidia_smi() -> dict[str, str] | None:
    query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit"
    try:
        line = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    return dict(zip(query.split(","), (x.strip() for x in line.split(",")), strict=False))


def _kernels() -> dict[str, Any]:
    """The registry's names, and for each kernel the GPU run wants: present, or why not."""
    from torch_impl.flash_kernels import FLASH_BUILTINS
    from torch_impl.kernels import BUILTIN_KERNELS, KernelNotFoundError, resolve_kernel

    wanted = {}
    for name in VERIFY_KERNELS:
        kernel, _, interface = name.partition("/")
        if interface:
            present = kernel in FLASH_BUILTINS.get(interface, {})
            wanted[name] = "present" if present else f"absent: no {kernel!r} built-in for the {interface} interface"
            continue
        try:
            resolve_kernel(kernel)
            wanted[name] = "present"
        except KernelNotFoundError as exc:
            wanted[name] = f"absent: {str(exc).splitlines()[0][:300]}"
    return {"registry": list(BUILTIN_KERNELS), "wanted": wanted}


def env() -> dict[str, Any]:
    import torch

    cuda = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        cuda = {"device": torch.cuda.get_device_name(0), "capability": ".".join(map(str, (props.major, props.minor))),
                "multiprocessors": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "nvidia_smi": _nvidia_smi()}
    plugins = {name: _version(module) for name, module in (("pytest-xdist", "xdist"),
                                                           ("pytest-timeout", "pytest_timeout"))}
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "triton": _version("triton"), "numpy": _version("numpy"),
            "hypothesis": _version("hypothesis"), "pytest": _version("pytest"), "plugins": plugins,
            "cuda": cuda, "kernels": _kernels()}


def print_env(info: dict[str, Any]) -> None:
    cuda = info["cuda"]
    smi = (cuda or {}).get("nvidia_smi") or {}
    device = (f"{cuda['device']} (sm {cuda['capability']}, {cuda['multiprocessors']} SMs, {cuda['memory_gib']} GiB), "
              f"driver {smi.get('driver_version', '?')}, CUDA {cuda['cuda']}, cuDNN {cuda['cudnn']}"
              if cuda else "no CUDA device")
    print(f"device: {device}")
    print(f"torch {info['torch']}, triton {info['triton']}, numpy {info['numpy']}, python {info['python']}, "
          f"{info['cpu_count']} CPUs")
    print(f"pytest {info['pytest']}, " + ", ".join(f"{k} {v}" for k, v in info["plugins"].items()))
    for name, state in info["kernels"]["wanted"].items():
        print(f"kernel {name}: {state}")


def peaks(dry_run: bool) -> dict[str, Any]:
    import torch

    from triad.bench.measure import copy_bandwidth_gbs, matmul_peak_tflops

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = (64, 128) if dry_run else ((4096, 8192) if device == "cuda" else (512, 1024))
    copy_bytes = 2**23 if dry_run else (2**31 if device == "cuda" else 2**28)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    matmul = []
    for dtype, tf32 in (("bfloat16", False), ("float16", False), ("float32", False), ("float32", True)):
        tflops, n = matmul_peak_tflops(device, dtype, sizes, rounds=25, warmup=3, tf32=tf32)
        matmul.append({"dtype": dtype, "tf32": tf32, "n": n, "tflops": tflops})
        print(f"matmul peak {device} {dtype}{' with TF32' if tf32 else ''}: {tflops:.4g} TFLOP/s (n={n})")
    bandwidth = copy_bandwidth_gbs(device, copy_bytes, rounds=25, warmup=3)
    print(f"copy bandwidth {device}: {bandwidth:.4g} GB/s (read + written, {copy_bytes / 2**20:.0f} MiB buffer)")
    return {"device": device, "matmul": matmul, "copy": {"bytes": copy_bytes, "gb_per_s": bandwidth},
            "method": "fastest of 25 rounds after 3 warm-up; random normal inputs; CUDA events on CUDA"}


# collect -----------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stages(logs: Path) -> list[dict[str, str]]:
    path = logs / "stages.tsv"
    lines = path.read_text().splitlines() if path.exists() else []
    return [dict(zip(STAGE_FIELDS, line.split("\t"), strict=False)) for line in lines if line.strip()]


def _verify_runs(logs: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(logs.glob("verify-*.json")):
        report = _read_json(path)
        repro = path.with_name(path.stem + "-repro.py")
        runs.append({"stage": path.stem, "report": report,
                     "repro_script": repro.read_text() if repro.exists() else None})
    return runs


def _env_note(info: dict[str, Any]) -> str:
    cuda = info["cuda"]
    driver = ((cuda or {}).get("nvidia_smi") or {}).get("driver_version", "?")
    device = f"{cuda['device']}, driver {driver}, CUDA {cuda['cuda']}, cuDNN {cuda['cudnn']}" if cuda else "no CUDA"
    return f"{device}; torch {info['torch']}, triton {info['triton'].split(' (')[0]}, {info['cpu_count']} CPUs"


def _peaks_note(result: dict[str, Any]) -> str:
    matmul = ", ".join(f"{m['dtype'].replace('bfloat16', 'bf16').replace('float16', 'fp16').replace('float32', 'fp32')}"
                       f"{'+tf32' if m['tf32'] else ''} {m['tflops']:.4g}" for m in result["matmul"])
    return f"{result['device']} matmul TFLOP/s: {matmul}; copy {result['copy']['gb_per_s']:.4g} GB/s"


def _note(stage: str, logs: Path, out: Path) -> str:
    """A stage's one-line result, read from what it wrote."""
    for name, file, describe in (("env", "env.json", _env_note), ("peaks", "peaks.json", _peaks_note)):
        if stage == name and _read_json(logs / file) is not None:
            return describe(_read_json(logs / file))
    if stage.startswith("verify-"):
        report = _read_json(logs / f"{stage}.json")
        if report is None:
            return "no report written"
        return f"{report.get('verdict')} ({report.get('examples')} cases, {report.get('seconds', 0):.0f} s)" + (
            f": {report['message'][:120]}" if report.get("message") else "")
    if stage == "bench":
        report = _read_json(out / "bench.json")
        if report is None:
            return "no bench.json written"
        counts: dict[str, int] = {}
        for row in report["rows"]:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + " rows"
    log = logs / f"{stage}.log"
    lines = [line for line in (log.read_text(errors="replace").splitlines() if log.exists() else []) if line.strip()]
    return lines[-1][:160] if lines else "(empty log)"


def collect(out: Path) -> str:
    """Merge the stages' files in ``out/logs`` into a handful of files in ``out``; return the summary table."""
    logs = out / "logs"
    stages = _stages(logs)
    sections = []
    for path in sorted(logs.glob("*.log")):
        sections.append(f"===== {path.stem} =====\n{path.read_text(errors='replace')}")
    (out / "logs.txt").write_text("\n".join(sections))
    (out / "machine.json").write_text(json.dumps({"env": _read_json(logs / "env.json"),
                                                  "peaks": _read_json(logs / "peaks.json")}, indent=1) + "\n")
    (out / "verify.json").write_text(json.dumps({"runs": _verify_runs(logs)}, indent=1) + "\n")
    rows = [(s["stage"], s["status"], s["seconds"], s.get("detail", "") if s["status"] == "skipped"
             else f"{s.get('detail', '')}; {_note(s['stage'], logs, out)}") for s in stages]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(("stage", "status", "seconds"))]
    header = f"{'stage':<{widths[0]}}  {'status':<{widths[1]}}  {'seconds':>{widths[2]}}  result"
    table = "\n".join([header, "-" * len(header)] + [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}"
                                                      for a, b, c, d in rows])
    (out / "summary.txt").write_text(table + "\n")
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("env", "peaks", "collect"))
    parser.add_argument("path", type=Path, help="the JSON to write (env, peaks) or the output folder (collect)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes (peaks)")
    args = parser.parse_args(argv)
    if args.step == "collect":
        print(collect(args.path))
        return 0
    if args.step == "env":
        result = env()
        print_env(result)
    else:
        result = peaks(args.dry_run)
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
