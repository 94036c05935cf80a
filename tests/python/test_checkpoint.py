"""Checkpoints (format, atomic write, corruption), optimiser state, the theta2 schedule, and the
train command: options, plots, and a resumed run equal to the uninterrupted one bit for bit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

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
                          "--hidden", "16", "--epochs", "4", "--batch-size", "10", "--no-progress",
                          "--out", str(tmp_path / "out")])
    assert summary["test_acc"] >= 0.9  # an easy two-class problem
