"""Compile the Triton programs for a GPU without one: type errors, shared memory, ``ptxas`` on a CPU machine.

    python -m torch_impl.triton_attention.compile_check [--arch 90] [--dtypes bfloat16 ...] [--head-dims 64 ...]

For each dtype, head dim and program it builds an sm``arch`` cubin with the committed configuration
(``configs.json``: tiles, warps, stages) and prints the shared memory it needs; ``--all-options``
turns softcap and both window sides on. Nothing runs: this checks that the compiled path (which the
interpreter does not exercise) type-checks and fits, not that it is right or fast. It needs
``TRITON_INTERPRET`` unset (the interpreter replaces the compiler) and takes about 10–100 s per
program on one CPU core.
"""

from __future__ import annotations

import argparse
import os
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from torch_impl.triton_attention import configs, kernels

PROGRAMS = {"forward": kernels.attention_forward_kernel, "dkdv": kernels.attention_backward_dkdv_kernel,
            "dq": kernels.attention_backward_dq_kernel}
POINTERS = ("Q", "K", "V", "Out", "DOut", "DK", "DV", "DQ")
STATISTICS = ("Lse", "Delta")  # float32 whatever the inputs
SHORT_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def signature(fn: object, dtype: str, constexprs: dict) -> dict[str, str]:
    """Triton's type string for every argument of ``fn``."""
    types = {}
    for name in fn.arg_names:  # type: ignore[attr-defined]
        if name in constexprs:
            types[name] = "constexpr"
        elif name in POINTERS:
            types[name] = f"*{SHORT_NAMES[dtype]}"
        elif name in STATISTICS:
            types[name] = "*fp32"
        else:
            types[name] = "fp32" if name in ("scale", "softcap") else "i32"
    return types


def compile_program(program: str, dtype: str, d: int, arch: int, all_options: bool) -> tuple[float, int]:
    """Seconds to compile, and the shared memory (bytes) the cubin needs."""
    torch_dtype = {v: k for k, v in configs.DTYPE_NAMES.items()}[dtype]
    pad = max(16, triton.next_power_of_2(d))
    block_m, block_n, warps, stages = configs.committed_config(program, torch_dtype, pad)
    constexprs = {"HEAD_DIM_QK": d, "HEAD_DIM_V": d, "PAD_QK": pad, "PAD_V": pad, "HAS_LEFT": all_options,
                  "HAS_RIGHT": all_options, "HAS_SOFTCAP": all_options, "UPCAST_DOT": False,
                  "DOT_PRECISION": "ieee" if dtype == "float32" else "tf32", "BLOCK_M": block_m, "BLOCK_N": block_n}
    fn = PROGRAMS[program]
    source = ASTSource(fn=fn, signature=signature(fn, dtype, constexprs), constexprs=constexprs)
    start = time.perf_counter()
    binary = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": warps, "num_stages": stages})
    return time.perf_counter() - start, int(binary.metadata.shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16", "float32"],
                        choices=list(configs.DTYPE_NAMES.values()))
    parser.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--all-options", action="store_true", help="softcap and both window sides on")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("compile_check: unset TRITON_INTERPRET (the interpreter replaces the compiler)")
    print(f"triton {triton.__version__}, sm{args.arch}", flush=True)
    for dtype in args.dtypes:
        for d in args.head_dims:
            for program in PROGRAMS:
                seconds, shared = compile_program(program, dtype, d, args.arch, args.all_options)
                print(f"{dtype} d={d} {program}: compiled in {seconds:.1f} s, shared memory {shared} bytes", flush=True)


if __name__ == "__main__":
    main()
