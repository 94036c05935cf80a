"""The IPU tile planner from Python: plans of Sequential models, the plan summary command, its
CPU comparison and its errors. (The planner's invariants are tested in C++, test_ipu_plan.cpp.)"""

from __future__ import annotations

import json

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
