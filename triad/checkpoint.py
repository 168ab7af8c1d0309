"""Checkpoints: one safetensors file holding the flat parameter dict, the config and what the model is for.

Layout of a file (never a pickle, so loading an untrusted file cannot run code):

- tensors: the flat ``dict[str, np.ndarray]`` shared by all three implementations (docs/conventions.md,
  "One parameter dictionary"), keyed like the scratch modules' ``state_dict()``;
- metadata (safetensors stores ``str -> str``):
  ``format`` = ``FORMAT``; ``kind`` = the model kind (``"encoder_decoder"``, ...);
  ``config`` = ``TransformerConfig.to_dict()`` as JSON; ``task`` = task metadata as JSON
  (its name, a vocabulary, ...); ``sha256`` = a digest of every tensor's name, dtype, shape
  and bytes, so a flipped byte in the data is an error too, not silently different weights.

**Atomic writes.** The bytes are built in memory first (a bad argument fails before the disk is
touched), written to a temporary file in the target's directory, flushed and ``fsync``-ed, then
``os.replace``-d over the target (atomic on POSIX and Windows within one file system) and the
directory is synced. A crash at any point leaves either the old file or the new one, never a mix;
the temporary file is removed on failure.

**Loading** checks, before anything is handed out: the file parses (else: corrupt or truncated),
it is ours (``format``), the digest matches, the config is valid, the kind is the expected one, and
with ``expected_shapes`` every key is present, none is extra and each has its shape. Loading into
a scratch or native module (``load_into_module``) checks against the module's own parameters
before copying anything, so a mismatched file leaves the module's old parameters intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save as safetensors_save

from reference.config import TransformerConfig
from reference.validate import check_param_shapes
from torch_impl.convert import load_native, load_scratch

FORMAT = "transformer-triad/1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, not ours, or not the model asked for."""


@dataclass(frozen=True)
class Checkpoint:
    params: dict[str, np.ndarray]
    config: TransformerConfig
    kind: str
    task: dict[str, Any] = field(default_factory=dict)


def _digest(params: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> str:
    """sha256 over the metadata strings (length-prefixed) and every tensor: a flipped byte anywhere is caught."""
    h = hashlib.sha256()
    for key in ("format", "kind", "config", "task"):
        value = metadata[key].encode()
        h.update(f"{key}|{len(value)}|".encode())
        h.update(value)
    for name in sorted(params):
        a = np.ascontiguousarray(params[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _check_shapes(
    params: Mapping[str, np.ndarray | torch.Tensor],
    expected_shapes: Mapping[str, tuple[int, ...]],
    source: str,
) -> None:
    """CheckpointError naming the missing, extra or mis-shaped key (reference.params' check, one source)."""
    try:
        check_param_shapes(params, expected_shapes, "params")
    except ValueError as exc:
        raise CheckpointError(f"{source}: parameters do not match the model: {exc}") from exc


def save_checkpoint(
    path: str | os.PathLike[str],
    params: Mapping[str, np.ndarray],
    config: TransformerConfig,
    kind: str,
    task: Mapping[str, Any] | None = None,
) -> None:
    """Write ``params``, ``config``, ``kind`` and ``task`` to ``path`` atomically (module docstring)."""
    path = Path(path)
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind: expected a non-empty model kind such as 'encoder_decoder', got {kind!r}")
    if not params:
        raise ValueError("params: expected at least one parameter, got an empty dict")
    arrays = {}
    for name, p in params.items():
        if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
            what = f"dtype {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__
            raise TypeError(f"params[{name!r}]: expected a floating numpy.ndarray, got {what}")
        arrays[name] = np.ascontiguousarray(p)
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "config": json.dumps(config.to_dict()),
        "task": json.dumps(dict(task or {})),
    }
    metadata["sha256"] = _digest(arrays, metadata)
    payload = safetensors_save(arrays, metadata=metadata)  # everything that can fail on the input fails here

    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600: give the file the mode a plain open() would (or the old file's).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~umask)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_checkpoint(
    path: str | os.PathLike[str],
    kind: str | None = None,
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> Checkpoint:
    """Read and check a checkpoint; ``kind`` and ``expected_shapes``, when given, must match the file."""
    path = Path(path)
    source = f"checkpoint {str(path)!r}"
    if path.is_dir():
        raise CheckpointError(f"{source}: is a folder, expected a .safetensors file written by triad train --save")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            names = f.keys()  # safe_open is not iterable, hence keys()
            params = {name: f.get_tensor(name) for name in names}
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors' own errors, and numpy's for dtypes it cannot hold (bf16)
        raise CheckpointError(f"{source}: corrupt or truncated safetensors file ({exc})") from exc
    for name, array in params.items():
        if not np.issubdtype(array.dtype, np.floating):
            raise CheckpointError(f"{source}: tensor {name!r} has dtype {array.dtype}, expected a floating dtype")
        if not np.isfinite(array).all():
            raise CheckpointError(f"{source}: tensor {name!r} holds {int(np.sum(~np.isfinite(array)))} NaN or "
                                  f"infinite values of {array.size}: the weights are unusable")
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{source}: not a transformer-triad checkpoint "
            f"(format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    for key in ("kind", "config", "task", "sha256"):
        if key not in metadata:
            raise CheckpointError(f"{source}: metadata has no {key!r} entry")
    if _digest(params, metadata) != metadata["sha256"]:
        raise CheckpointError(f"{source}: corrupt: the tensors do not match the sha256 stored in the file "
                              "(which also covers its kind, config and task metadata)")
    try:
        config = TransformerConfig.from_dict(json.loads(metadata["config"]))
        task = json.loads(metadata["task"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{source}: invalid config or task metadata ({exc})") from exc
    if not isinstance(task, dict):
        raise CheckpointError(f"{source}: task metadata must be a JSON object, got {type(task).__name__}")
    if kind is not None and metadata["kind"] != kind:
        raise CheckpointError(
            f"{source}: kind: expected a {kind!r} model, the file holds {metadata['kind']!r}"
        )
    if expected_shapes is not None:
        _check_shapes(params, expected_shapes, source)
    return Checkpoint(params=params, config=config, kind=metadata["kind"], task=task)


def load_into_module(module: torch.nn.Module, params: Mapping[str, np.ndarray], impl: str) -> None:
    """Copy a flat dict into a ``"scratch"`` or ``"native"`` module (``torch_impl.convert``'s loaders).

    Every key and shape is checked before anything is copied, so a mismatch leaves the module as it
    was; values are cast to the module's dtype (load float64 into ``module.double()`` for an exact copy).
    The reference needs no loading: ``Checkpoint.params`` *is* its parameter dict.
    """
    loaders = {"scratch": load_scratch, "native": load_native}
    if impl not in loaders:
        raise ValueError(f"impl: expected 'scratch' or 'native', got {impl!r}")
    try:
        loaders[impl](module, params)
    except ValueError as exc:
        raise CheckpointError(f"{type(module).__name__}: parameters do not match the model: {exc}") from exc
