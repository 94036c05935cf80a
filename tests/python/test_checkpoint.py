"""Checkpoints (format, atomic write, corruption), optimiser state, the theta2 schedule, and the
train command: options, plots, and a resumed run equal to the uninterrupted one bit for bit."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import saltatory as sal
from saltatory import train

X = sal.SpikeTensor.from_dense((np.random.default_rng(0).random((6, 3, 12)) < 0.3).astype(np.float32))
Y = np.array([0, 1, 2], np.int32)


def _net(seed: int = 1) -> sal.Sequential:
    return sal.Sequential(sal.LIF(12, 16, 6, seed=seed), sal.RecurrentLIF(16, 8, 4, seed=seed + 1),
                          sal.Readout(8, 3, seed=seed + 2))


def _step(net, opt, schedule=None) -> None:
    out = net(X)
    _, grad = sal.losses.membrane_cross_entropy(out, Y)
    net.zero_grad()
    net.backward(grad)
    opt.step()
    if schedule is not None:
        schedule.step()


@pytest.mark.parametrize("make_opt", [lambda p: sal.optim.Adam(p, lr=1e-2),
                                      lambda p: sal.optim.SGD(p, lr=0.1, momentum=0.9)])
def test_checkpoint_resume_is_bit_exact(tmp_path: Path, make_opt) -> None:
    straight, resumed = _net(), _net()
    opts = [make_opt(n.parameters()) for n in (straight, resumed)]
    schedules = [sal.Theta2Schedule(n) for n in (straight, resumed)]
    for _ in range(5):
        _step(straight, opts[0], schedules[0])
    for _ in range(2):
        _step(resumed, opts[1], schedules[1])
    rng = np.random.default_rng(7)
    rng.random(3)
    sal.save_checkpoint(tmp_path / "c.ckpt", resumed, opts[1], epoch=4, rng=rng, schedule=schedules[1],
                        extra={"note": "x"})

    fresh = _net(seed=99)  # different initial weights: all of them must be replaced
    fresh_opt = make_opt(fresh.parameters())
    fresh_schedule = sal.Theta2Schedule(fresh)
    fresh_rng = np.random.default_rng(0)
    meta = sal.load_checkpoint(tmp_path / "c.ckpt", fresh, fresh_opt, rng=fresh_rng, schedule=fresh_schedule)
    assert meta["epoch"] == 4 and meta["extra"] == {"note": "x"}
    assert fresh_rng.random() == rng.random()
    assert fresh.layers[0].theta2 == resumed.layers[0].theta2 and fresh_opt.steps == 2
    for _ in range(3):
        _step(fresh, fresh_opt, fresh_schedule)
    for (name, a), (_, b) in zip(straight.named_parameters(), fresh.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert fresh.layers[1].theta2 == straight.layers[1].theta2


def test_optimizer_state_dict_round_trip() -> None:
    net = _net()
    opt = sal.optim.Adam(net.parameters(), lr=3e-3)
    _step(net, opt)
    state = opt.state_dict()
    assert state["steps"] == 1 and len(state["state"]) == 2 * len(net.parameters())
    grads = [p.grad for p in net.parameters()]
    np.testing.assert_allclose(state["state"][0], 0.1 * grads[0].ravel(), rtol=1e-6)  # m = (1-b1) g
    other = sal.optim.Adam(net.parameters())
    other.load_state_dict(state)
    assert other.lr == pytest.approx(3e-3) and other.steps == 1
    with pytest.raises(ValueError, match="missing keys"):
        other.load_state_dict({"lr": 1.0})
    with pytest.raises(ValueError, match="not finite"):
        other.load_state_dict({**state, "state": [np.full_like(s, np.nan) for s in state["state"]]})
    before = other.state_dict()
    for bad in ({**state, "steps": math.inf}, {**state, "lr": 0.0}, {**state, "state": state["state"][1:]},
                {**state, "state": [s.astype(np.complex64) for s in state["state"]]}):
        with pytest.raises(ValueError, match=r"^\[Adam\.load_state_dict\]"):
            other.load_state_dict(bad)
    after = other.state_dict()
    assert (after["lr"], after["steps"]) == (before["lr"], before["steps"])
    assert all(np.array_equal(a, b) for a, b in zip(after["state"], before["state"]))


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "header":
        path.write_bytes(bytes(data[:30]))
    elif how == "flipped":
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
    elif how == "magic":
        path.write_bytes(b"NOTACKPT" + bytes(data[8:]))
    elif how == "version":
        data[8] = 9
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, message", [("truncated", "truncated"), ("header", "truncated"),
                                          ("flipped", "corrupted"), ("magic", "not a Saltatory"),
                                          ("version", "format version 9")])
def test_corrupted_checkpoints_raise_and_change_nothing(tmp_path: Path, how: str, message: str) -> None:
    net = _net()
    opt = sal.optim.Adam(net.parameters())
    _step(net, opt)
    path = tmp_path / "c.ckpt"
    sal.save_checkpoint(path, net, opt)
    _corrupt(path, how)
    target = _net(seed=5)
    before = target.state_dict()
    with pytest.raises(sal.CheckpointError, match=message):
        sal.load_checkpoint(path, target)
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_checkpoint_that_does_not_fit_restores_everything(tmp_path: Path) -> None:
    small = sal.Sequential(sal.LIF(12, 16, 6, seed=1), sal.Readout(16, 3, seed=2))
    sal.save_checkpoint(tmp_path / "small.ckpt", small)
    net = _net()
    before = net.state_dict()
    with pytest.raises(sal.CheckpointError, match="layers"):
        sal.load_checkpoint(tmp_path / "small.ckpt", net)
    other = sal.Sequential(sal.LIF(12, 16, 6, seed=1), sal.Readout(16, 4, seed=2))
    with pytest.raises(sal.CheckpointError, match="shape"):
        sal.load_checkpoint(tmp_path / "small.ckpt", other)
    with pytest.raises(sal.CheckpointError, match="no optimiser"):
        sal.load_checkpoint(tmp_path / "small.ckpt", small, sal.optim.Adam(small.parameters()))
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(FileNotFoundError):
        sal.load_checkpoint(tmp_path / "absent.ckpt", net)


def test_save_is_atomic(tmp_path: Path, monkeypatch) -> None:
    net = _net()
    path = tmp_path / "c.ckpt"
    sal.save_checkpoint(path, net, epoch=1)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # an interrupt while the new file is being written

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        sal.save_checkpoint(path, net, epoch=2)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["c.ckpt"]
    monkeypatch.undo()
    assert sal.read_checkpoint(path)[1]["epoch"] == 1


def test_theta2_schedule() -> None:
    net = _net()
    schedule = sal.Theta2Schedule(net, start=-100.0)
    assert [layer.theta2 for layer in schedule.layers] == [-100.0, -100.0]
    schedule.step()
    assert schedule.layers[0].theta2 == pytest.approx(-49.55)
    for _ in range(40):
        schedule.step()
    assert schedule.layers[0].theta2 == pytest.approx(0.9)
    with pytest.raises(ValueError, match="rate"):
        sal.Theta2Schedule(net, rate=0.0)
    state = schedule.state_dict()
    for bad in ({**state, "rate": 2.0}, {**state, "theta2": [0.5]}, {**state, "targets": [math.inf, 0.9]},
                {**state, "steps": -1}, [1, 2]):
        with pytest.raises(ValueError, match=r"^\[Theta2Schedule\.load_state_dict\]"):
            schedule.load_state_dict(bad)
    assert schedule.state_dict() == state


# --- checkpoints with a valid checksum but hostile content ---------------------------------------

DELETE = object()


def _sign(path: Path, payload: bytes, version: int = sal.checkpoint.VERSION) -> None:
    """Writes ``payload`` under a valid header: magic, version, length and SHA-256."""
    header = struct.pack("<8sIQ32s", sal.checkpoint.MAGIC, version, len(payload),
                         hashlib.sha256(payload).digest())
    path.write_bytes(header + payload)


def _payload(arrays: dict, meta=DELETE) -> bytes:
    """An .npz of ``arrays`` and ``meta`` (any JSON value, raw bytes, or DELETE for none)."""
    if meta is not DELETE:
        raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
        arrays = {**arrays, "meta": np.frombuffer(raw, np.uint8)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def forge(path: Path, arrays: dict, meta=DELETE) -> None:
    """A checkpoint of ``arrays`` and ``meta`` (as for ``_payload``) with a valid checksum."""
    _sign(path, _payload(arrays, meta))


def _training_state(seed: int):
    """A net, Adam, schedule and rng, one step in."""
    net = _net(seed)
    opt = sal.optim.Adam(net.parameters(), lr=1e-2)
    schedule = sal.Theta2Schedule(net)
    _step(net, opt, schedule)
    rng = np.random.default_rng(seed)
    rng.random(3)
    return net, opt, schedule, rng


def _snapshot(net, opt=None, schedule=None, rng=None):
    """Everything a load may change, bit for bit, in a form that compares with ==."""
    return ({name: (a.dtype, a.tobytes()) for name, a in net.state_dict().items()},
            [(layer.theta1, layer.theta2) for layer in net.layers if hasattr(layer, "theta2")],
            None if opt is None else (opt.lr, opt.steps, [v.tobytes() for v in opt.state_dict()["state"]]),
            None if schedule is None else schedule.state_dict(),
            None if rng is None else rng.bit_generator.state)


@pytest.fixture(scope="module")
def valid_content(tmp_path_factory) -> tuple[dict, dict]:
    """(arrays, meta) of a valid checkpoint of a net, Adam, schedule and rng, two steps in."""
    net, opt, schedule, rng = _training_state(1)
    _step(net, opt, schedule)
    path = tmp_path_factory.mktemp("valid") / "c.ckpt"
    sal.save_checkpoint(path, net, opt, epoch=2, rng=rng, schedule=schedule, extra={"note": "x"})
    return sal.read_checkpoint(path)


W0 = "net/layers.0.weight"

# Each case: changes to {"arrays": ..., "meta": ...} (path -> new value, DELETE, or a function of the
# old value), and what the error must say.
HOSTILE = {
    "threshold a version-1 pair": ({("meta", "thresholds", 0): [1.0, 0.9]},
                                   r"layer 0 is a LIF.*theta2, a finite number, got \[1\.0, 0\.9\]"),
    "threshold a list": ({("meta", "thresholds", 1): [0.9]}, "layer 1 is a RecurrentLIF"),
    "thresholds for a readout": ({("meta", "thresholds", 2): 0.9}, "Readout: .* must be null"),
    "theta2 beyond float32": ({("meta", "thresholds", 0): 1e39}, "finite"),
    "theta2 a huge int": ({("meta", "thresholds", 0): 10**400}, "finite"),
    "theta2 a string": ({("meta", "thresholds", 0): "0.9"}, "finite"),
    "theta2 a bool": ({("meta", "thresholds", 0): False}, "finite"),
    "theta1 beyond float32": ({("arrays", "net/layers.0.theta1"): lambda a: a.astype(np.float64) * 1e39},
                              "not finite"),
    "theta1 NaN": ({("arrays", "net/layers.1.theta1"): lambda a: a * np.nan}, "not finite"),
    "theta1 of the wrong size": ({("arrays", "net/layers.0.theta1"): lambda a: a[:-1]}, "shape"),
    "thresholds missing": ({("meta", "thresholds"): DELETE}, "thresholds must be a list, .* got None"),
    "thresholds an object": ({("meta", "thresholds"): {"0": [1.0, 0.9]}}, "thresholds must be a list"),
    "infinite optimiser steps": ({("meta", "optim", "steps"): math.inf}, r"steps must be an integer.*inf"),
    "fractional optimiser steps": ({("meta", "optim", "steps"): 2.5}, "steps must be an integer"),
    "negative optimiser steps": ({("meta", "optim", "steps"): -1}, "steps must be an integer"),
    "optimiser steps beyond int64": ({("meta", "optim", "steps"): 2**70}, "steps must be an integer"),
    "optimiser steps zero with state": ({("meta", "optim", "steps"): 0}, "list of 0 vectors"),
    "optimiser lr infinite": ({("meta", "optim", "lr"): math.inf}, "lr must be"),
    "optimiser lr zero in float32": ({("meta", "optim", "lr"): 1e-50}, "lr must be"),
    "optimiser lr a string": ({("meta", "optim", "lr"): "0.01"}, "lr must be"),
    "optimiser lr a list": ({("meta", "optim", "lr"): [0.01, 1.0]}, "lr must be"),
    "optimiser type": ({("meta", "optim", "type"): "SGD"}, "'SGD' state, not Adam"),
    "optimiser meta a list": ({("meta", "optim"): [1, 2]}, "optimiser meta must be"),
    "optimiser meta missing": ({("meta", "optim"): DELETE}, "no optimiser state"),
    "optimiser n_state wrong": ({("meta", "optim", "n_state"): 99}, "do not match"),
    "optimiser vector missing": ({("arrays", "optim/7"): DELETE, ("meta", "optim", "n_state"): 7},
                                 "list of 8 vectors"),
    "optimiser vector renamed": ({("arrays", "optim/7"): DELETE, ("arrays", "optim/9"): np.ones(1)},
                                 "do not match"),
    "optimiser vector too short": ({("arrays", "optim/0"): lambda v: v[:-1]}, r"state vector 0 .*shape"),
    "optimiser vector 2-D": ({("arrays", "optim/2"): lambda v: v[None]}, "state vector 2"),
    "optimiser vector complex": ({("arrays", "optim/1"): lambda v: v + 1j}, "state vector 1 must be a real"),
    "optimiser vector beyond float32": ({("arrays", "optim/1"): lambda v: v.astype(np.float64) + 1e39},
                                        "not finite"),
    "optimiser vector NaN": ({("arrays", "optim/3"): lambda v: v * np.nan}, "not finite"),
    "weight complex": ({("arrays", W0): lambda v: v + 1j}, "complex64 array"),
    "weight beyond float32": ({("arrays", W0): lambda v: v.astype(np.float64) * 1e39}, "not finite"),
    "weight infinite": ({("arrays", W0): lambda v: np.full_like(v, np.inf)}, "not finite"),
    "weight strings": ({("arrays", W0): lambda v: v.astype("U4")}, "<U4 array"),
    "weight bools": ({("arrays", W0): lambda v: v > 0}, "bool array"),
    "weight transposed": ({("arrays", W0): lambda v: v.T}, "shape"),
    "weight missing": ({("arrays", W0): DELETE}, "missing"),
    "unexpected network array": ({("arrays", "net/layers.3.weight"): np.zeros(2, np.float32)}, "unexpected"),
    "alpha above 1": ({("arrays", "net/layers.1.alpha"): lambda v: v + 1.0}, r"\[0, 1\]"),
    "alpha negative": ({("arrays", "net/layers.2.alpha"): lambda v: -v}, r"\[0, 1\]"),
    "schedule rate 0": ({("meta", "schedule", "rate"): 0.0}, r"rate must lie in \(0, 1\]"),
    "schedule rate above 1": ({("meta", "schedule", "rate"): 1.5}, "rate must lie"),
    "schedule rate NaN": ({("meta", "schedule", "rate"): math.nan}, "finite"),
    "schedule steps negative": ({("meta", "schedule", "steps"): -3}, "steps must be an integer"),
    "schedule steps a float": ({("meta", "schedule", "steps"): 1.0}, "steps must be an integer"),
    "schedule theta2 too short": ({("meta", "schedule", "theta2"): [0.5]}, "lists of 2"),
    "schedule target a string": ({("meta", "schedule", "targets", 0): "0.9"}, "finite"),
    "schedule theta2 NaN": ({("meta", "schedule", "theta2", 1): math.nan}, "finite"),
    "schedule a list": ({("meta", "schedule"): [0.5]}, "must be a dict"),
    "schedule missing": ({("meta", "schedule"): DELETE}, "no schedule state"),
    "rng of another generator": ({("meta", "rng", "bit_generator"): "MT19937"}, "rng state"),
    "rng state beyond uint128": ({("meta", "rng", "state", "state"): 2**200}, "rng state"),
    "rng state negative": ({("meta", "rng", "state", "inc"): -1}, "rng state"),
    "rng state a list": ({("meta", "rng"): [1, 2]}, "rng state"),
    "rng missing": ({("meta", "rng"): DELETE}, "no rng state"),
    "epoch a string": ({("meta", "epoch"): "2"}, "integer epoch"),
    "epoch a bool": ({("meta", "epoch"): True}, "integer epoch"),
    "extra a list": ({("meta", "extra"): [1]}, "object extra"),
    "meta a JSON list": ({("meta",): [1, 2, 3]}, "meta is a list"),
    "meta a JSON string": ({("meta",): "meta"}, "meta is a str"),
    "meta not JSON": ({("meta",): b"{not json"}, "unreadable payload"),
    "meta not UTF-8": ({("meta",): b"\xff\xfe{}"}, "unreadable payload"),
    "meta nested too deep": ({("meta",): b"[" * 100_000}, "unreadable payload"),
    "meta missing": ({("meta",): DELETE}, "unreadable payload"),
}


def _apply(root: dict, changes: dict) -> None:
    for path, value in changes.items():
        node = root
        for key in path[:-1]:
            node = node[key]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value(node[path[-1]]) if callable(value) else value


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_content_raises_and_changes_nothing(tmp_path: Path, valid_content, case: str) -> None:
    changes, message = HOSTILE[case]
    root = copy.deepcopy({"arrays": valid_content[0], "meta": valid_content[1]})
    _apply(root, changes)
    forge(tmp_path / "c.ckpt", root["arrays"], root.get("meta", DELETE))
    target = _training_state(5)
    before = _snapshot(*target)
    with pytest.raises(sal.CheckpointError, match=message):
        sal.load_checkpoint(tmp_path / "c.ckpt", *target[:2], schedule=target[2], rng=target[3])
    assert _snapshot(*target) == before
    forge(tmp_path / "valid.ckpt", *valid_content)  # the forger itself makes loadable files
    sal.load_checkpoint(tmp_path / "valid.ckpt", *target[:2], schedule=target[2], rng=target[3])
    assert _snapshot(*target) != before


def _encrypted(payload: bytes) -> bytes:
    """``payload`` with every zip entry flagged as encrypted (general-purpose flag bit 0)."""
    data = bytearray(payload)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        start = data.find(signature)
        while start >= 0:
            data[start + offset] |= 1
            start = data.find(signature, start + 1)
    return bytes(data)


def _npy() -> bytes:
    """A payload that is a single .npy array, not an archive."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def _with_raw_member(payload: bytes) -> bytes:
    """``payload`` plus a zip entry that is not an .npy array (np.load returns its bytes)."""
    buffer = io.BytesIO(payload)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("net/bogus", b"raw bytes")
    return buffer.getvalue()


