"""IPU tile plans (docs/method.md, section 7) and ``python -m saltatory.ipu_plan``, which prints one.

The planner places a layer stack on Graphcore IPU tiles (default target: one Mk2 GC200, 1472
tiles, 6 workers, 624 KiB per tile): contiguous, even slices of neurons per tile, layers in order,
the next IPU when one is full. It reports the tiles and neurons per tile, memory per tile (max,
mean, by purpose), exchange bytes per step and an estimate of the cycles per step. It needs no
Poplar SDK: it is a pure function of the model and the target.

``--cpu`` also trains the same model on this machine's CPU backend (forward, loss and backward, at
the activity the capacities are made for) and prints the estimated IPU speed-up over it, with the
assumptions behind the estimate. It is an estimate from a cost model, not a measurement: no IPU
has run this code.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from . import _core
from .nn import LIF, Readout, RecurrentLIF, Sequential


def plan(net: Sequential, *, steps: int, batch: int, input_capacity: int, neurons_per_tile: int = 0,
         optimizer: str = "sgd", ipus: int = 1, target=None) -> dict:
    """The tile plan of ``net`` for sequences of ``steps`` and batches of ``batch`` with input
    lists of ``input_capacity`` (a dict; its ``summary`` is printable). ``neurons_per_tile``: 0
    picks the smallest that fits. ``optimizer`` ("sgd", "momentum" or "adam") sets the optimiser
    state per weight; ``target`` is an ``_core.IpuTarget`` (default: ``ipus`` GC200s)."""
    slots = {"sgd": 0, "momentum": 1, "adam": 2}
    if optimizer not in slots:
        raise ValueError(f"[ipu_plan] optimizer must be one of {sorted(slots)}, got {optimizer!r}")
    options = _core.IpuPlanOptions()
    options.T, options.B, options.input_capacity = int(steps), int(batch), int(input_capacity)
    options.neurons_per_tile, options.optimizer_slots = int(neurons_per_tile), slots[optimizer]
    if target is None:
        target = _core.IpuTarget()
        target.ipus = int(ipus)
    return _core.ipu_plan([layer.config() for layer in net.layers], net.coupling,
                          net.segment_for(steps), options, target)


def _csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    """The command line ``argv`` (default ``sys.argv[1:]``) parsed and checked."""
    p = argparse.ArgumentParser(prog="python -m saltatory.ipu_plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_csv_ints, default=[700, 974, 974, 974, 20],
                   help="layer sizes, input first (default: the paper's SHD network)")
    p.add_argument("--hidden-layers", type=int, default=0,
                   help="repeat the middle size to this many hidden layers (the paper's scaling models)")
    p.add_argument("--activity", type=float, default=0.05,
                   help="hidden capacity 2 floor(a N / 2); the last layer keeps capacity 2")
    p.add_argument("--recurrent", action="store_true")
    p.add_argument("--readout", action="store_true", help="a Readout last layer instead of LIF")
    p.add_argument("--coupling", choices=["same_step", "delayed"], default="same_step")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--input-capacity", type=int, default=48)
    p.add_argument("--ipus", type=int, default=1)
    p.add_argument("--neurons-per-tile", type=int, default=0, help="0: the smallest that fits")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd")
    p.add_argument("--recompute-segment", type=int, default=0)
    p.add_argument("--cpu", action="store_true", help="also time the CPU backend on the same model")
    p.add_argument("--json", metavar="PATH", help="write the plan (and CPU timing) as JSON")
    args = p.parse_args(argv)
    if len(args.sizes) < 2 or min(args.sizes) <= 0:
        p.error("--sizes needs at least two positive sizes")
    if args.hidden_layers:
        args.sizes = [args.sizes[0]] + [args.sizes[1]] * args.hidden_layers + [args.sizes[-1]]
    if not 0 < args.activity <= 1 or min(args.steps, args.batch, args.input_capacity) <= 0:
        p.error("--activity must lie in (0, 1]; --steps, --batch and --input-capacity must be positive")
    if args.recompute_segment < 0:
        p.error("--recompute-segment must be >= 0")
    if args.cpu and (args.readout or args.recurrent or args.coupling != "same_step" or args.recompute_segment):
        p.error("--cpu times the benchmark's feed-forward same-step LIF stack: drop --readout, "
                "--recurrent, --coupling and --recompute-segment")
    return args


def build(args) -> Sequential:
    """The layer stack ``args`` (from ``parse_args``) describes."""
    sizes, layers = args.sizes, []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        if last and args.readout:
            layers.append(Readout(n_in, n_out, seed=i))
            continue
        capacity = 2 if last else max(2, 2 * int(args.activity * n_out / 2))
        kind = RecurrentLIF if args.recurrent and not last else LIF
        layers.append(kind(n_in, n_out, capacity, seed=i))
    return Sequential(*layers, coupling=args.coupling, recompute_segment=args.recompute_segment)


def time_cpu(args, repeats: int = 3) -> dict:
    """Median seconds of forward + loss + backward of the model ``args`` describes on the CPU
    backend over ``repeats`` timed steps (after one warm-up), with gains calibrated so that
    hidden layers fire at ``args.activity`` (the bench's calibration)."""
    from . import build_info, losses
    from .bench import workloads as wl

    w = wl.Workload("ipu-plan", tuple(args.sizes), args.batch, args.steps, args.input_capacity, 2,
                    "spike_count_ce")
    gains = wl.calibrate_gains(w, args.activity)
    net = wl.build_net(w, args.activity, gains, "sparse")
    x, labels = wl.make_input(w, args.activity)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        _, grad = losses.spike_count_cross_entropy(net(x), labels)
        net.backward(grad_entries=grad)
        times.append(time.perf_counter() - t0)
    return {"cpu_step_s": statistics.median(times[1:]), "cpu_threads": build_info()["cpu_threads"],
            "hidden_activity": sum(s.activity() for s in net.spikes[:-1]) / max(1, len(net.spikes) - 1)}


def main(argv=None) -> int:
    """``python -m saltatory.ipu_plan`` with the arguments ``argv``: prints the plan; returns the
    exit status."""
    args = parse_args(argv)
    net = build(args)
    try:
        result = plan(net, steps=args.steps, batch=args.batch, input_capacity=args.input_capacity,
                      neurons_per_tile=args.neurons_per_tile, optimizer=args.optimizer, ipus=args.ipus)
    except ValueError as e:
        print(f"saltatory.ipu_plan: {e}", file=sys.stderr)
        return 2
    print(result["summary"])
    if args.cpu:
        cpu = time_cpu(args)
        result.update(cpu)
        ipu_s = result["seconds_per_training_step"]
        result["estimated_speedup_vs_cpu"] = cpu["cpu_step_s"] / ipu_s
        print(f"CPU backend on this machine ({cpu['cpu_threads']} threads, measured hidden activity "
              f"{100 * cpu['hidden_activity']:.2f} %): {1e3 * cpu['cpu_step_s']:.1f} ms per forward + "
              f"backward; IPU estimate {1e3 * ipu_s:.3f} ms; estimated speed-up "
              f"{result['estimated_speedup_vs_cpu']:.0f}x (a cost model with the assumptions above, "
              f"not a measurement)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
