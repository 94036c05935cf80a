"""The benchmark program: its workloads, roofline accounting and a tiny end-to-end smoke run (the
timings themselves are never asserted)."""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import saltatory as sal
from saltatory import _core
from saltatory.bench import main, parse_args, plan, runners
from saltatory.bench import workloads as wl

REPO = Path(__file__).resolve().parents[2]


def test_fixed_workloads_and_paper_capacities():
    shd, = wl.workloads(["shd-paper"])
    assert shd.sizes == (700, 974, 974, 974, 20) and (shd.batch, shd.steps, shd.input_capacity) == (48, 100, 48)
    long, = wl.workloads(["shd-long"])
    assert long.sizes == shd.sizes and (long.batch, long.steps) == (48, 1000)
    nmnist, = wl.workloads(["nmnist-paper"])
    assert nmnist.sizes == (1152, 978, 978, 976, 10) and nmnist.input_capacity == 32
    single = wl.workloads(["single-layer"])
    assert [w.sizes for w in single] == [(4096, 4096), (8192, 8192)]
    assert all((w.batch, w.steps, w.loss) == (16, 500, "sum") for w in single)
    # K = 2 floor(a N / 2); the output layer of the paper networks keeps 2
    assert wl.capacities(shd, 0.05) == [48, 48, 48, 2]
    assert wl.capacities(shd, 0.01) == [8, 8, 8, 2]
    assert wl.capacities(single[0], 0.025) == [2 * math.floor(0.025 * 4096 / 2)]
    with pytest.raises(ValueError, match="unknown workload"):
        wl.workloads(["mnist"])


def test_inputs_fill_their_capacity_with_distinct_ids():
    w, = wl.workloads(["shd-paper"], tiny=True)
    x, labels = wl.make_input(w, 0.05)
    assert x.ids.shape == (w.steps, w.batch, w.input_capacity)
    assert np.all(x.n_spk == w.input_capacity)
    ids = x.ids.reshape(-1, w.input_capacity)
    assert np.all(np.diff(ids, axis=1) > 0) and ids.min() >= 0 and ids.max() < w.sizes[0]
    assert labels.min() >= 0 and labels.max() < w.sizes[-1]


def test_calibration_controls_activity():
    w, = wl.workloads(["shd-paper"], tiny=True)
    w = wl.Workload(w.name, w.sizes, 8, 60, w.input_capacity, w.output_capacity, w.loss)
    for activity in (0.05, 0.2):
        gains = wl.calibrate_gains(w, activity)
        net = wl.build_net(w, activity, gains, "sparse")
        net(wl.make_input(w, activity)[0])
        measured = np.mean([s.activity() for s in net.spikes[:-1]])
        assert 0.4 * activity < measured <= 1.05 * activity, (activity, measured)


def test_weight_bytes_count_every_row_touched():
    w = wl.Workload("shd-paper", (20, 12, 4), 3, 5, 6, 2, "spike_count_ce")
    x, labels = wl.make_input(w, 0.5)
    run = runners._SaltatoryRunner(w, 0.5, [10.0, 10.0], "sparse", x, labels)
    run.step()
    s1 = run.net.spikes[0]
    expected = 4 * 12 * 3 * int(x.n_spk.sum()) + 4 * 4 * (3 * int(s1.n_spk.sum()) + int(s1.n_tot.sum()))
    assert run.weight_bytes() == expected


@pytest.mark.parametrize("library,module", [("snntorch", "torch"), ("jax", "jax"), ("spyx", "spyx")])
def test_missing_baseline_is_reported_not_fatal(monkeypatch, library, module):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # the JAX runners set it; undone after the test
    w, = wl.workloads(["shd-paper"], tiny=True)
    spec = {"workload": w.name, "sizes": list(w.sizes), "batch": w.batch, "steps": w.steps,
            "input_capacity": w.input_capacity, "output_capacity": w.output_capacity, "loss": w.loss,
            "activity": 0.05, "gains": [10.0] * 4, "warmup": 0, "repeats": 1, "max_seconds": 1.0,
            "library": library, "mode": "dense", "threads": 1}
    error = runners.run_record(spec)["error"]
    assert "not installed" in error and library in error