@pytest.mark.parametrize("make, cause", [
    (lambda arrays, meta: b"", "EOFError"),
    (lambda arrays, meta: b"not a zip archive", "ValueError"),
    (lambda arrays, meta: b"PK\x03\x04" + bytes(40), "BadZipFile"),
    (lambda arrays, meta: _payload(arrays)[:-30], "BadZipFile"),  # a cut-off central directory
    (lambda arrays, meta: _encrypted(_payload(arrays, meta)), "RuntimeError"),
    (lambda arrays, meta: _with_raw_member(_payload(arrays, meta)), None),
    (lambda arrays, meta: _npy(), "TypeError")],
    ids=["empty", "not a zip", "zip header only", "cut-off zip", "encrypted", "raw member", "npy"])
def test_unparsable_payload_raises_checkpoint_error(tmp_path: Path, valid_content, make, cause) -> None:
    _sign(tmp_path / "c.ckpt", make(*valid_content))
    net = _net(5)
    before = _snapshot(net)
    with pytest.raises(sal.CheckpointError, match="read_checkpoint: .*(unreadable|not arrays)") as error:
        sal.load_checkpoint(tmp_path / "c.ckpt", net)
    cause_seen = error.value.__cause__ and type(error.value.__cause__).__name__
    assert cause_seen == cause  # what the catch-all turned into a CheckpointError
    assert _snapshot(net) == before


