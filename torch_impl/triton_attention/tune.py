"""Autotune the Triton kernel on this GPU and write the table of chosen configs (``configs.json``'s format).

    python -m torch_impl.triton_attention.tune --out torch_impl/triton_attention/configs.json

For each dtype and head dim it runs forward and backward once at ``--length`` with autotuning on
(Triton times every config of ``configs.search_space`` and keeps the fastest), then records what it
chose. Needs CUDA; the entries it does not tune are kept from the committed table.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import triton

from torch_impl.kernels import TORCH_DTYPES
from torch_impl.triton_attention import configs
from torch_impl.triton_attention.attention import triton_flash_attention


def tune(head_dims: tuple[int, ...], dtypes: tuple[str, ...], length: int, heads: int) -> dict:
    """The committed table with the tuned entries replaced by what the autotuner chose here."""
    configs.AUTOTUNE = True
    table = copy.deepcopy(configs.TABLE)
    table["_note"] = (f"[BLOCK_M, BLOCK_N, num_warps, num_stages]; tuned on {torch.cuda.get_device_name()} at "
                      f"L = {length}, {heads} heads, causal=False, by python -m torch_impl.triton_attention.tune")
    for dtype in dtypes:
        for d in head_dims:
            q, k, v = (torch.randn(1, length, heads, d, device="cuda", dtype=TORCH_DTYPES[dtype],
                                   requires_grad=True) for _ in range(3))
            triton_flash_attention(q, k, v).sum().backward()
            pad = str(max(16, triton.next_power_of_2(d)))
            for program in configs.PROGRAMS:
                table[program][dtype][pad] = list(configs.tuned_config(program))
                print(f"{program} {dtype} d={d}: BLOCK_M, BLOCK_N, warps, stages = {table[program][dtype][pad]}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"], choices=list(TORCH_DTYPES))
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=16)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("tune: needs CUDA (autotuning under the interpreter would time numpy)")
    table = tune(tuple(args.head_dims), tuple(args.dtypes), args.length, args.heads)
    args.out.write_text(configs.format_table(table))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
