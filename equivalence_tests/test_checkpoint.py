"""Checkpoints: bitwise round trips, atomic replacement, and a clear error for every kind of bad file."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save as safetensors_save

from reference.config import TransformerConfig
from triad import checkpoint as ckpt
from triad.checkpoint import CheckpointError, load_checkpoint, load_into_module, save_checkpoint

CONFIG = TransformerConfig(d_model=8, n_heads=2, d_ff=16, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0)
SHAPES = {"layer.weight": (3, 4), "layer.bias": (3,), "norm.weight": (4,)}
TASK = {"name": "charlm", "vocab": {"chars": " abc", "pad": 0, "eos": 1}}


def _params(seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def _perturbed(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: p + 1.0 for name, p in params.items()}


class Toy(torch.nn.Module):
    """A stand-in module whose state_dict keys are SHAPES (the loader only sees keys and shapes)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3, dtype=torch.float64)
        self.norm = torch.nn.LayerNorm(4, bias=False, dtype=torch.float64)


@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float64, np.float32]))
def test_checkpoint_round_trip_is_bitwise_with_config_kind_and_task(tmp_path_factory, seed, dtype):
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    params = _params(seed, dtype)
    save_checkpoint(path, params, CONFIG, "decoder_only", TASK)
    loaded = load_checkpoint(path, kind="decoder_only", expected_shapes=SHAPES)
    assert _same(loaded.params, params)
    assert loaded.config == CONFIG and loaded.kind == "decoder_only" and loaded.task == TASK


def test_save_replaces_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _params(0), CONFIG, "decoder_only")
    save_checkpoint(path, _params(1), CONFIG, "decoder_only")
    assert _same(load_checkpoint(path).params, _params(1))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_failed_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _params(0), CONFIG, "decoder_only")
    before = path.read_bytes()

    with pytest.raises(
        TypeError,
        match=r"params\['bad'\]: expected a floating numpy.ndarray, got dtype int64",
    ):
        save_checkpoint(path, {**_params(1), "bad": np.zeros(2, dtype=np.int64)}, CONFIG, "decoder_only")
    with pytest.raises(ValueError, match="kind: expected a non-empty model kind"):
        save_checkpoint(path, _params(1), CONFIG, "")

    def crash(*args, **kwargs):  # the machine dies between writing the temporary file and renaming it
        raise OSError("disk on fire")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        save_checkpoint(path, _params(1), CONFIG, "decoder_only")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    assert _same(load_checkpoint(path).params, _params(0))


@pytest.mark.parametrize("cut", [1, 7, 100, -1])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, cut):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _params(), CONFIG, "decoder_only")
    data = path.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(
        CheckpointError,
        match=r"truncated\.safetensors'.*corrupt or truncated safetensors file",
    ):
        load_checkpoint(bad)


def test_flipped_data_byte_is_caught_by_the_digest(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _params(), CONFIG, "decoder_only")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's bytes: the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt: the tensors do not match the sha256"):
        load_checkpoint(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    path.write_bytes(safetensors_save(_params()))
    with pytest.raises(CheckpointError, match="not a transformer-triad checkpoint"):
        load_checkpoint(path)


def test_invalid_config_in_the_metadata_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    params = _params()
    metadata = {"format": ckpt.FORMAT, "kind": "decoder_only", "task": "{}",
                "config": json.dumps({**CONFIG.to_dict(), "n_heads": 3})}
    metadata["sha256"] = ckpt._digest(params, metadata)  # a consistent file whose config is invalid
    path.write_bytes(safetensors_save(params, metadata=metadata))
    with pytest.raises(
        CheckpointError,
        match=r"invalid config or task metadata.*d_model: expected a multiple",
    ):
        load_checkpoint(path)


def test_wrong_kind_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _params(), CONFIG, "encoder_only")
    with pytest.raises(
        CheckpointError,
        match="kind: expected a 'decoder_only' model, the file holds 'encoder_only'",
    ):
        load_checkpoint(path, kind="decoder_only")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "norm.weight"}, "params: missing key 'norm.weight', expected shape (4,)"),
        ({"add": "stray.weight"}, "params: unexpected key 'stray.weight'"),
        ({"reshape": "layer.bias"}, "params['layer.bias']: expected shape (3,), got (4,)"),
    ],
)
def test_missing_extra_and_misshaped_keys_are_named(tmp_path, change, message):
    path = tmp_path / "model.safetensors"
    params = _params()
    if "drop" in change:
        params.pop(change["drop"])
    if "add" in change:
        params[change["add"]] = np.zeros(2)
    if "reshape" in change:
        params[change["reshape"]] = np.zeros(4)
    save_checkpoint(path, params, CONFIG, "decoder_only")
    with pytest.raises(CheckpointError, match=re.escape(f"parameters do not match the model: {message}")):
        load_checkpoint(path, expected_shapes=SHAPES)


class ToyNative(torch.nn.Module):
    """A native stand-in: nn.MultiheadAttention packs q/k/v into in_proj_weight; the flat keys are split."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(4, 2, batch_first=True, dtype=torch.float64)


NATIVE_SHAPES = {
    f"attn.{proj}.{leaf}": (4, 4) if leaf == "weight" else (4,)
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj")
    for leaf in ("weight", "bias")
}


@pytest.mark.parametrize(
    ("impl", "make", "shapes"), [("scratch", Toy, SHAPES), ("native", ToyNative, NATIVE_SHAPES)]
)
def test_load_into_module_is_bitwise_and_a_mismatch_leaves_the_module_intact(tmp_path, impl, make, shapes):
    rng = np.random.default_rng(3)
    params = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, params, CONFIG, "decoder_only")
    module = make()
    load_into_module(module, load_checkpoint(path).params, impl)
    before = {name: t.clone() for name, t in module.state_dict().items()}
    if impl == "native":
        assert torch.equal(before["attn.in_proj_weight"][4:8], torch.from_numpy(params["attn.k_proj.weight"]))
    else:
        assert _same({name: t.numpy() for name, t in before.items()}, params)

    last = list(shapes)[-1]  # every other key is fine, so a partial copy would show
    bad = {**_perturbed(params), last: np.zeros(7)}
    message = f"{make.__name__}: parameters do not match the model: params[{last!r}]: expected shape"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_into_module(module, bad, impl)
    assert all(torch.equal(t, before[name]) for name, t in module.state_dict().items())


def test_load_into_module_rejects_an_unknown_implementation():
    with pytest.raises(ValueError, match="impl: expected 'scratch' or 'native', got 'reference'"):
        load_into_module(Toy(), _params(), "reference")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_save_writes_the_file_with_fsync(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(ckpt.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    save_checkpoint(tmp_path / "model.safetensors", _params(), CONFIG, "decoder_only")
    assert len(synced) == 2  # the temporary file before the rename, the directory after it


def test_a_flipped_byte_in_the_config_metadata_is_an_error(tmp_path) -> None:
    """The digest covers the metadata too: a changed layer_norm_eps must not load silently."""
    from reference.config import TransformerConfig
    from triad.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"w": np.ones((2, 2))}, TransformerConfig(d_model=4, n_heads=2), "encoder_decoder")
    data = path.read_bytes()
    tampered = data.replace(b"1e-05", b"1e-15")  # layer_norm_eps, inside the config's JSON
    assert tampered != data
    path.write_bytes(tampered)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_checkpoint_is_written_with_an_ordinary_file_mode(tmp_path) -> None:
    import os
    import stat

    from reference.config import TransformerConfig
    from triad.checkpoint import save_checkpoint

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"w": np.ones((2, 2))}, TransformerConfig(d_model=4, n_heads=2), "encoder_decoder")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