def test_checkpoint_of_other_layer_kinds_is_refused(tmp_path: Path) -> None:
    lif_readout = sal.Sequential(sal.LIF(12, 16, 6, seed=1), sal.Readout(16, 16, seed=2))
    lif_lif = sal.Sequential(sal.LIF(12, 16, 6, seed=3), sal.LIF(16, 16, 6, seed=4))
    for source, target, message in ((lif_readout, lif_lif, "layer 1 is a LIF"),
                                    (lif_lif, lif_readout, "layer 1 is a Readout")):
        sal.save_checkpoint(tmp_path / "c.ckpt", source)
        before = _snapshot(target)
        with pytest.raises(sal.CheckpointError, match=message):
            sal.load_checkpoint(tmp_path / "c.ckpt", target)
        assert _snapshot(target) == before


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([10**400, 2**63]) | st.floats()
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
DTYPES = st.sampled_from([np.float64, np.float16, np.int64, np.uint8, np.bool_, np.complex64, "U2"])
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 1e39, 2.0, -1.0, 0.0])


def _mutate_meta(data, meta: dict) -> None:
    """Deletes or replaces a random node below ``meta`` (six keys: it stays a non-empty dict)."""
    node, key = meta, data.draw(st.sampled_from(sorted(meta)))
    while isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
        node = node[key]
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
    if data.draw(st.booleans()):
        del node[key]
    else:
        node[key] = data.draw(JSON | SPECIAL.map(float))