def test_cli_rejects_bad_options():
    for argv in (["--libraries", "tensorflow"], ["--activities", "0"], ["--threads", "0"],
                 ["--device", "tpu"], ["--neurons", "lif,hodgkin"], ["--rounds", "0"]):
        with pytest.raises(SystemExit):
            parse_args(argv)


def test_plan_runs_baselines_only_where_asked():
    args = parse_args(["--tiny", "--workloads", "shd-paper", "--activities", "0.01,0.05",
                       "--baseline-at", "0.05", "--threads", "1,2"])
    specs = plan(args)
    for mode in ("sparse", "recompute"):
        sparse = [s for s in specs if s["mode"] == mode]
        assert sorted((s["activity"], s["threads"]) for s in sparse) == [(0.01, 1), (0.01, 2), (0.05, 1), (0.05, 2)]
    baselines = [s for s in specs if s["mode"] not in ("sparse", "recompute")]
    assert {s["activity"] for s in baselines} == {0.05} and {s["threads"] for s in baselines} == {2}
    assert {s["library"] for s in baselines} == {"saltatory", "snntorch", "norse", "spikingjelly", "jax",
                                                 "spyx"}


def test_neuron_models_get_rows_of_their_own(tmp_path, capsys):
    """--neurons: each model is calibrated and run by Saltatory (the baselines run the LIF), its
    ratio against dense is against its own dense run, and the table names it."""
    args = parse_args(["--tiny", "--workloads", "shd-paper", "--activities", "0.05",
                       "--neurons", "lif,cuba,adlif", "--threads", "1"])
    specs = plan(args)
    assert {(s["library"], s["neuron"]) for s in specs} == {
        ("saltatory", "lif"), ("saltatory", "cuba"), ("saltatory", "adlif"), ("snntorch", "lif"),
        ("norse", "lif"), ("spikingjelly", "lif"), ("jax", "lif"), ("spyx", "lif")}
    gains = {s["neuron"]: s["gains"] for s in specs if s["library"] == "saltatory"}
    assert gains["cuba"] != gains["lif"]  # calibrated for the model
    out = tmp_path / "bench.json"
    assert main(["--tiny", "--workloads", "shd-paper", "--activities", "0.05", "--neurons",
                 "lif,alif", "--libraries", "saltatory-sparse,saltatory-dense", "--threads", "1",
                 "--warmup", "0", "--repeats", "1", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    by = {(r["neuron"], r["mode"]): r for r in records}
    assert set(by) == {(n, m) for n in ("lif", "alif") for m in ("sparse", "dense")}
    for neuron in ("lif", "alif"):
        r = by[(neuron, "sparse")]
        assert "error" not in r, r.get("error")
        assert r["vs_saltatory_dense"] == pytest.approx(r["samples_per_s"] / by[(neuron, "dense")]["samples_per_s"])
    assert "saltatory-sparse[alif]" in capsys.readouterr().out
    # benchmarks/neuron_step.py times the same models interleaved from these records' gains
    spec = importlib.util.spec_from_file_location("neuron_step", REPO / "benchmarks" / "neuron_step.py")
    neuron_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(neuron_step)
    try:
        steps = neuron_step.main([str(out), "--rounds", "2", "--threads", "1"])
    finally:
        sal.set_num_threads(0)  # the default, for the tests after this one
    assert {r["neuron"] for r in steps} == {"lif", "alif"}
    assert all(len(r["samples"]) == 2 and r["step_s"] > 0 for r in steps)
    assert [r["x_lif"] for r in steps if r["neuron"] == "lif"] == [1.0]
    assert "x LIF step" in capsys.readouterr().out


def test_probes_measure_positive_rates():
    assert _core.probe_gather_bandwidth(64, 64, 8, 0.01) > 0
    flops, fma = _core.probe_multiply_add(0.01)
    assert flops > 0 and isinstance(fma, bool)
    with pytest.raises(ValueError, match="probe_gather_bandwidth"):
        _core.probe_gather_bandwidth(4, 64, 8)


def _smoke(tmp_path, libraries):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["--tiny", "--workloads", "shd-paper,single-layer", "--activities", "0.05",
                 "--baseline-at", "0.05", "--libraries", libraries, "--threads", "1",
                 "--warmup", "0", "--repeats", "1", "--json", str(out), "--plot", str(png)]) == 0
    records = json.loads(out.read_text())
    assert png.stat().st_size > 0
    return records


def test_smoke_run_writes_records_table_and_plot(tmp_path, capsys):
    records = _smoke(tmp_path, "saltatory-sparse,saltatory-recompute,saltatory-dense")
    assert {(r["workload"], r["mode"]) for r in records} == {
        (w, m) for w in ("shd-paper", "single-layer") for m in ("sparse", "recompute", "dense")}
    for r in records:
        assert "error" not in r, r.get("error")
        for key in ("workload", "library", "mode", "device", "threads", "batch", "steps", "sizes",
                    "hidden_activity", "samples_per_s", "peak_mem_bytes"):
            assert key in r, key
        assert r["samples_per_s"] > 0 and 0 < r["hidden_activity"] < 1
    for r in (r for r in records if r["mode"] in ("sparse", "recompute")):
        assert r["weight_bytes_per_step"] > 0 and r["bound_fraction"] > 0 and r["vs_saltatory_dense"] > 0
    for r in (r for r in records if r["mode"] == "recompute"):
        assert r["vs_stored_memory"] > 0 and r["vs_stored_time"] > 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "BPTT memory" in out


def test_smoke_run_with_baselines(tmp_path):
    for name in ("torch", "snntorch", "norse.torch", "jax"):
        pytest.importorskip(name, reason="baselines not installed (pip install 'saltatory[bench]')")
    records = _smoke(tmp_path, "saltatory-sparse,snntorch,norse,jax")
    assert all("error" not in r for r in records), [r.get("error") for r in records]
    sparse = [r for r in records if r["mode"] == "sparse"]
    assert all(r["vs_snntorch"] > 0 and r["vs_peer"] > 0 and r["peer"] in ("snntorch", "norse", "jax")
               for r in sparse)
    assert all(0 < r["hidden_activity"] < 1 for r in records if r["library"] != "saltatory")


PEERS = {"snntorch": ("torch", "snntorch"), "norse": ("torch", "norse.torch"),
         "spikingjelly": ("torch", "spikingjelly.activation_based.neuron"), "jax": ("jax", "optax"),
         "spyx": ("jax", "spyx.nn")}


@pytest.mark.parametrize("library", sorted(PEERS))
def test_peer_runs_the_same_network(library, monkeypatch):
    """Every peer trains the network Saltatory's dense mode trains: the same weights, input and
    LIF give the same activity in every layer (Spyx's LIF is another neuron: only its training
    step is checked), and restore undoes the optimiser's steps."""
    for name in PEERS[library]:
        pytest.importorskip(name, reason="peer not installed (pip install 'saltatory[bench]')")
    w = wl.Workload("shd-paper", (40, 32, 32, 4), 6, 30, 6, 2, "spike_count_ce")
    x, labels = wl.make_input(w, 0.1)
    gains = wl.calibrate_gains(w, 0.1)
    runner = runners.BASELINES[library]
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # the JAX runners set it; undone after the test
    runner.check(len(os.sched_getaffinity(0)), "cpu")  # every CPU: this process is the test's
    peer = runner(w, 0.1, gains, "dense", x, labels)
    peer.step()
    first = peer.layer_activity()
    for _ in range(3):  # Adam moves the weights
        peer.step()
    peer.restore()
    peer.step()
    assert peer.layer_activity() == first  # restore brings the initial weights back
    if library == "spyx":
        assert 0 < peer.hidden_activity() < 1
        return
    ours = wl.build_net(w, 0.1, gains, "dense")
    ours(x)
    expected = [s.activity() for s in ours.spikes]
    assert expected[0] > 0.02
    np.testing.assert_allclose(first, expected, rtol=0.02, atol=1e-3)


def test_ratios_name_the_fastest_peer():
    point = {"workload": "shd-paper", "sizes": [8, 4], "activity": 0.05, "threads": 2,
             "hidden_activity": 0.05}
    records = [{**point, "library": "saltatory", "mode": "sparse", "samples_per_s": 600.0},
               {**point, "library": "saltatory", "mode": "dense", "samples_per_s": 50.0},
               {**point, "library": "snntorch", "mode": "dense", "samples_per_s": 75.0},
               {**point, "library": "jax", "mode": "dense", "samples_per_s": 150.0},
               {**point, "library": "spyx", "mode": "dense", "error": "not installed"}]
    from saltatory.bench import report

    report.add_ratios(records)
    sparse = records[0]
    assert sparse["peer"] == "jax" and sparse["vs_peer"] == 4.0 and sparse["vs_snntorch"] == 8.0
    assert records[1]["vs_peer"] == pytest.approx(1 / 3) and "peer" not in records[3]
    assert "jax" in report.table(records).splitlines()[2]


def test_rounds_interleave_the_records_and_report_the_median_round(monkeypatch, capsys):
    """--rounds: every round runs the records in the reverse order of the one before; each record
    is its median round (step time), with every round's step time and the largest peak memory;
    recompute's step time over stored is the median of the rounds' ratios, not the ratio of
    medians; a failure is the record's error, and the record is not run again."""
    import saltatory.bench as bench
    from saltatory.bench import report

    point = {"workload": "single-layer", "sizes": [8, 8], "activity": 0.05, "threads": 2,
             "neuron": "lif"}
    specs = [{**point, "library": "saltatory", "mode": mode} for mode in ("sparse", "recompute")]
    specs.append({**point, "library": "jax", "mode": "dense"})
    step = {"sparse": [1.0, 3.0, 2.0], "recompute": [1.2, 3.3, 1.8]}  # by round
    calls = []

    def fake_worker(spec):
        r = sum(1 for c in calls if c == spec["mode"])
        calls.append(spec["mode"])
        if spec["library"] == "jax":
            return {"error": "jax is not installed"} if r == 1 else {"step_s": 1.0, "peak_mem_bytes": 1}
        return {"step_s": step[spec["mode"]][r], "peak_mem_bytes": 100 * (r + 1), "samples_per_s": 8 / step[spec["mode"]][r]}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    merged = bench.run_rounds(specs, 3)
    assert calls == ["sparse", "recompute", "dense", "dense", "recompute", "sparse",
                     "sparse", "recompute"]  # jax failed in round 2
    sparse, recompute, jax = merged
    assert sparse["step_s"] == 2.0 and sparse["round_step_s"] == [1.0, 3.0, 2.0]
    assert recompute["step_s"] == 1.8 and recompute["peak_mem_bytes"] == 300
    assert jax == {"error": "jax is not installed (round 2)"}
    records = [{**spec, **result} for spec, result in zip(specs, merged)]
    report.add_ratios(records)
    assert records[1]["round_vs_stored_time"] == pytest.approx([1.2, 1.1, 0.9])
    assert records[1]["vs_stored_time"] == pytest.approx(1.1)  # the ratio of medians is 0.9
    summary = report.rounds_summary(records)
    assert "1.20, 1.10, 0.90 by round (median 1.10)" in summary
    assert "moved by 188 %" in summary and "at most 200 %" in summary  # sparse 200 %, recompute 175 %


def test_cuda_device_needs_a_gpu_or_runs_every_library_there(tmp_path, capsys):
    from saltatory import available_devices

    argv = ["--tiny", "--workloads", "single-layer", "--activities", "0.05", "--baseline-at", "0.05",
            "--threads", "1", "--repeats", "1", "--warmup", "0", "--device", "cuda",
            "--json", str(tmp_path / "cuda.json")]
    if "cuda" not in available_devices():
        with pytest.raises(SystemExit):
            main(argv)
        assert "device cuda is not available here" in capsys.readouterr().err
        return
    assert main(argv) == 0  # on a GPU: Saltatory sparse and dense, snnTorch and Norse
    records = json.loads((tmp_path / "cuda.json").read_text())
    assert {r["device"] for r in records} == {"cuda"}
    assert all("error" not in r for r in records if r["library"] == "saltatory")
