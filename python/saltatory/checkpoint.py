"""Checkpoints: the full training state in one checksummed file, written atomically.

File layout (little-endian):

    bytes  0-7    magic b"SALTCKPT"
    bytes  8-11   format version (uint32), currently 2 (1, whose meta holds [theta1, theta2] per
                  spiking layer, is still read)
    bytes 12-19   payload length in bytes (uint64)
    bytes 20-51   SHA-256 of the payload
    bytes 52-     payload: an uncompressed numpy .npz archive (no pickles) holding
                  net/<name>    every array of Sequential.state_dict()
                  optim/<i>     the optimiser's state vectors, in order
                  meta          UTF-8 JSON: epoch, thresholds (theta2 per spiking layer, null
                                for a readout; theta1 is per neuron among the net/ arrays),
                                optimiser lr/steps, RNG state, threshold schedule, and the
                                caller's ``extra``

A save writes a temporary file beside the target, fsyncs it and renames it over the target, so an
interrupted save leaves the previous checkpoint intact. A load verifies magic, version, length and
checksum, then checks every array and meta field against the objects it loads into, and only then
assigns: a file that does not fit raises CheckpointError and changes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import reprlib
import struct

import numpy as np

from .nn import _DECAYS
from .optim import finite_array, finite_real

MAGIC = b"SALTCKPT"
VERSION = 2
_HEADER = struct.Struct("<8sIQ32s")


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupted, or does not fit the objects it is loaded into."""


def _thresholds(net) -> list:
    return [layer.theta2 if hasattr(layer, "theta2") else None for layer in net.layers]


def _set_thresholds(net, thresholds: list) -> None:
    for layer, theta2 in zip(net.layers, thresholds):
        if theta2 is not None:
            layer.theta2 = float(theta2)


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
    """Verifies the checkpoint file at ``path`` and returns (arrays by name, meta). Any content it
    cannot parse raises CheckpointError."""
    arrays, meta, _ = _read(os.fspath(path))
    return arrays, meta