def _mutate_arrays(data, arrays: dict) -> None:
    """Deletes, adds, recasts, reshapes an array or puts a special value in it."""
    name = data.draw(st.sampled_from(sorted(arrays) + ["net/layers.9.weight", "optim/8"]))
    value = arrays.get(name, np.zeros(4, np.float32))
    real = value if value.dtype.kind in "biuf" else np.zeros(value.shape)  # a source for the casts
    how = data.draw(st.sampled_from(["delete", "dtype", "shape", "special"]))
    if how == "delete":
        arrays.pop(name, None)
    elif how == "dtype":
        with np.errstate(invalid="ignore", over="ignore"):
            arrays[name] = real.astype(data.draw(DTYPES))
    elif how == "shape":
        arrays[name] = data.draw(st.sampled_from([value.ravel()[:-1], value[None], value.ravel(),
                                                  np.concatenate([value.ravel(), value.ravel()[:1]])]))
    elif real.size:
        arrays[name] = real.astype(np.float64)
        arrays[name].flat[data.draw(st.integers(0, real.size - 1))] = data.draw(SPECIAL)


@settings(max_examples=int(os.environ.get("SALTATORY_FUZZ_EXAMPLES", 150)), deadline=None, derandomize=True)
@given(data=st.data())
def test_mutated_content_loads_or_changes_nothing(tmp_path_factory, valid_content, data) -> None:
    arrays, meta = dict(valid_content[0]), copy.deepcopy(valid_content[1])
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            _mutate_meta(data, meta)
        else:
            _mutate_arrays(data, arrays)
    path = tmp_path_factory.getbasetemp() / "mutated.ckpt"
    forge(path, arrays, meta)
    target = _training_state(5)
    before = _snapshot(*target)
    try:
        sal.load_checkpoint(path, *target[:2], schedule=target[2], rng=target[3])
    except sal.CheckpointError:
        assert _snapshot(*target) == before
    else:  # what loads must be usable
        target[0](X)
        target[1].step()
        target[2].step()


