"""Launch configurations: the committed table, the interpreter's one config, and autotuning.

A configuration is ``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` for one of the three programs
(``forward``, ``dkdv``, ``dq``), keyed by dtype and padded head dim. ``configs.json`` holds the table a
user gets without tuning. **Its GPU entries are not measured yet**: they are starting points taken
from known-good FlashAttention-2 settings for sm80/sm90 (the Triton fused-attention tutorial's
forward 128×64 tiles, its backward's 32×128 / 128×32 split for dK/dV and dQ, smaller tiles for
d = 256 and for float32, whose IEEE products run without tensor cores), to be replaced by what
``python -m torch_impl.triton_attention.tune`` picks on the GPU machine.

Under Triton's interpreter every program runs one small configuration (autotuning there would
time numpy, not a GPU): 32×32 tiles, measured the fastest there on small shapes (16×16 runs 2–3
times slower, 64×64 slower at d = 128); tests that need many tiles use lengths of several tiles.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
import triton

CONFIG_PATH = Path(__file__).with_name("configs.json")
PROGRAMS = ("forward", "dkdv", "dq")
INTERPRETER_CONFIG = (32, 32, 1, 1)
# TRIAD_TRITON_AUTOTUNE=1 (or setting this to True) times the search space below instead of reading the table.
AUTOTUNE = os.environ.get("TRIAD_TRITON_AUTOTUNE", "0") == "1"
DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def load_table(path: Path = CONFIG_PATH) -> dict[str, Any]:
    """The committed table: {program: {dtype: {padded head dim: [BLOCK_M, BLOCK_N, warps, stages]}}}."""
    with path.open() as f:
        table = json.load(f)
    for program in PROGRAMS:
        if program not in table:
            raise ValueError(f"{path}: expected an entry for each of {PROGRAMS}, missing {program!r}")
    return table


TABLE = load_table()


def committed_config(program: str, dtype: torch.dtype, pad: int) -> tuple[int, int, int, int]:
    """The table's entry for ``program`` at ``dtype`` and the padded head dim ``pad`` (the nearest smaller
    head dim listed when ``pad`` itself is not)."""
    by_dim = TABLE[program][DTYPE_NAMES[dtype]]
    listed = sorted(int(d) for d in by_dim)
    key = max([d for d in listed if d <= pad] or listed[:1])
    block_m, block_n, warps, stages = by_dim[str(key)]
    return block_m, block_n, warps, stages


def search_space(program: str) -> list[triton.Config]:
    """What autotuning times: tile sizes, warps and pipeline stages (configs that do not fit are
    dropped by Triton as out of resources)."""
    tiles = [(128, 64), (128, 128), (64, 64), (64, 128)] if program == "forward" else \
        [(32, 128), (64, 64), (64, 128)] if program == "dkdv" else [(128, 32), (64, 64), (128, 64)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for (m, n), w, s in itertools.product(tiles, (4, 8), (2, 3, 4))]


_AUTOTUNED: dict[str, Any] = {}


def autotuned(kernel: Any, program: str) -> Any:
    """``kernel`` wrapped in ``triton.autotune`` (once per program), keyed by the padded head dims and softcap;
    Triton adds the tensors' dtypes to the key itself. The outputs are written, never accumulated, so
    the autotuner's repeated runs need no reset."""
    if program not in _AUTOTUNED:
        _AUTOTUNED[program] = triton.autotune(configs=search_space(program),
                                              key=["PAD_QK", "PAD_V", "HAS_SOFTCAP"])(kernel)
    return _AUTOTUNED[program]


def tuned_config(program: str) -> tuple[int, int, int, int]:
    """What the autotuner chose for ``program`` at its last tuning (after a run with AUTOTUNE on)."""
    best = _AUTOTUNED[program].best_config
    return best.kwargs["BLOCK_M"], best.kwargs["BLOCK_N"], best.num_warps, best.num_stages


def format_table(table: dict[str, Any]) -> str:
    """The table as JSON with one line per configuration (what configs.json holds)."""
    text = json.dumps(table, indent=1)
    return re.sub(r"\[\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\s*\]", r"[\1, \2, \3, \4]", text) + "\n"
