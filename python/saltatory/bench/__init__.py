"""``python -m saltatory.bench`` (also ``saltatory-bench``): training throughput of Saltatory's
sparse path against its dense path and the dense peers (snnTorch, Norse, SpikingJelly, JAX and
Spyx), on fixed workloads, with a roofline.
``saltatory-recompute`` is the sparse path with checkpointing in time (membranes recomputed in
backward); its records report peak memory and step time relative to the stored-membrane path.

Every record trains one workload point (workload, sizes, activity) with one library, mode and
thread count, for warm-up steps and then timed steps, in its own worker process. It reports
samples/s (batch / median step time), the measured hidden activity and the peak memory. Sparse
records also report the bytes of weight rows the step must touch and the fraction of the
bandwidth bound reached: (bytes / measured gather bandwidth) / step time.

The probe measures this machine's row-gather bandwidth (on a matrix the size of the workload's
largest weight matrix, so the same cache level serves it) and its multiply-add throughput.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

from . import report, runners
from . import workloads as wl

LIBRARIES = ("saltatory-sparse", "saltatory-recompute", "saltatory-dense", "snntorch", "norse",
             "spikingjelly", "jax", "spyx")


def _csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="saltatory-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", type=_csv(str), default=["shd-paper", "nmnist-paper", "single-layer"],
                   help="comma list of shd-paper, shd-long, nmnist-paper, single-layer")
    p.add_argument("--activities", type=_csv(float), default=list(wl.ACTIVITIES),
                   help="hidden activities to sweep (sparse runs at every one)")
    p.add_argument("--baseline-at", type=_csv(float), default=[0.01, 0.05],
                   help="activities at which the dense baselines run (their cost does not follow activity)")
    p.add_argument("--libraries", type=_csv(str), default=list(LIBRARIES), help=", ".join(LIBRARIES))
    p.add_argument("--neurons", type=_csv(str), default=["lif"],
                   help="Saltatory's hidden neuron models, each a row of its own: "
                        f"{', '.join(wl.NEURONS)} (the peers run the LIF)")
    cores = os.cpu_count() or 1
    p.add_argument("--threads", type=_csv(int), default=sorted({1, cores}),
                   help="thread counts of the sparse runs (baselines use the largest)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed steps; the median is reported")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every record this many times, interleaved (each round runs the records "
                        "in the reverse order of the one before), and report the median round: on a "
                        "noisy machine the ratios then come from runs close together in time")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop timing a record after this many seconds of timed steps (at least one)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where every library trains: cpu, or cuda (Saltatory's CUDA backend, and "
                        "the peers on the GPU through PyTorch or JAX)")
    p.add_argument("--tiny", action="store_true", help="shrunken workloads: a seconds-long smoke run")
    p.add_argument("--json", metavar="PATH", help="write the records as a JSON list")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of throughput against activity")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for lib in args.libraries:
        if lib not in LIBRARIES:
            p.error(f"unknown library {lib!r}; choose from {', '.join(LIBRARIES)}")
    for neuron in args.neurons:
        if neuron not in wl.NEURONS:
            p.error(f"unknown neuron model {neuron!r}; choose from {', '.join(wl.NEURONS)}")
    if args.device == "cuda" and not args.worker:
        from .. import available_devices, build_info

        if "cuda" not in available_devices():
            p.error("device cuda is not available here: " + (
                "no CUDA device found" if build_info()["cuda"] else "this build has no CUDA backend"))
    if any(not 0 < a <= 1 for a in args.activities + args.baseline_at):
        p.error("activities must lie in (0, 1]")
    if any(t < 1 for t in args.threads) or args.repeats < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("threads, repeats and rounds must be at least 1, warmup at least 0")
    return args


def plan(args) -> list[dict]:
    """Every record to run, with the calibrated gains of its workload point."""
    specs = []
    max_threads = max(args.threads)
    for w in wl.workloads(args.workloads, tiny=args.tiny):
        for activity, neuron in [(a, n) for a in args.activities for n in args.neurons]:
            print(f"calibrating {w.name} {'-'.join(map(str, w.sizes))} ({neuron}) to activity "
                  f"{activity}", flush=True)
            gains = wl.calibrate_gains(w, activity, neuron=neuron)
            base = {"workload": w.name, "sizes": list(w.sizes), "batch": w.batch, "steps": w.steps,
                    "input_capacity": w.input_capacity, "output_capacity": w.output_capacity,
                    "loss": w.loss, "activity": activity, "gains": gains, "neuron": neuron,
                    "capacities": wl.capacities(w, activity), "warmup": args.warmup,
                    "repeats": args.repeats, "max_seconds": args.max_seconds, "device": args.device}
            for lib in args.libraries:
                library, _, mode = lib.partition("-")
                if library != "saltatory" and neuron != "lif":  # the baselines run the LIF
                    continue
                if lib in ("saltatory-sparse", "saltatory-recompute"):
                    thread_counts = args.threads
                elif any(abs(activity - a) < 1e-12 for a in args.baseline_at):
                    thread_counts = [max_threads]
                else:
                    continue
                for threads in thread_counts:
                    specs.append({**base, "library": library, "mode": mode or "dense", "threads": threads})
    return specs


def run_worker(spec: dict) -> dict:
    """Runs one record in a fresh process; its failure becomes the record's error."""
    cmd = [sys.executable, "-m", "saltatory.bench", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=runners.worker_env(spec["threads"]))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"worker failed (exit {proc.returncode}): {' | '.join(tail)}"}
    return json.loads(lines[-1])