# --- the train command --------------------------------------------------------------------------

def _run(tmp_path: Path, *extra: str) -> dict:
    return train.main(["--dataset", "randman", "--steps", "20", "--hidden", "32", "--batch-size", "100",
                       "--train-samples", "400", "--test-samples", "100", "--no-progress",
                       "--out", str(tmp_path / "out"), *extra])


def test_train_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    straight = _run(tmp_path, "--epochs", "3", "--theta2-schedule", "--checkpoint-dir", str(tmp_path / "a"),
                    "--no-plots")
    _run(tmp_path, "--epochs", "1", "--theta2-schedule", "--checkpoint-dir", str(tmp_path / "b"), "--no-plots")
    resumed = _run(tmp_path, "--epochs", "3", "--theta2-schedule", "--checkpoint-dir", str(tmp_path / "b"),
                   "--resume")
    a, meta_a = sal.read_checkpoint(tmp_path / "a" / "last.ckpt")
    b, meta_b = sal.read_checkpoint(tmp_path / "b" / "last.ckpt")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert meta_a["extra"]["trace"] == meta_b["extra"]["trace"]
    assert [h["test_acc"] for h in straight["history"]] == [h["test_acc"] for h in resumed["history"]]
    for plot in ("curves.png", "activity.png", "raster.png"):
        assert (tmp_path / "out" / plot).stat().st_size > 1000
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["epochs"] == 3 and len(summary["history"]) == 3
    assert all(len(h["dropped_hidden"]) == 1 for h in summary["history"])  # one spiking layer


