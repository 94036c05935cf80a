"""Data-parallel training: the loader's per-rank shares of each global batch, and two MPI ranks
(``mpirun -np 2``, this file as the worker) against single-process training on the same global
batches. MPI tests skip without mpirun and mpi4py, unless SALTATORY_REQUIRE_MPI=1 (scripts/test
sets it, since scripts/setup installs both), where their absence fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import saltatory as sal
from saltatory import data
from saltatory.bench.distributed import mpi_env, mpirun_command

STEPS, N_IN, CLASSES, SAMPLES = 20, 30, 5, 64


def _dataset() -> data.DenseDataset:
    rng = np.random.default_rng(7)
    spikes = (rng.random((SAMPLES, STEPS, N_IN)) < 0.15).astype(np.float32).transpose(1, 0, 2)
    return data.DenseDataset(np.ascontiguousarray(spikes), rng.integers(0, CLASSES, SAMPLES))


def _net() -> sal.Sequential:
    return sal.Sequential(sal.LIF(N_IN, 24, 8, seed=1), sal.RecurrentLIF(24, 16, 6, bias=True, seed=2),
                          sal.Readout(16, CLASSES, seed=3))


def _train(net, loader, epochs: int, ddp=None) -> list[float]:
    """Adam steps over ``epochs``; returns the global mean loss of every step."""
    opt = sal.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for epoch in range(epochs):
        for spikes, labels in loader.epoch(epoch):
            loss, grad = sal.losses.membrane_cross_entropy(net(spikes), labels)
            net.zero_grad()
            net.backward(grad)
            if ddp is not None:
                total = ddp.allreduce_gradients(len(labels))
                loss = ddp.sum([loss * len(labels)])[0] / total
            opt.step()
            losses.append(float(loss))
    return losses


def test_rank_shares_partition_every_global_batch() -> None:
    dataset = _dataset()
    single = data.Loader(dataset, 15, shuffle=True, seed=4, prefetch=0)
    ranks = [data.Loader(dataset, 15, shuffle=True, seed=4, prefetch=0, rank=r, world_size=3)
             for r in range(3)]
    assert [len(loader) for loader in ranks] == [len(single)] * 3 == [5] * 3
    for step, (whole, *shares) in enumerate(zip(single.epoch(1), *(r.epoch(1) for r in ranks))):
        sizes = [len(labels) for _, labels in shares]
        assert sum(sizes) == len(whole[1]) and max(sizes) - min(sizes) <= 1, (step, sizes)
        np.testing.assert_array_equal(np.concatenate([labels for _, labels in shares]), whole[1])
        dense = np.concatenate([s.to_dense() for s, _ in shares], axis=1)
        np.testing.assert_array_equal(dense, whole[0].to_dense())


def test_a_final_batch_smaller_than_the_ranks_is_skipped_everywhere() -> None:
    dataset = _dataset().subset(np.arange(33))  # batches of 16, 16 and 1
    assert len(data.Loader(dataset, 16)) == 3
    for rank in range(2):
        loader = data.Loader(dataset, 16, rank=rank, world_size=2, prefetch=0)
        assert len(loader) == 2 and [len(labels) for _, labels in loader] == [8, 8]
    with pytest.raises(ValueError, match=r"\[Loader\] need 0 <= rank < world_size <= batch_size"):
        data.Loader(dataset, 16, rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"\[Loader\]"):
        data.Loader(dataset, 4, rank=0, world_size=8)


def _mpi_command(ranks: int, *args: str) -> list[str]:
    if os.environ.get("SALTATORY_REQUIRE_MPI") != "1":
        if shutil.which("mpirun") is None:
            pytest.skip("no mpirun (apt-get install openmpi-bin libopenmpi-dev)")
        pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install mpi4py)")
    return mpirun_command(ranks) + [sys.executable, __file__, *args]


def _mpi_env() -> dict:
    return mpi_env(threads=1)


def test_two_ranks_match_single_process_training(tmp_path: Path) -> None:
    out = tmp_path / "rank0.npz"
    proc = subprocess.run(_mpi_command(2, "--worker", str(out)), env=_mpi_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = np.load(out)
    assert result["world_size"] == 2 and result["in_sync"].all()

    net = _net()
    expected = _train(net, data.Loader(_dataset(), 15, shuffle=True, seed=4, prefetch=0), epochs=2)
    np.testing.assert_allclose(result["losses"], expected, rtol=1e-5, atol=1e-6)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(result[name], p.data, rtol=0, atol=2e-5, err_msg=name)


def test_train_command_with_two_ranks_matches_one_process(tmp_path: Path) -> None:
    common = ["-m", "saltatory.train", "--dataset", "randman", "--epochs", "1", "--threads", "1",
              "--no-progress", "--no-plots", "--batch-size", "50"]
    cmd = _mpi_command(2)
    cmd = cmd[:cmd.index(sys.executable) + 1] + common + ["--distributed", "--out", str(tmp_path / "mpi")]
    proc = subprocess.run(cmd, env=_mpi_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("summary:") == 1 and "2 MPI ranks" in proc.stdout  # rank 0 alone prints
    single = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    mpi, one = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("mpi", "one"))
    assert mpi["ranks"] == 2 and one["ranks"] == 1
    (a,), (b,) = mpi["history"], one["history"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert a["train_acc"] == b["train_acc"] and a["test_acc"] == b["test_acc"]
    assert a["dropped_hidden"] == b["dropped_hidden"]


def test_train_command_resumes_on_every_rank(tmp_path: Path) -> None:
    cmd = _mpi_command(2)
    base = cmd[:cmd.index(sys.executable) + 1] + [
        "-m", "saltatory.train", "--dataset", "randman", "--threads", "1", "--no-progress", "--no-plots",
        "--batch-size", "50", "--distributed", "--checkpoint-dir", str(tmp_path / "ckpt"), "--out",
        str(tmp_path / "out")]
    first = subprocess.run(base + ["--epochs", "1"], env=_mpi_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run(base + ["--epochs", "2", "--resume"], env=_mpi_env(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed from" in second.stdout and "after epoch 1" in second.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2]


def test_an_error_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    proc = subprocess.run(_mpi_command(2, "--fail-on-rank-1"), env=_mpi_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in proc.stderr


def test_scaling_benchmark_smoke(tmp_path: Path) -> None:
    _mpi_command(2)  # skips (or fails) as the other MPI tests do
    from saltatory.bench import distributed as bench

    out = tmp_path / "scaling.json"
    assert bench.main(["--tiny", "--configs", "1x1,2x1", "--scaling", "weak", "--warmup", "0",
                       "--repeats", "2", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [(r["ranks"], r["global_batch"]) for r in records] == [(1, 4), (2, 8)]
    assert all(r["samples_per_s"] > 0 and r["in_sync"] and 0 <= r["allreduce_fraction"] < 1 for r in records)
    assert records[0]["speedup"] == 1.0


def _worker(out: str) -> None:
    from saltatory import distributed

    sal.set_num_threads(1)
    net = _net()
    for p in net.parameters():  # every rank but 0 starts elsewhere: the broadcast must fix it
        p.data += np.float32(distributed._mpi().COMM_WORLD.Get_rank())
    ddp = distributed.DataParallel(net)
    loader = data.Loader(_dataset(), 15, shuffle=True, seed=4, prefetch=0, rank=ddp.rank,
                         world_size=ddp.size)
    losses = _train(net, loader, epochs=2, ddp=ddp)
    in_sync = ddp.in_sync()
    if ddp.is_main:
        np.savez(out, losses=np.array(losses), world_size=ddp.size, in_sync=np.array([in_sync]),
                 **{name: p.data for name, p in net.named_parameters()})


def _fail_on_rank_1() -> None:
    """Rank 1 raises while rank 0 waits in an all-reduce: DataParallel must abort both."""
    from saltatory import distributed

    ddp = distributed.DataParallel(_net())
    if ddp.rank == 1:
        raise RuntimeError("rank 1 failed on purpose")
    ddp.allreduce_gradients(1)  # would wait forever without the abort


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1:2] == ["--fail-on-rank-1"]:
    _fail_on_rank_1()
