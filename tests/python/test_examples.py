"""The Python examples run end to end (tiny settings); those needing data skip when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "examples" / "python" / script), *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _accuracy(line: str) -> float:
    return float(line.split("test accuracy ")[1].split(",")[0])


def test_randman_example() -> None:
    lines = _run("randman.py", "--epochs", "2").splitlines()
    assert [line.split(":")[0] for line in lines] == ["sparse", "dense"]
    assert all(_accuracy(line) > 0.5 for line in lines), lines  # 10 classes: chance is 0.1


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_example() -> None:
    out = _run("fashion_mnist.py", "--epochs", "1", "--limit", "2000")
    assert _accuracy(out.splitlines()[-1]) > 0.4, out


@pytest.mark.skipif(not (SHARED / "nmnist-small").is_dir(), reason="../shared/data/nmnist-small absent")
def test_nmnist_example() -> None:
    out = _run("nmnist.py", "--root", str(SHARED / "nmnist-small"), "--epochs", "2", "--limit", "300")
    assert _accuracy(out.splitlines()[-1]) > 0.3, out


@pytest.mark.skipif(not (SHARED / "fsdd").is_dir(), reason="../shared/data/fsdd absent")
def test_fsdd_example(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    out = _run("fsdd.py", "--root", str(SHARED / "fsdd"), "--epochs", "2", "--channels", "32",
               "--out", str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["fsdd_test.h5", "fsdd_train.h5"]
    assert _accuracy(out.splitlines()[-1]) > 0.3, out


def test_shd_example(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    from saltatory.data import write_shd

    rng = np.random.default_rng(1)  # two classes: low or high channels
    labels = np.arange(240) % 2
    times = [np.sort(rng.uniform(0, 1.0, 2000)) for _ in labels]
    units = [rng.integers(0, 350, 2000) + 350 * y for y in labels]
    write_shd(tmp_path / "train.h5", times[:192], units[:192], labels[:192])
    write_shd(tmp_path / "test.h5", times[192:], units[192:], labels[192:])
    out = _run("shd.py", "--train", str(tmp_path / "train.h5"), "--test", str(tmp_path / "test.h5"),
               "--epochs", "3")
    assert _accuracy(out.splitlines()[-1]) >= 0.9, out