def test_train_resume_with_a_cosine_schedule_and_learned_neurons(tmp_path: Path, monkeypatch) -> None:
    """Epoch e of E trains at lr (1 + cos(pi e / E)) / 2 whether or not the run was interrupted and
    resumed mid-schedule, and the learned decays and adaptation travel in the checkpoint."""
    options = ["--epochs", "3", "--lr-schedule", "cosine", "--learn-neuron", "--neuron", "adlif",
               "--recurrent", "--no-plots"]
    straight = _run(tmp_path, *options, "--checkpoint-dir", str(tmp_path / "a"))
    one_epoch = train.train_epoch

    def interrupted(net, opt, loader, epoch, *args, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return one_epoch(net, opt, loader, epoch, *args, **kwargs)

    with monkeypatch.context() as patch:  # Ctrl-C during epoch 2 keeps the checkpoint of epoch 1
        patch.setattr(train, "train_epoch", interrupted)
        with pytest.raises(SystemExit, match="interrupted during epoch 2"):
            _run(tmp_path, *options, "--checkpoint-dir", str(tmp_path / "b"))
    resumed = _run(tmp_path, *options, "--checkpoint-dir", str(tmp_path / "b"), "--resume")
    expected = [np.float32(5e-3 * 0.5 * (1 + np.cos(np.pi * e / 3))) for e in range(3)]
    assert [np.float32(h["lr"]) for h in straight["history"]] == expected
    assert [h["lr"] for h in resumed["history"]] == [h["lr"] for h in straight["history"]]
    assert [h["test_acc"] for h in resumed["history"]] == [h["test_acc"] for h in straight["history"]]
    a, _ = sal.read_checkpoint(tmp_path / "a" / "last.ckpt")
    b, _ = sal.read_checkpoint(tmp_path / "b" / "last.ckpt")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for name in ("alpha", "rho", "b", "a"):  # learned: no longer one value for every neuron
        assert np.ptp(a[f"net/layers.0.{name}"]) > 0, name
    with pytest.raises(SystemExit, match="was made with"):  # fixed neurons cannot resume it
        _run(tmp_path, *[o for o in options if o != "--learn-neuron"], "--checkpoint-dir",
             str(tmp_path / "b"), "--resume")
    for other in (["--epochs", "4"], ["--lr", "0.01"], ["--lr-schedule", "constant"]):
        with pytest.raises(SystemExit, match="learning-rate schedule"):  # another schedule
            _run(tmp_path, *options, *other, "--checkpoint-dir", str(tmp_path / "b"), "--resume")


def test_train_resumes_a_checkpoint_from_before_the_neuron_options(tmp_path: Path) -> None:
    """A checkpoint whose architecture predates --neuron and --learn-neuron, and whose extra has
    no learning-rate schedule, resumes as the LIF with fixed neurons and a constant rate."""
    _run(tmp_path, "--epochs", "1", "--checkpoint-dir", str(tmp_path / "c"), "--no-plots")
    arrays, meta = sal.read_checkpoint(tmp_path / "c" / "last.ckpt")
    del meta["extra"]["architecture"]["neuron"], meta["extra"]["architecture"]["learn_neuron"]
    del meta["extra"]["lr_schedule"]
    forge(tmp_path / "c" / "last.ckpt", arrays, meta)
    resumed = _run(tmp_path, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "c"), "--resume",
                   "--no-plots")
    assert len(resumed["history"]) == 2