def run_rounds(specs: list[dict], rounds: int) -> list[dict]:
    """Runs every spec ``rounds`` times, interleaved: round r runs them in the order of round r - 1
    reversed, so that a slow drift of the machine falls on every record alike. Each result is the
    record's median round (its step time the median of the rounds' median step times, its peak
    memory the largest) with ``round_step_s``, every round's step time, in round order; a record
    that fails keeps that round's error and is not run again."""
    results: list[list[dict]] = [[] for _ in specs]
    for r in range(rounds):
        order = range(len(specs)) if r % 2 == 0 else reversed(range(len(specs)))
        where = f"round {r + 1}/{rounds} " if rounds > 1 else ""
        for n, i in enumerate(order, 1):
            spec = specs[i]
            if any("error" in run for run in results[i]):
                continue
            label = (f"{spec['workload']} {spec['sizes']} a={spec['activity']} {report._name(spec)} "
                     f"x{spec['threads']}")
            print(f"[{where}{n}/{len(specs)}] {label}", flush=True)
            results[i].append(run_worker(spec))
            if "error" in results[i][-1]:
                if rounds > 1:
                    results[i][-1]["error"] += f" (round {r + 1})"
                print(f"    skipped: {results[i][-1]['error']}", flush=True)
    return [merge_rounds(runs) for runs in results]


def merge_rounds(runs: list[dict]) -> dict:
    """One record from the results of its rounds (see ``run_rounds``)."""
    failed = [run for run in runs if "error" in run]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda run: run["step_s"])
    merged = dict(ordered[(len(ordered) - 1) // 2])  # the median round (the lower of two)
    merged["round_step_s"] = [run["step_s"] for run in runs]
    peaks = [run["peak_mem_bytes"] for run in runs if run.get("peak_mem_bytes") is not None]
    merged["peak_mem_bytes"] = max(peaks) if peaks else None
    return merged


def probe(specs: list[dict]) -> dict:
    """Gather bandwidth per (workload sizes, threads) and multiply-add throughput per threads."""
    from .. import _core

    out, multiply_add = {}, {}  # the multiply-add rate depends on the thread count only
    for spec in specs:
        key, threads = (tuple(spec["sizes"]), spec["threads"]), spec["threads"]
        if key in out:
            continue
        sizes = spec["sizes"]
        rows, cols = max(zip(sizes[:-1], sizes[1:]), key=lambda rc: rc[0] * rc[1])
        _core.set_num_threads(threads)
        gather = _core.probe_gather_bandwidth(rows, cols, min(32, rows), 1.0)
        if threads not in multiply_add:
            multiply_add[threads] = _core.probe_multiply_add(0.5)
        flops, fma = multiply_add[threads]
        out[key] = {"gather_bytes_per_s": gather, "multiply_add_flop_per_s": flops, "fma": fma,
                    "probe_matrix": [rows, cols]}
    _core.set_num_threads(0)
    return out


def environment() -> dict:
    from .. import build_info

    env = {"python": platform.python_version(), "machine": platform.machine(),
           "cpu": report.cpu_model(), "cores": os.cpu_count(), "saltatory": build_info()["version"]}
    for name in ("torch", "snntorch", "norse", "spikingjelly", "jax", "spyx"):
        try:  # read from the installed metadata: importing them here would cost seconds
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = None
    return env


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(runners.run_record(json.loads(args.worker))))
        return 0
    specs = plan(args)
    print(f"saltatory-bench: {len(specs)} records on {args.device}", flush=True)
    probes = probe(specs) if args.device == "cpu" else {}  # the roofline probe measures the CPU
    env = environment()
    records = []
    for spec, result in zip(specs, run_rounds(specs, args.rounds)):
        record = {k: v for k, v in spec.items() if k not in ("warmup", "max_seconds")}
        record.update(result)
        record.update(probes.get((tuple(spec["sizes"]), spec["threads"]), {}))
        record["env"] = env
        if "weight_bytes_per_step" in record and "gather_bytes_per_s" in record:
            bound_s = record["weight_bytes_per_step"] / record["gather_bytes_per_s"]
            record["bound_s"] = bound_s
            record["bound_fraction"] = bound_s / record["step_s"]
        records.append(record)
    report.add_ratios(records)
    print(report.table(records))
    if args.rounds > 1:
        print(report.rounds_summary(records))
    if any(r.get("vs_stored_memory") for r in records):
        print(report.memory_table(records))
    if probes:
        print(report.machine_summary(probes, env))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        report.plot(records, args.plot)
        print(f"wrote {args.plot}")
    return 0
