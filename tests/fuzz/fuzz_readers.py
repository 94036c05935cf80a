"""libFuzzer (atheris) targets for the file readers: N-MNIST, SHD (HDF5) and checkpoints.

    python tests/fuzz/fuzz_readers.py TARGET CORPUS... [-max_total_time=60]

nmnist, shd, checkpoint: each input is written to a temporary file and read. A reader may refuse a
file only with ValueError (CheckpointError is one); any other exception, a crash or a hang is a finding.

checkpoint-content: each input drives edits of a valid checkpoint's arrays and JSON meta; the result
is signed with a valid checksum and loaded into a small net, Adam, schedule and rng. Findings: any
exception but CheckpointError, a refused load that changed anything, and a load after which a
forward, an optimiser step or a schedule step fails.
"""

import copy
import hashlib
import io
import json
import math
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import numpy as np

    import saltatory
    from saltatory.checkpoint import _HEADER, MAGIC, VERSION
    from saltatory.data import read_nmnist_events, read_shd

FOLDER = tempfile.mkdtemp(prefix="saltatory-fuzz-")
PATH = os.path.join(FOLDER, "input")


def _reader_input(reader):
    def one_input(data: bytes) -> None:
        with open(PATH, "wb") as f:
            f.write(data)
        try:
            reader(PATH)
        except ValueError:
            pass
    return one_input


# --- checkpoint-content -------------------------------------------------------------------------

SPECIAL = [None, True, 0, -1, 2**63, 10**400, 0.5, 1e39, math.inf, -math.inf, math.nan, "", "x", [], {}]
DTYPES = [np.float64, np.float16, np.int64, np.uint8, np.bool_, np.complex64, np.dtype("U2"), np.dtype("S3")]


def _training_state():
    net = saltatory.Sequential(saltatory.LIF(6, 8, 2, seed=1), saltatory.RecurrentLIF(8, 4, 2, seed=2),
                               saltatory.Readout(4, 3, seed=3))
    opt = saltatory.optim.Adam(net.parameters())
    opt.step()  # zero gradients: creates the moments
    schedule = saltatory.Theta2Schedule(net)
    schedule.step()
    return net, opt, schedule, np.random.default_rng(0)


def _snapshot(net, opt, schedule, rng):
    return ({name: (a.dtype, a.tobytes()) for name, a in net.state_dict().items()},
            [(layer.theta1, layer.theta2) for layer in net.layers if hasattr(layer, "theta2")],
            opt.lr, opt.steps, [v.tobytes() for v in opt.state_dict()["state"]],
            schedule.state_dict(), rng.bit_generator.state)


def _value(fdp, depth: int = 0):
    """A JSON value."""
    kind = fdp.ConsumeIntInRange(0, 5)
    if kind == 0:
        return copy.deepcopy(fdp.PickValueInList(SPECIAL))
    if kind == 1:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 10))
    if kind == 2:
        return fdp.ConsumeFloat()
    if kind == 3:
        return fdp.ConsumeUnicodeNoSurrogates(4)
    if kind == 4 and depth < 3:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {fdp.ConsumeUnicodeNoSurrogates(3): _value(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 3))}


def _mutate_meta(fdp, meta: dict) -> None:
    """Deletes or replaces a node below ``meta`` (six keys, four edits at most: never empty)."""
    node, key = meta, fdp.PickValueInList(sorted(meta))
    while isinstance(node[key], (dict, list)) and node[key] and fdp.ConsumeBool():
        node = node[key]
        key = fdp.PickValueInList(sorted(node) if isinstance(node, dict) else list(range(len(node))))
    if fdp.ConsumeBool():
        del node[key]
    else:
        node[key] = _value(fdp)


def _mutate_arrays(fdp, arrays: dict) -> None:
    """Deletes, adds, recasts or reshapes an array, or replaces its values by fuzzer bits."""
    name = fdp.PickValueInList(sorted(arrays) + ["net/layers.9.weight", "optim/8", "other"])
    value = arrays.get(name, np.zeros(4, np.float32))
    real = value if value.dtype.kind in "biuf" else np.zeros(value.shape, np.float32)
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        arrays.pop(name, None)
    elif how == 1:
        with np.errstate(all="ignore"):
            arrays[name] = real.astype(fdp.PickValueInList(DTYPES))
    elif how == 2:
        shape = [fdp.ConsumeIntInRange(0, 20) for _ in range(fdp.ConsumeIntInRange(0, 3))]
        arrays[name] = np.resize(real, shape)
    else:
        bits = fdp.ConsumeBytes(4 * real.size).ljust(4 * real.size, b"\0")
        arrays[name] = np.frombuffer(bits, np.float32).reshape(real.shape)


def _content_input():
    state = _training_state()
    saltatory.save_checkpoint(PATH, *state[:2], rng=state[3], schedule=state[2], epoch=1,
                              extra={"a": [1]})
    base = saltatory.read_checkpoint(PATH)
    x = saltatory.SpikeTensor.from_dense((np.random.default_rng(0).random((4, 2, 6)) < 0.5).astype(np.float32))

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        arrays, meta = dict(base[0]), copy.deepcopy(base[1])
        raw_meta = None
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            what = fdp.ConsumeIntInRange(0, 8)
            if what < 4:
                _mutate_meta(fdp, meta)
            elif what < 8:
                _mutate_arrays(fdp, arrays)
            else:
                raw_meta = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        buffer = io.BytesIO()
        raw_meta = json.dumps(meta).encode() if raw_meta is None else raw_meta
        np.savez(buffer, **arrays, meta=np.frombuffer(raw_meta, np.uint8))
        payload = buffer.getvalue()
        with open(PATH, "wb") as f:
            f.write(_HEADER.pack(MAGIC, VERSION, len(payload), hashlib.sha256(payload).digest()) + payload)
        before = _snapshot(*state)
        try:
            saltatory.load_checkpoint(PATH, *state[:2], rng=state[3], schedule=state[2])
        except saltatory.CheckpointError:
            if _snapshot(*state) != before:
                raise AssertionError("a refused checkpoint changed the training state") from None
            return
        state[0](x)  # what loads must be usable
        state[1].step()
        state[2].step()

    return one_input


TARGETS = {"nmnist": lambda: _reader_input(read_nmnist_events), "shd": lambda: _reader_input(read_shd),
           "checkpoint": lambda: _reader_input(saltatory.read_checkpoint),
           "checkpoint-content": _content_input}
TARGET = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in TARGETS else None

if __name__ == "__main__":
    if TARGET is None:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} CORPUS... [libFuzzer options]")
    atheris.Setup(sys.argv, TARGETS[TARGET]())
    atheris.Fuzz()