def test_train_refuses_a_checkpoint_whose_extra_is_not_an_object(tmp_path: Path) -> None:
    args = train.parse_args(["--dataset", "randman", "--steps", "20", "--hidden", "32"])
    (tmp_path / "c").mkdir()
    sal.save_checkpoint(tmp_path / "c" / "last.ckpt", train.build_network(args, 100, 10), extra=[1])
    with pytest.raises(SystemExit, match="cannot resume: .*object extra"):
        _run(tmp_path, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "c"), "--resume", "--no-plots")


def test_train_refuses_a_checkpoint_of_another_network(tmp_path: Path) -> None:
    _run(tmp_path, "--epochs", "1", "--checkpoint-dir", str(tmp_path / "c"), "--no-plots")
    with pytest.raises(SystemExit, match="was made with"):
        _run(tmp_path, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "c"), "--resume",
             "--mode", "dense", "--no-plots")


def test_train_options(tmp_path: Path) -> None:
    summary = _run(tmp_path, "--epochs", "1", "--recurrent", "--coupling", "delayed", "--capacity", "4",
                   "--no-plots")
    assert summary["args"]["recurrent"] and 0.0 <= summary["test_acc"] <= 1.0
    with pytest.raises(SystemExit):
        train.main(["--dataset", "nmnist-dir"])  # needs --data
    with pytest.raises(SystemExit):
        train.main(["--resume"])  # needs --checkpoint-dir
    with pytest.raises(SystemExit):
        train.main(["--device", "tpu"])


