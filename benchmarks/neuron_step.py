#!/usr/bin/env python3
"""The sparse training step of each neuron model against the LIF's, timed interleaved.

saltatory-bench times each neuron model in its own worker, one after another, and on a noisy
machine two such records of the same step differ by 15 % or more. This script takes the gains that
saltatory-bench calibrated (its --json output, run with --neurons), builds every model's network in
one process and times rounds of one training step (forward, backward, Adam) per model, so that the
machine's drifts fall on all models alike. It prints the median step of each model and its ratio
to the LIF's at the same activity, and writes them as JSON.

Usage (from the repository root, after `scripts/setup`):
    .venv/bin/saltatory-bench --workloads shd-paper --activities 0.01,0.05 \\
        --libraries saltatory-sparse --neurons lif,cuba,alif,adlif --json neurons.json
    .venv/bin/python benchmarks/neuron_step.py neurons.json [--rounds 15] [--threads 2] \\
        [--out benchmarks/results/neuron_step.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import saltatory as sal
from saltatory.bench import report, runners
from saltatory.bench import workloads as wl


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("records", help="saltatory-bench's --json output, with sparse LIF records")
    ap.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--out", help="write the medians and ratios here as JSON")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.threads < 0:
        ap.error("--rounds must be at least 1 and --threads at least 0")
    sal.set_num_threads(args.threads)
    with open(args.records) as f:
        records = [r for r in json.load(f) if r.get("mode") == "sparse" and r.get("library") == "saltatory"]
    results = []
    for (name, sizes, activity) in sorted({(r["workload"], tuple(r["sizes"]), r["activity"]) for r in records}):
        point = [r for r in records if (r["workload"], tuple(r["sizes"]), r["activity"]) == (name, sizes, activity)]
        first = point[0]  # the workload as the records ran it (--tiny shrinks it)
        w = wl.Workload(name, sizes, first["batch"], first["steps"], first["input_capacity"],
                        first["output_capacity"], first["loss"])
        neurons = [r.get("neuron", "lif") for r in point]  # records before --neurons ran the LIF
        if "lif" not in neurons or len(set(neurons)) != len(neurons):
            raise SystemExit(f"neuron_step: {args.records} needs one sparse record per neuron model, "
                             f"the LIF among them, at {name}, a={activity}; it has {neurons} (run "
                             "saltatory-bench with one --threads value)")
        x, labels = wl.make_input(w, activity)
        runs = {neuron: runners._SaltatoryRunner(w, activity, r["gains"], "sparse", x, labels, neuron=neuron)
                for neuron, r in zip(neurons, point)}
        for run in runs.values():  # warm-up: first-touch allocations
            for _ in range(2):
                run.restore()
                run.step()
        times = {neuron: [] for neuron in runs}
        order = list(runs)
        for round_ in range(args.rounds):  # the order rotates, so no model always runs first
            for neuron in order[round_ % len(order):] + order[:round_ % len(order)]:
                run = runs[neuron]
                run.restore()  # every step from the initial weights, as saltatory-bench's
                start = time.perf_counter()
                run.step()
                times[neuron].append(time.perf_counter() - start)
        lif = statistics.median(times["lif"])
        for neuron, samples in times.items():
            step = statistics.median(samples)
            results.append({"workload": name, "activity": activity, "neuron": neuron, "threads": args.threads,
                            "step_s": step, "x_lif": step / lif, "hidden_activity": runs[neuron].hidden_activity(),
                            "samples": samples})
    print(f"{'workload':<12} {'a':>6} {'neuron':<7} {'act %':>6} {'step ms':>8} {'x LIF step':>10}")
    for r in results:
        print(f"{r['workload']:<12} {r['activity']:>6.3f} {r['neuron']:<7} {100 * r['hidden_activity']:>6.2f} "
              f"{1e3 * r['step_s']:>8.1f} {r['x_lif']:>10.2f}")
    print(f"machine: {report.cpu_model()}, {args.threads} thread(s), "
          f"{args.rounds} interleaved rounds, medians")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
