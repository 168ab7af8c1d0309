"""Named diagnoses of a KV-cache kernel: the cache read or written the wrong way, said in one line.

Each re-reads the caches given **with the bug** -- the new k/v written at another position, the keys read up to
another length, the pages taken in physical order -- and runs the float64 varlen reference on the keys so read;
it fits, as the flash diagnoses do (``triad.verify.diagnoses.fits``), when the kernel's output is much closer to
that than to the oracle. When none fits, the flash interface's own diagnoses are tried on the equivalent varlen
case (causal aligned top-left in decode among them). A diagnosis that does not fit says nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from triad.verify.diagnoses import diagnose, fits
from triad.verify.flash_judge import reference_forward
from triad.verify.kvcache_cases import KvcacheCase
from triad.verify.kvcache_judge import cache_rows, case_inputs, updated_caches


@dataclasses.dataclass(frozen=True)
class Misread:
    """How a wrong kernel reads its cache: new k/v written at ``cache_seqlens + offset`` (or not at all), keys
    ``0 .. length - 1`` read per element (``lengths``: "cache" = cache_seqlens only, "capacity" = every slot,
    else cache_seqlens + Lnew), through the block table or, with ``physical``, the pages in physical order."""

    offset: int = 0
    write: bool = True
    lengths: str = "attended"
    physical: bool = False


def misread_attention(case: KvcacheCase, arrays: dict[str, Any], misread: Misread) -> dict[str, np.ndarray]:
    """out and lse (varlen layouts) of the float64 reference on the keys ``misread`` reads."""
    inputs = case_inputs(case, arrays)
    table = inputs["block_table"]
    if misread.physical and table is not None:
        table = np.arange(table.size, dtype=np.int32).reshape(table.shape)  # (B, blocks): pages in order
    k_cache, v_cache = updated_caches(case, inputs, table, misread.offset) if misread.write else (
        inputs["k_cache"], inputs["v_cache"])
    lengths = {"cache": case.cache_seqlens, "capacity": (case.capacity,) * case.B}.get(misread.lengths,
                                                                                      case.seqlens_k)
    rows = [cache_rows(k_cache.shape, table, b, np.arange(n)) for b, n in enumerate(lengths)]  # (Lk_b,) each
    flat_k, flat_v = (c.reshape(-1, *c.shape[2:]) for c in (k_cache, v_cache))  # (slots, Hkv, d)
    varlen = dataclasses.replace(case.varlen(), seqlens_k=tuple(lengths))
    packed = arrays["varlen"] | {"k": flat_k[np.concatenate(rows)], "v": flat_v[np.concatenate(rows)],
                                 "cu_seqlens_k": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)}
    out, lse, _ = reference_forward(varlen, packed)
    return {"out": out, "lse": lse}


# name -> (message, applies to the case, the misreads it stands for)
KVCACHE_DIAGNOSES: dict[str, tuple[str, Callable[[KvcacheCase], bool], tuple[Misread, ...]]] = {
    "past_length": ("keys past cache_seqlens read: the whole cache capacity attended, stale slots included",
                    lambda c: True, (Misread(lengths="capacity"),)),
    "table_ignored": ("block table ignored: the pages read in physical order", lambda c: c.page_size > 0,
                      (Misread(physical=True),)),
    "append_position": ("new k/v appended at the wrong position (cache_seqlens +- 1) or not attended",
                        lambda c: c.Lnew > 0,
                        (Misread(offset=1), Misread(offset=-1), Misread(lengths="cache"), Misread(write=False))),
}


def diagnose_kvcache(case: KvcacheCase, arrays: dict[str, Any], actual: dict[str, np.ndarray],
                     expected: dict[str, np.ndarray], dtype: str, failed: set[str]) -> str:
    """The first named diagnosis that fits the kernel's failing tensors (varlen layouts; ``failed``: out, lse,
    ...), or ""."""
    for message, applies, misreads in KVCACHE_DIAGNOSES.values():
        if applies(case) and any(fits(actual, expected, {"out": misread_attention(case, arrays, m)["out"]}, failed)
                                 for m in misreads):
            return message
    return diagnose(case.varlen(), arrays["varlen"], actual, expected, dtype, failed)
