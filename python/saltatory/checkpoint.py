"""Checkpoints: the full training state in one checksummed file, written atomically.

File layout (little-endian):

    bytes  0-7    magic b"SALTCKPT"
    bytes  8-11   format version (uint32), currently 1
    bytes 12-19   payload length in bytes (uint64)
    bytes 20-51   SHA-256 of the payload
    bytes 52-     payload: an uncompressed numpy .npz archive (no pickles) holding
                  net/<name>    every array of Sequential.state_dict()
                  optim/<i>     the optimiser's state vectors, in order
                  meta          UTF-8 JSON: epoch, thresholds, optimiser lr/steps, RNG state,
                                threshold schedule, and the caller's ``extra``

A save writes a temporary file beside the target, fsyncs it and renames it over the target, so an
interrupted save leaves the previous checkpoint intact. A load verifies magic, version, length and
checksum before it changes anything, and restores all or nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile

import numpy as np

MAGIC = b"SALTCKPT"
VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupted, or does not fit the objects it is loaded into."""


def _thresholds(net) -> list:
    return [[layer.theta1, layer.theta2] if hasattr(layer, "theta2") else None for layer in net.layers]


def _set_thresholds(net, thresholds: list) -> None:
    for layer, pair in zip(net.layers, thresholds):
        if pair is not None:
            layer.theta1, layer.theta2 = float(pair[0]), float(pair[1])


def save_checkpoint(path, net, optimizer=None, *, epoch: int = 0, rng: np.random.Generator | None = None,
                    schedule=None, extra: dict | None = None) -> None:
    """Saves ``net`` (weights, alphas, thresholds), ``optimizer``, ``rng``, ``schedule``, ``epoch``
    and the JSON-serialisable ``extra`` to ``path``, atomically."""
    path = os.fspath(path)
    arrays = {f"net/{name}": value for name, value in net.state_dict().items()}
    meta = {"epoch": int(epoch), "thresholds": _thresholds(net), "extra": extra or {}}
    if optimizer is not None:
        state = optimizer.state_dict()
        arrays.update({f"optim/{i}": v for i, v in enumerate(state["state"])})
        meta["optim"] = {"type": type(optimizer).__name__, "lr": state["lr"], "steps": state["steps"],
                         "n_state": len(state["state"])}
    if rng is not None:
        meta["rng"] = rng.bit_generator.state
    if schedule is not None:
        meta["schedule"] = schedule.state_dict()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    header = _HEADER.pack(MAGIC, VERSION, len(payload), hashlib.sha256(payload).digest())

    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    """Verifies a checkpoint file and returns (arrays by name, meta)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size:
        raise CheckpointError(f"read_checkpoint: {path} is truncated ({len(data)} bytes, the header "
                              f"alone has {_HEADER.size})")
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"read_checkpoint: {path} is not a Saltatory checkpoint (magic {magic!r})")
    if version != VERSION:
        raise CheckpointError(f"read_checkpoint: {path} has format version {version}; this Saltatory "
                              f"reads version {VERSION}")
    payload = data[_HEADER.size:]
    if len(payload) != length:
        raise CheckpointError(f"read_checkpoint: {path} is truncated or padded: payload has "
                              f"{len(payload)} bytes, the header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"read_checkpoint: {path} is corrupted (SHA-256 checksum mismatch)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"read_checkpoint: {path}: unreadable payload ({exc})") from exc
    return arrays, meta


def load_checkpoint(path, net, optimizer=None, *, rng: np.random.Generator | None = None,
                    schedule=None) -> dict:
    """Restores what ``save_checkpoint`` saved into the given objects (all or nothing) and returns
    the meta dict (``epoch``, ``extra``, ...)."""
    path = os.fspath(path)
    arrays, meta = read_checkpoint(path)
    net_state = {name[4:]: value for name, value in arrays.items() if name.startswith("net/")}
    if optimizer is not None and "optim" not in meta:
        raise CheckpointError(f"load_checkpoint: {path} holds no optimiser state")
    if optimizer is not None and meta["optim"]["type"] != type(optimizer).__name__:
        raise CheckpointError(f"load_checkpoint: {path} holds {meta['optim']['type']} state, not "
                              f"{type(optimizer).__name__}")
    for what, obj in (("rng", rng), ("schedule", schedule)):
        if obj is not None and what not in meta:
            raise CheckpointError(f"load_checkpoint: {path} holds no {what} state")
    thresholds = meta.get("thresholds", [])
    if len(thresholds) != len(net.layers):
        raise CheckpointError(f"load_checkpoint: {path} has {len(thresholds)} layers, the network "
                              f"{len(net.layers)}")

    backup = (net.state_dict(), _thresholds(net),
              optimizer.state_dict() if optimizer is not None else None,
              schedule.state_dict() if schedule is not None else None)
    try:
        net.load_state_dict(net_state)
        _set_thresholds(net, thresholds)
        if optimizer is not None:
            info = meta["optim"]
            optimizer.load_state_dict({"lr": info["lr"], "steps": info["steps"],
                                       "state": [arrays[f"optim/{i}"] for i in range(info["n_state"])]})
        if schedule is not None:
            schedule.load_state_dict(meta["schedule"])
        if rng is not None:
            rng.bit_generator.state = meta["rng"]
    except (ValueError, KeyError, TypeError) as exc:
        net.load_state_dict(backup[0])
        _set_thresholds(net, backup[1])
        if optimizer is not None:
            optimizer.load_state_dict(backup[2])
        if schedule is not None:
            schedule.load_state_dict(backup[3])
        raise CheckpointError(f"load_checkpoint: {path} does not fit: {exc}") from exc
    return meta
