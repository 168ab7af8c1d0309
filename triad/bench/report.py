"""The report of a ``triad bench`` run: a rich table, the JSON file (``schema.json``) and the PNG plot.

JSON has no NaN or infinity, and one non-finite figure (a kernel's NaN output makes its check error
infinite, say) must not cost the whole run its file: every non-finite number is written as ``null`` and
flagged, its JSON Pointer (RFC 6901, e.g. ``/rows/12/check_err``) listed in the report's ``non_finite``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from triad.bench.lines import print_rows_as_lines

SCHEMA_PATH = Path(__file__).with_name("schema.json")
WIDE_TABLE_COLUMNS = 170  # the table's width; narrower, or piped, the rows are printed as lines (lines.py)


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every ``--json`` report satisfies."""
    return json.loads(SCHEMA_PATH.read_text())


def _finite_copy(value: Any, pointer: str, flagged: list[str]) -> Any:
    """``value`` with every non-finite float replaced by None; the pointers of those appended to ``flagged``."""
    if isinstance(value, float) and not math.isfinite(value):
        flagged.append(pointer)
        return None
    if isinstance(value, dict):
        return {key: _finite_copy(item, f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}", flagged)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_copy(item, f"{pointer}/{i}", flagged) for i, item in enumerate(value)]
    return value


def finite_report(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` that JSON can hold: NaN/inf figures become None, listed by pointer in ``non_finite``
    (which keeps the pointers an earlier call listed)."""
    flagged: list[str] = []
    clean = _finite_copy({k: v for k, v in report.items() if k != "non_finite"}, "", flagged)
    clean["non_finite"] = list(dict.fromkeys([*report.get("non_finite", []), *flagged]))
    return clean


def _bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def _header_line(header: dict[str, Any]) -> str:
    cuda = header["cuda"]
    gpu = (f"; GPU {cuda['device']} (driver {cuda['driver']}, CUDA {cuda['cuda']}, cuDNN {cuda['cudnn']}, "
           f"TF32 {'on' if cuda['tf32'] else 'off'})") if cuda else "; no GPU"
    return (f"CPU {header['cpu_model']} ({header['cpu_count']} cores, torch threads {header['torch_threads']}, "
            f"OMP_NUM_THREADS={header['omp_num_threads']}){gpu}; torch {header['torch']}, numpy {header['numpy']}; "
            f"{header['rounds']} timed rounds after {header['warmup']} warm-up, median [p20, p80]")


def print_report(report: dict[str, Any], console: Console) -> None:
    """The table (one line per row), the matmul peaks, the FLOP convention and the reference/scratch ratio."""
    header = report["header"]
    table = Table(title=f"triad bench --{header['preset']}: attention core", caption=_header_line(header))
    for column in ("kernel", "device", "dtype", "B x H x L x d", "causal", "mode", "median ms [p20, p80]",
                   "TFLOP/s", "% matmul peak", "peak mem", "GPU/CPU", "status"):
        table.add_column(column, justify="right" if column in ("TFLOP/s", "% matmul peak", "peak mem", "GPU/CPU")
                         else "left")
    for r in report["rows"]:
        ok = r["status"] == "ok"
        status = "[green]ok[/]" if ok else f"[yellow]{r['status']}[/]"
        if r["above_peak"]:
            status = "[bold red]above peak: broken measurement[/]"
        table.add_row(
            r["kernel"], r["device"], r["dtype"],
            f"{r['B']}x{r['H']}x{r['Lq']}x{r['d_head']}" + (f" GQA {_group(r)}:1" if _group(r) > 1 else ""),
            "yes" if r["causal"] else "no", r["mode"],
            f"{r['median_ms']:.3f} [{r['p20_ms']:.3f}, {r['p80_ms']:.3f}]" if ok and r["median_ms"] is not None
            else "-",
            f"{r['tflops']:.4f}" if ok and r["tflops"] is not None else "-",
            f"{100 * r['peak_share']:.1f}%" if ok and r["peak_share"] is not None else "-",
            _bytes(r["peak_memory_bytes"]),
            f"{r['speedup_over_cpu']:.1f}x" if r["speedup_over_cpu"] is not None else "-",
            status,
        )
    if console.is_terminal and console.width >= WIDE_TABLE_COLUMNS:
        console.print(table)
    else:  # piped, logged or narrow: a table would wrap every cell
        console.print(table.title, highlight=False)
        print_rows_as_lines(report["rows"], console)
        console.print(table.caption, highlight=False)
    reasons = dict.fromkeys((r["kernel"], r["status"], r["message"]) for r in report["rows"] if r["status"] != "ok")
    for kernel, status, message in reasons:
        console.print(f"{kernel}: {status}: {message}")
    for peak in report["matmul_peaks"]:
        tf32 = " with TF32" if peak["tf32"] else ""
        tflops = "-" if peak["tflops"] is None else f"{peak['tflops']:.4f}"
        console.print(f"matmul peak {peak['device']} {peak['dtype']}{tf32}: {tflops} TFLOP/s "
                      f"(fastest round of the best square matmul, n={peak['n']})")
    if any(p["tf32"] for p in report["matmul_peaks"]):
        console.print("CUDA float32 rows of reference, scratch and sdpa-math are compared with the TF32-off peak, "
                      "every other kernel's with the TF32 one (mem-efficient runs float32 as 3xTF32 whatever "
                      "allow_tf32 says)")
    console.print(header["flop_convention"])
    if report.get("non_finite"):
        console.print(f"[bold red]{len(report['non_finite'])} non-finite figures (NaN/inf), null in the JSON:[/] "
                      + ", ".join(report["non_finite"][:10]))
    ratios = report["reference_over_scratch"]
    if ratios:
        worst = max(ratios, key=lambda x: x["ratio"])
        console.print(f"NumPy reference over scratch (CPU, same shapes and dtype): median ratio "
                      f"{sorted(x['ratio'] for x in ratios)[len(ratios) // 2]:.2f}, worst {worst['ratio']:.2f} "
                      f"({worst['dtype']} L={worst['L']} {worst['mode']}{' causal' if worst['causal'] else ''}); "
                      f"reference within 2x of scratch everywhere: {'met' if worst['ratio'] <= 2 else 'NOT met'}")


def _why_empty(rows: list[dict[str, Any]], device: str, dtype: str, d_head: int, mode: str, group: int = 1) -> str:
    """'no data: every kernel skipped (time budget of 40 s spent)' for a panel none of whose rows was measured."""
    panel = [r for r in rows if (r["device"], r["dtype"], r["d_head"], r["mode"], _group(r))
             == (device, dtype, d_head, mode, group)]
    kernels = list(dict.fromkeys(r["kernel"] for r in panel))
    by_reason: dict[str, list[str]] = {}
    for r in panel:
        names = by_reason.setdefault(f"{r['status']} ({r['message'][:60]})", [])
        names += [r["kernel"]] if r["kernel"] not in names else []
    lines = [f"{'every kernel' if names == kernels else ', '.join(names)}: {reason}"
             for reason, names in by_reason.items()]
    return "no data:\n" + "\n".join(lines[:4]) + ("\n..." if len(lines) > 4 else "")


def write_json(report: dict[str, Any], path: Path) -> None:
    """The report as JSON (``schema.json``); non-finite figures as null, flagged in ``non_finite``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_report(report), indent=1, allow_nan=False) + "\n")


def _group(row: dict[str, Any]) -> int:
    """Query heads per K/V head of a row (1: multi-head attention)."""
    return row["H"] // (row.get("Hkv") or row["H"])


def write_plot(report: dict[str, Any], path: Path) -> None:
    """TFLOP/s against L: one panel per device/dtype/head dim (rows) and mode (columns), one colour per kernel,
    solid non-causal and dashed causal, one line (and marker) per problem size B x L where a panel has two,
    the matmul peak as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["status"] == "ok"]
    modes = list(dict.fromkeys(r["mode"] for r in report["rows"]))
    panels = list(dict.fromkeys((r["device"], r["dtype"], r["d_head"], _group(r)) for r in report["rows"]))
    kernels = list(dict.fromkeys(r["kernel"] for r in report["rows"]))
    colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kernels)}
    peaks = {(p["device"], p["dtype"], p["tf32"]): p["tflops"] for p in report["matmul_peaks"]}
    fig, axes = plt.subplots(len(panels), len(modes), figsize=(5 * len(modes), 3.6 * len(panels)), squeeze=False)
    for i, (device, dtype, d_head, group) in enumerate(panels):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            panel = [r for r in rows if (r["device"], r["dtype"], r["d_head"], _group(r), r["mode"])
                     == (device, dtype, d_head, group, mode)]
            # one line per problem size (B x L tokens): a GPU panel also holds the CPU's smaller shapes
            sizes = sorted({r["B"] * r["Lq"] for r in panel}, reverse=True)
            for kernel in kernels:
                for causal in (False, True):
                    for size_index, tokens in enumerate(sizes):
                        line = sorted((r["Lq"], r["tflops"]) for r in panel if r["kernel"] == kernel
                                      and r["causal"] == causal and r["B"] * r["Lq"] == tokens)
                        if not line:
                            continue
                        label = f"{kernel}{' causal' if causal else ''}"
                        label += f" ({tokens} tokens)" if len(sizes) > 1 else ""
                        ax.plot([L for L, _ in line], [tf for _, tf in line], marker="os^v"[size_index % 4],
                                color=colours[kernel], linestyle="--" if causal else "-", label=label)
            for tf32, label in ((False, "matmul peak"), (True, "matmul peak, TF32")):
                if peaks.get((device, dtype, tf32)):
                    ax.axhline(peaks[(device, dtype, tf32)], color="grey", linestyle=":" if not tf32 else "-.",
                               label=label)
            if not panel:  # say why, rather than an empty frame
                ax.text(0.5, 0.5, _why_empty(report["rows"], device, dtype, d_head, mode, group), ha="center",
                        va="center", wrap=True, fontsize="small", transform=ax.transAxes)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{device} {dtype} d={d_head}{f' GQA {group}:1' if group > 1 else ''} {mode}")
            ax.set_xlabel("sequence length L (B x L fixed)")
            ax.set_ylabel("TFLOP/s")
            ax.grid(True, alpha=0.3)
    legend = {}  # every line of every panel, once (panels may differ: a GPU one has the CPU's shapes too)
    for ax in axes.flat:
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    ncol = max(1, min(len(legend), 6))
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=ncol, fontsize="small")
    legend_height = (0.3 + 0.22 * -(-len(legend) // ncol)) / fig.get_figheight()  # its rows, in figure units
    header = report["header"]
    gpu = f", {header['cuda']['device']}" if header["cuda"] else ""
    fig.suptitle(f"triad bench --{header['preset']}: {header['cpu_model']}{gpu}, torch {header['torch']}")
    fig.tight_layout(rect=(0, min(legend_height, 0.5), 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
