"""Output files of every command (``--json``, ``--plot``, ``--save``, ``--repro``): checked before the work,
written after it, and never lost.

``check_output_paths`` runs first in every command: each path must be a file we may create or replace: not a
folder, not under a virtual file system (``/proc``, ``/sys``), its folder existing or creatable (the nearest
existing ancestor is a writable folder on a writable file system). Missing folders are *not* created by the
check; ``write_output`` creates them when it writes. If the write still fails (the disk filled up during the
run, a folder was removed), ``write_output`` writes the same bytes to a temporary file and says where, so a
long run's results survive a bad path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"))


class OutputPathError(ValueError):
    """An output path that cannot be written; the message names the option and the path."""


def output_path_problem(path: Path) -> str:
    """Why ``path`` cannot be written as a file ("" when it can); creates nothing."""
    target = Path(os.path.abspath(Path(path).expanduser()))
    if target.is_dir():
        return "it is a folder, expected a file name"
    for root in VIRTUAL_ROOTS:
        if target == root or root in target.parents:
            return f"it is under {root}, a virtual file system"
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so no folder can be created there"
    if hasattr(os, "statvfs") and os.statvfs(ancestor).f_flag & os.ST_RDONLY:
        return f"{ancestor} is on a read-only file system"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"no permission to write in {ancestor}"
    if target.exists() and not os.access(target, os.W_OK):
        return "the file exists and is not writable"
    return ""


def check_output_paths(paths: Mapping[str, Path | None]) -> None:
    """``{"--json": path or None, ...}``: raise ``OutputPathError`` for the first path that cannot be written."""
    for flag, path in paths.items():
        if path is None:
            continue
        problem = output_path_problem(Path(path))
        if problem:
            raise OutputPathError(f"{flag}: cannot write {path}: {problem}")


def write_output(path: Path, write: Callable[[Path], None], flag: str) -> Path:
    """Create ``path``'s folder and ``write(path)``; if that fails with an OSError, ``write`` to a temporary
    file instead. Returns the path written, and says on stderr when it is not ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        return path
    except OSError as exc:
        fd, fallback_name = tempfile.mkstemp(prefix="triad-", suffix=path.suffix or ".out")
        os.close(fd)
        fallback = Path(fallback_name)
        write(fallback)
        from rich.console import Console

        Console(stderr=True).print(f"[bold yellow]{flag}: could not write {path} ({exc}); "
                                   f"saved to {fallback} instead[/]")
        return fallback