def _read(path: str) -> tuple[dict[str, np.ndarray], dict, int]:
    """read_checkpoint, and the file's format version."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size:
        raise CheckpointError(f"read_checkpoint: {path} is truncated ({len(data)} bytes, the header "
                              f"alone has {_HEADER.size})")
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"read_checkpoint: {path} is not a Saltatory checkpoint (magic {magic!r})")
    if version not in (1, VERSION):
        raise CheckpointError(f"read_checkpoint: {path} has format version {version}; this Saltatory "
                              f"reads versions 1 and {VERSION}")
    payload = data[_HEADER.size:]
    if len(payload) != length:
        raise CheckpointError(f"read_checkpoint: {path} is truncated or padded: payload has "
                              f"{len(payload)} bytes, the header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"read_checkpoint: {path} is corrupted (SHA-256 checksum mismatch)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = arrays.pop("meta")
        meta = json.loads(meta.tobytes().decode()) if isinstance(meta, np.ndarray) else meta
    except Exception as exc:  # numpy, zipfile and json raise many types on payloads they cannot parse
        raise CheckpointError(f"read_checkpoint: {path}: unreadable payload ({type(exc).__name__}: "
                              f"{reprlib.repr(str(exc))})") from exc
    odd = sorted(name for name, value in arrays.items() if not isinstance(value, np.ndarray))
    if odd or not isinstance(meta, dict):
        raise CheckpointError(f"read_checkpoint: {path}: the payload must hold numpy arrays and a JSON "
                              f"object as meta; {reprlib.repr(odd)} are not arrays, meta is a "
                              f"{type(meta).__name__}")
    return arrays, meta, version


def load_checkpoint(path, net, optimizer=None, *, rng: np.random.Generator | None = None,
                    schedule=None) -> dict:
    """Restores what ``save_checkpoint`` saved to ``path`` into the given objects (``optimizer``,
    ``rng`` and ``schedule`` are each restored when given) and returns the meta dict
    (``epoch``, ``extra``, ...). Everything is validated before anything is assigned: a
    CheckpointError leaves ``net``, ``optimizer``, ``rng`` and ``schedule`` as they were."""
    path = os.fspath(path)
    arrays, meta, version = _read(path)
    try:
        thresholds = _checked_thresholds(meta, net, version, arrays)
        net_state = _checked_net_state(arrays, net)
        if not (isinstance(meta.get("epoch"), int) and not isinstance(meta["epoch"], bool)
                and isinstance(meta.get("extra"), dict)):
            raise ValueError("meta needs an integer epoch and an object extra")
        optim_state = None if optimizer is None else _checked_optim_state(arrays, meta, optimizer)
        if schedule is not None:
            if "schedule" not in meta:
                raise ValueError("no schedule state")
            schedule.validate_state_dict(meta["schedule"])
        if rng is not None:
            _check_rng_state(meta, rng)
    except ValueError as exc:
        raise CheckpointError(f"load_checkpoint: {path} does not fit: {exc}") from exc
    net.load_state_dict(net_state)
    _set_thresholds(net, thresholds)
    if optimizer is not None:
        optimizer.load_state_dict(optim_state)
    if schedule is not None:
        schedule.load_state_dict(meta["schedule"])
    if rng is not None:
        rng.bit_generator.state = meta["rng"]
    return meta


def _checked_thresholds(meta: dict, net, version: int, arrays: dict) -> list:
    """meta's thresholds: theta2 (finite) per spiking layer, None per readout. A version 1 file
    holds [theta1, theta2] (theta2 <= theta1) instead: its theta1 becomes the layer's per-neuron
    array among ``arrays``."""
    thresholds = meta.get("thresholds")
    if not isinstance(thresholds, list):
        raise ValueError(f"meta's thresholds must be a list, one entry per layer, got "
                         f"{reprlib.repr(thresholds)}")
    if len(thresholds) != len(net.layers):
        raise ValueError(f"the checkpoint has {len(thresholds)} layers, the network {len(net.layers)}")
    theta2 = []
    for i, (layer, entry) in enumerate(zip(net.layers, thresholds)):
        if not hasattr(layer, "theta2"):
            if entry is not None:
                raise ValueError(f"layer {i} is a {type(layer).__name__}: its thresholds must be null, "
                                 f"got {reprlib.repr(entry)}")
            theta2.append(None)
        elif version == 1:
            if not (isinstance(entry, list) and len(entry) == 2 and all(finite_real(x) for x in entry)
                    and entry[1] <= entry[0]):
                raise ValueError(f"layer {i} is a {type(layer).__name__}: its thresholds must be "
                                 f"[theta1, theta2], finite with theta2 <= theta1, got "
                                 f"{reprlib.repr(entry)}")
            arrays[f"net/layers.{i}.theta1"] = np.full(layer.n_out, entry[0], np.float32)
            theta2.append(entry[1])
        elif not finite_real(entry):
            raise ValueError(f"layer {i} is a {type(layer).__name__}: its threshold must be theta2, a "
                             f"finite number, got {reprlib.repr(entry)}")
        else:
            theta2.append(entry)
    return theta2


def _checked_net_state(arrays: dict, net) -> dict[str, np.ndarray]:
    """The net/ arrays as float32, each named, shaped and (for the decays alpha, alpha_syn and rho)
    ranged as in ``net``."""
    expected = net.state_dict()
    state = {name[4:]: value for name, value in arrays.items() if name.startswith("net/")}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"network arrays missing {reprlib.repr(missing)}, unexpected "
                         f"{reprlib.repr(unexpected)}")
    for name, value in state.items():
        if value.dtype.kind not in "fiu" or value.shape != expected[name].shape:
            raise ValueError(f"{name} is a {value.dtype} array of shape {value.shape}; the network needs "
                             f"a real one of shape {expected[name].shape}")
        if not finite_array(value):
            raise ValueError(f"{name} is not finite (as float32)")
        learnable = name in dict(net.named_parameters())  # a learnable decay is clamped by forward
        decay = name.split(".")[-1] in _DECAYS
        if decay and not learnable and not np.all((value >= 0) & (value <= 1)):
            raise ValueError(f"{name} values must lie in [0, 1]")
    return {name: value.astype(np.float32) for name, value in state.items()}


def _checked_optim_state(arrays: dict, meta: dict, optimizer) -> dict:
    """The optimiser's state_dict from meta and the optim/ arrays, validated by ``optimizer``."""
    info = meta.get("optim")
    if info is None:
        raise ValueError("no optimiser state")
    if not (isinstance(info, dict) and {"type", "lr", "steps", "n_state"} <= info.keys()):
        raise ValueError("optimiser meta must be an object with type, lr, steps and n_state")
    if info["type"] != type(optimizer).__name__:
        raise ValueError(f"{reprlib.repr(info['type'])} state, not {type(optimizer).__name__}")
    names = sorted(name for name in arrays if name.startswith("optim/"))
    if names != sorted(f"optim/{i}" for i in range(len(names))) or info["n_state"] != len(names):
        raise ValueError(f"n_state {reprlib.repr(info['n_state'])} and the arrays "
                         f"{reprlib.repr(names)} do not match")
    state = {"lr": info["lr"], "steps": info["steps"],
             "state": [arrays[f"optim/{i}"] for i in range(len(names))]}
    optimizer.validate_state_dict(state)
    return state


def _check_rng_state(meta: dict, rng: np.random.Generator) -> None:
    """Raises ValueError unless a copy of ``rng``'s bit generator accepts meta's rng state."""
    if "rng" not in meta:
        raise ValueError("no rng state")
    trial = copy.deepcopy(rng.bit_generator)
    try:
        trial.state = meta["rng"]
    except Exception as exc:  # numpy raises ValueError, TypeError, KeyError, OverflowError, ...
        raise ValueError(f"rng state does not fit {type(trial).__name__}: {type(exc).__name__}: "
                         f"{reprlib.repr(str(exc))}") from exc