def test_train_on_event_files(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    # two classes: events in channels 0-9 or 10-19, over 0.2 s
    times = [np.sort(rng.uniform(0, 0.2, 40)) for _ in range(60)]
    labels = np.arange(60) % 2
    units = [rng.integers(0, 10, 40) + 10 * y for y in labels]
    for split, part in (("train", slice(0, 40)), ("test", slice(40, 60))):
        sal.data.write_shd(tmp_path / f"toy_{split}.h5", times[part], units[part], labels[part], n_units=20)
    summary = train.main(["--dataset", "shd-file", "--data", str(tmp_path / "toy_train.h5"), "--steps", "20",
                          "--hidden", "16", "--epochs", "8", "--batch-size", "10", "--no-progress",
                          "--out", str(tmp_path / "out")])
    assert summary["test_acc"] >= 0.9  # an easy two-class problem


def test_a_version_1_checkpoint_loads_its_thresholds_per_neuron(tmp_path: Path) -> None:
    """Version 1 kept [theta1, theta2] per spiking layer in meta; theta1 is per neuron now."""
    net = _net(0)
    sal.save_checkpoint(tmp_path / "c.ckpt", net, epoch=3)
    arrays, meta = sal.read_checkpoint(tmp_path / "c.ckpt")
    spiking = [i for i, layer in enumerate(net.layers) if hasattr(layer, "theta2")]
    for i in spiking:
        del arrays[f"net/layers.{i}.theta1"]
    meta["thresholds"] = [[0.8 + 0.1 * i, 0.5] if i in spiking else None for i in range(len(net.layers))]
    _sign(tmp_path / "v1.ckpt", _payload(arrays, meta), version=1)
    target = _net(1)
    assert sal.load_checkpoint(tmp_path / "v1.ckpt", target)["epoch"] == 3
    for i in spiking:
        np.testing.assert_array_equal(target.layers[i].theta1, np.float32(0.8 + 0.1 * i))
        assert target.layers[i].theta2 == 0.5
    _sign(tmp_path / "v3.ckpt", _payload(arrays, meta), version=3)
    with pytest.raises(sal.CheckpointError, match="format version 3; this Saltatory reads versions 1 and 2"):
        sal.load_checkpoint(tmp_path / "v3.ckpt", target)

