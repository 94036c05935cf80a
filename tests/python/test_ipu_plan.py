"""The IPU backend from Python: tile plans of Sequential models, the plan summary command, its CPU
comparison and errors, and the ipu-model device against the CPU (the planner's invariants and the
full bit-for-bit sweep are tested in C++)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import saltatory as sal
from saltatory import ipu_plan


def _shd(**kwargs) -> sal.Sequential:
    sizes = [700, 974, 974, 974, 20]
    layers = [sal.LIF(a, b, 2 if b == 20 else 48) for a, b in zip(sizes[:-1], sizes[1:])]
    return sal.Sequential(*layers, **kwargs)


def test_plan_of_the_paper_shd_network() -> None:
    plan = ipu_plan.plan(_shd(), steps=10, batch=24, input_capacity=48)
    assert (plan["neurons_per_tile"], plan["tiles_used"], plan["ipus_used"]) == (2, 1471, 1)
    assert [p["tiles"] for p in plan["layers"]] == [487, 487, 487, 10]
    assert plan["max_tile_bytes"] <= (624 - 32) * 1024
    assert all(p["memory"]["total"] == sum(v for k, v in p["memory"].items() if k != "total")
               for p in plan["layers"])
    assert plan["cycles_per_step"] > 0 and plan["seconds_per_training_step"] > 0
    assert "700-974-974-974-20" in plan["summary"] and "assumptions" in plan["summary"]
    delayed = ipu_plan.plan(_shd(coupling="delayed"), steps=10, batch=24, input_capacity=48)
    assert delayed["cycles_per_step"] < plan["cycles_per_step"]
    adam = ipu_plan.plan(_shd(), steps=10, batch=24, input_capacity=48, optimizer="adam")
    assert adam["max_tile_bytes"] > plan["max_tile_bytes"]


def test_plan_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"\[ipu_plan\] neurons_per_tile 3 must be 0"):
        ipu_plan.plan(_shd(), steps=10, batch=24, input_capacity=48, neurons_per_tile=3)
    with pytest.raises(ValueError, match=r"\[ipu_plan\] optimizer must be one of"):
        ipu_plan.plan(_shd(), steps=10, batch=24, input_capacity=48, optimizer="lion")
    with pytest.raises(ValueError, match=r"\[ipu_plan\] the model fits at no even number"):
        ipu_plan.plan(_shd(), steps=1000, batch=48, input_capacity=48)  # input lists fill the tiles


def test_plan_command_prints_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "plan.json"
    assert ipu_plan.main(["--hidden-layers", "48", "--sizes", "700,976,20", "--ipus", "2",
                          "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "700-976x48-20" in text and "16 neurons per tile, 2930 tiles on 2 IPU(s)" in text
    assert json.loads(out.read_text())["ipus_used"] == 2
    assert ipu_plan.main(["--hidden-layers", "48", "--sizes", "700,976,20"]) == 2
    assert "layer 24 (976 neurons) needs 61 tiles" in capsys.readouterr().err


def test_plan_command_compares_with_the_cpu_backend(tmp_path, capsys) -> None:
    out = tmp_path / "plan.json"
    assert ipu_plan.main(["--sizes", "60,40,40,10", "--activity", "0.1", "--steps", "8", "--batch", "4",
                          "--input-capacity", "6", "--cpu", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["cpu_step_s"] > 0 and record["estimated_speedup_vs_cpu"] > 0
    assert 0 < record["hidden_activity"] < 1
    assert "estimated speed-up" in capsys.readouterr().out


def test_ipu_model_device_equals_cpu_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    x = sal.SpikeTensor.from_dense((rng.random((12, 5, 30)) < 0.2).astype(np.float32))
    labels = rng.integers(0, 4, 5).astype(np.int32)
    results = {}
    for device in ("cpu", "ipu-model"):
        net = sal.Sequential(sal.LIF(30, 26, 6, seed=1), sal.RecurrentLIF(26, 18, 5, bias=True, seed=2),
                             sal.Readout(18, 4, seed=3), coupling="delayed", device=device)
        out = net(x)
        _, grad = sal.losses.membrane_cross_entropy(out, labels)
        grad_in = net.backward(grad, input_grad=True)
        results[device] = (out.copy(), [p.grad.copy() for p in net.parameters()], grad_in, net.ipu_report)
    cpu, ipu = results["cpu"], results["ipu-model"]
    np.testing.assert_array_equal(ipu[0], cpu[0])
    for a, b in zip(ipu[1], cpu[1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ipu[2], cpu[2])
    assert cpu[3] is None
    report = ipu[3]
    assert report["fits"] and report["tiles_used"] == len(report["tile_bytes"]) == 13 + 9 + 2
    assert report["exchange_bytes_forward"] > 0 and report["exchange_bytes_backward"] > 0
    assert {name for name, _ in report["compute_sets"]} >= {"forward layer 0", "weight gradients layer 2"}
    assert "ipu-model" in sal.available_devices()


def test_ipu_model_runs_a_model_too_big_for_its_target_and_says_so() -> None:
    rng = np.random.default_rng(2)
    x = sal.SpikeTensor.from_dense((rng.random((100, 40, 300)) < 0.2).astype(np.float32), capacity=48)
    nets = [sal.Sequential(sal.LIF(300, 16, 4, seed=1), device=d) for d in ("cpu", "ipu-model")]
    outs = [net(x) for net in nets]
    np.testing.assert_array_equal(outs[0].ids, outs[1].ids)
    report = nets[1].ipu_report
    assert report["fits"] is False and "fits at no even number of neurons per tile" in report["fit_error"]
    assert nets[0].ipu_report is None


def test_ipu_device_needs_the_sdk() -> None:
    with pytest.raises(ValueError, match="no Poplar SDK"):  # refused by the constructor
        sal.Sequential(sal.LIF(4, 4, 2), device="ipu")
