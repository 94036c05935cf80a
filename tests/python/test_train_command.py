"""The train command under hostile use: every numeric option range-checked at parse time, an
unwritable --out or --checkpoint-dir found before training, SIGTERM handled as Ctrl-C, temporaries
of a killed save removed at the next save, and --resume refusing an unusable checkpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import saltatory as sal
from saltatory import train

TINY = ["--dataset", "randman", "--steps", "20", "--hidden", "16", "--batch-size", "64",
        "--train-samples", "64", "--test-samples", "32", "--no-progress", "--no-plots"]
INT_MAX = 2**31 - 1


def _run(tmp_path: Path, *extra: str) -> dict:
    return train.main([*TINY, "--out", str(tmp_path / "out"), *extra])


# --- arguments ----------------------------------------------------------------------------------

NOT_A_WHOLE_NUMBER = ["nan", "inf", "-inf", "1e400", "2**64", "abc", "1.5", "", "0x10"]
COUNT = ["-5", str(INT_MAX + 1), str(10**12), *NOT_A_WHOLE_NUMBER]  # 0 allowed (documented meaning)
POSITIVE_COUNT = ["0", *COUNT]
BAD_VALUES = {
    "--hidden": POSITIVE_COUNT, "--channels": POSITIVE_COUNT, "--epochs": POSITIVE_COUNT,
    "--batch-size": POSITIVE_COUNT,
    "--capacity": COUNT, "--input-capacity": COUNT, "--steps": COUNT, "--train-samples": COUNT,
    "--test-samples": COUNT, "--threads": COUNT,
    "--recompute-segment": [*COUNT, "Auto", "-0.5"],
    "--seed": ["-1", str(2**64), "2**64", str(10**30), *NOT_A_WHOLE_NUMBER],
    "--activity": ["-5", "0", "-0.0", "1.0001", "5", "nan", "inf", "-inf", "1e400", "abc", ""],
    "--lr": ["-5", "0", "-1e-9", "nan", "inf", "-inf", "1e400", "abc", ""],
    "--bin-ms": ["-5", "-1e-9", "nan", "inf", "-inf", "1e400", "abc", ""],
}
CASES = [(option, value) for option, values in BAD_VALUES.items() for value in values]


@pytest.mark.parametrize(("option", "value"), CASES)
def test_a_bad_value_stops_the_command_naming_the_option(tmp_path: Path, capsys, option: str,
                                                         value: str) -> None:
    with pytest.raises(SystemExit) as stop:
        _run(tmp_path, f"{option}={value}")
    assert stop.value.code == 2
    assert f"argument {option}: must be " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_exits_with_status_2_on_a_bad_value() -> None:
    result = subprocess.run([sys.executable, "-m", "saltatory.train", "--train-samples=-5"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "argument --train-samples: must be a whole number from 0 to 2147483647, got '-5'" in \
        result.stderr


@pytest.mark.parametrize(("option", "value", "parsed"), [
    ("--train-samples", "0", 0), ("--test-samples", "0", 0), ("--threads", "0", 0),
    ("--steps", "0", 50), ("--capacity", "0", 0), ("--bin-ms", "0", None), ("--activity", "1", 1.0),
    ("--seed", "0", 0),
    ("--seed", str(2**64 - 1), 2**64 - 1), ("--recompute-segment", "auto", "auto"),
    ("--recompute-segment", "7", 7), ("--recompute-segment", str(INT_MAX), INT_MAX),  # S >= T acts as T
])
def test_a_value_at_the_edge_of_the_range_is_accepted(option: str, value: str, parsed) -> None:
    args = train.parse_args(["--dataset", "randman", "--steps", "20", f"{option}={value}"])
    assert getattr(args, option[2:].replace("-", "_")) == parsed


def test_the_largest_seed_and_segment_train(tmp_path: Path) -> None:
    # the layers' seeds are seed + i (mod 2^64); the core stores every membrane when S >= T
    summary = _run(tmp_path, "--seed", str(2**64 - 1), "--hidden", "8", "8", "--epochs", "1",
                   "--recompute-segment", str(INT_MAX))
    assert len(summary["history"]) == 1


@pytest.mark.parametrize(("neuron", "learned"), [
    ("lif", {"alpha"}), ("cuba", {"alpha", "alpha_syn"}), ("alif", {"alpha", "rho", "b"}),
    ("adlif", {"alpha", "rho", "b", "a"})])
def test_learn_neuron_makes_the_decays_and_adaptation_parameters(neuron: str, learned: set) -> None:
    def hidden_parameters(*extra: str) -> set:
        args = train.parse_args(["--dataset", "randman", "--neuron", neuron, "--recurrent", *extra])
        names = [name for name, _ in train.build_network(args, 10, 3).named_parameters()]
        return {name.split(".")[-1] for name in names if name.startswith("layers.0.")}

    assert hidden_parameters() == {"weight", "weight_rec"}
    assert hidden_parameters("--learn-neuron") == {"weight", "weight_rec", *learned}  # no theta1


def test_a_constant_learning_rate_stays(tmp_path: Path) -> None:
    summary = _run(tmp_path, "--epochs", "2", "--lr", "0.01")
    assert [h["lr"] for h in summary["history"]] == [np.float32(0.01)] * 2


# --- output folders -----------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--out", "--checkpoint-dir"])
@pytest.mark.parametrize("where", ["a file", "under a file", "in /proc"])
def test_an_unwritable_folder_stops_the_run_before_training(tmp_path: Path, capsys, option: str,
                                                            where: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    folder = {"a file": blocker, "under a file": blocker / "out",
              "in /proc": Path("/proc/saltatory/out")}[where]
    with pytest.raises(SystemExit, match=f"{option} {re.escape(str(folder))} is not a writable folder: "):
        _run(tmp_path, option, str(folder), "--epochs", "1")
    assert capsys.readouterr().out == ""  # not even the banner: no epoch ran
    assert blocker.read_text() == "not a folder"


def test_the_folders_are_made_and_left_clean(tmp_path: Path) -> None:
    _run(tmp_path, "--checkpoint-dir", str(tmp_path / "a" / "ckpt"), "--epochs", "1")
    assert sorted(os.listdir(tmp_path / "a" / "ckpt")) == ["last.ckpt"]
    assert sorted(os.listdir(tmp_path / "out")) == ["summary.json"]  # no write-test file left


# --- signals and checkpoints --------------------------------------------------------------------

def test_sigterm_keeps_the_checkpoint_and_stops_like_ctrl_c(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-u", "-m", "saltatory.train", *TINY, "--out",
                             str(tmp_path / "out"), "--checkpoint-dir", str(ckpt), "--epochs", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("epoch 1:"):  # printed once epoch 1's checkpoint is saved
                break
        else:
            pytest.fail(f"the run ended before epoch 1: {proc.communicate()[1]}")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert re.search(rf"interrupted during epoch \d+; resume with --resume --checkpoint-dir "
                     rf"{re.escape(str(ckpt))}", err)
    assert os.listdir(ckpt) == ["last.ckpt"]
    epoch = sal.read_checkpoint(ckpt / "last.ckpt")[1]["epoch"]
    assert epoch >= 1
    resumed = _run(tmp_path, "--checkpoint-dir", str(ckpt), "--resume", "--epochs", str(epoch + 1))
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, epoch + 2))


def test_a_stale_temporary_is_removed_at_the_next_save(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    stale = ckpt / ".last.ckpt.tmp-99999999"  # above any pid_max: its process is gone
    live = ckpt / ".last.ckpt.tmp-1"  # pid 1 runs: it may be saving
    other = ckpt / ".other.ckpt.tmp-99999999"  # not ours
    for path in (stale, live, other):
        path.write_bytes(b"half a checkpoint")
    _run(tmp_path, "--checkpoint-dir", str(ckpt), "--epochs", "1")
    assert not stale.exists() and live.exists() and other.exists()
    assert sal.read_checkpoint(ckpt / "last.ckpt")[1]["epoch"] == 1


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("good")
    train.main([*TINY, "--out", str(folder / "out"), "--checkpoint-dir", str(folder), "--epochs", "1"])
    return (folder / "last.ckpt").read_bytes()


def _flip(data: bytes) -> bytes:
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


BROKEN = {  # how last.ckpt is broken: (make it, what the error says)
    "corrupt": (lambda path, good: path.write_bytes(_flip(good)), "corrupted"),
    "truncated": (lambda path, good: path.write_bytes(good[:len(good) // 2]), "truncated"),
    "empty": (lambda path, good: path.write_bytes(b""), "truncated"),
    "garbage": (lambda path, good: path.write_bytes(b"x" * 100), "not a Saltatory checkpoint"),
    "a directory": (lambda path, good: path.mkdir(), "Is a directory"),
    "a symlink loop": (lambda path, good: path.symlink_to(path.name), "Too many levels of symbolic links"),
    "a dangling symlink": (lambda path, good: path.symlink_to("gone"), "No such file or directory"),
}


@pytest.mark.parametrize("how", BROKEN)
def test_resume_refuses_an_unusable_checkpoint(tmp_path: Path, capsys, good_checkpoint: bytes,
                                               how: str) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    make, problem = BROKEN[how]
    make(ckpt / "last.ckpt", good_checkpoint)
    with pytest.raises(SystemExit) as stop:
        _run(tmp_path, "--checkpoint-dir", str(ckpt), "--resume", "--epochs", "2")
    assert str(ckpt / "last.ckpt") in str(stop.value.code) and problem in str(stop.value.code)
    assert "epoch" not in capsys.readouterr().out
    assert os.path.lexists(ckpt / "last.ckpt")  # left for the user to inspect


def test_resume_without_a_checkpoint_starts_afresh(tmp_path: Path, capsys) -> None:
    summary = _run(tmp_path, "--checkpoint-dir", str(tmp_path / "new"), "--resume", "--epochs", "1")
    assert "starting from scratch" in capsys.readouterr().out
    assert len(summary["history"]) == 1
