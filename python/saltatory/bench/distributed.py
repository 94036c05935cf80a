"""``python -m saltatory.bench.distributed``: data-parallel training throughput over MPI ranks.

Each configuration R x H (R ranks, H threads each) trains one benchmark workload with
``saltatory.distributed.DataParallel`` under ``mpirun -np R``: per step forward, loss, BPTT, the
gradient all-reduce and Adam. Weak scaling keeps the per-rank batch at the workload's batch (the
global batch grows with R); strong scaling splits the workload's batch between the ranks. Every rank
gets its own inputs. Reported: samples/s (global batch / median step time, the step timed on rank 0
between barriers), speed-up over the 1 x H run with the same H, and the all-reduce's share.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from . import workloads as wl


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m saltatory.bench.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="shd-paper", help="a saltatory-bench workload")
    p.add_argument("--activity", type=float, default=0.05)
    p.add_argument("--configs", default="1x1,2x1,1x2", help="comma list of RANKSxTHREADS")
    p.add_argument("--scaling", default="weak,strong", help="weak, strong or both")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="timed steps; the median is reported")
    p.add_argument("--tiny", action="store_true", help="shrunken workload: a seconds-long smoke run")
    p.add_argument("--json", metavar="PATH", help="write the records as a JSON list")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    except ValueError:
        p.error(f"--configs must look like 1x1,2x1, got {args.configs!r}")
    args.scaling = [s for s in args.scaling.split(",") if s]
    if any(len(c) != 2 or min(c) < 1 for c in args.configs) or not set(args.scaling) <= {"weak", "strong"}:
        p.error("configs need RANKSxTHREADS >= 1, scaling weak and/or strong")
    return args


def mpirun_command(ranks: int) -> list[str]:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise SystemExit("saltatory.bench.distributed: no mpirun (apt-get install openmpi-bin libopenmpi-dev)")
    return [mpirun, "-np", str(ranks), "--oversubscribe", "--bind-to", "none"]


def mpi_env(threads: int) -> dict:
    """Environment for mpirun: root allowed (containers), no single-copy mechanism (needs ptrace)."""
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS=str(threads))


def run_worker(spec: dict) -> dict:
    import numpy as np

    from .. import distributed, losses, optim, set_num_threads

    set_num_threads(spec["threads"])
    w = wl.Workload(**spec["workload"])
    net = wl.build_net(w, spec["activity"], spec["gains"], "sparse")
    ddp = distributed.DataParallel(net)
    local = spec["global_batch"] // ddp.size + (ddp.rank < spec["global_batch"] % ddp.size)
    x, labels = wl.make_input(w, spec["activity"], batch=local, seed=ddp.rank)
    opt = optim.Adam(net.parameters(), lr=1e-3)
    steps, reduces = [], []
    for i in range(spec["warmup"] + spec["repeats"]):
        ddp.comm.Barrier()
        t0 = time.perf_counter()
        _, grad = losses.spike_count_cross_entropy(net(x), labels)
        net.zero_grad()
        net.backward(grad_entries=grad)
        t1 = time.perf_counter()
        ddp.allreduce_gradients(local)
        t2 = time.perf_counter()
        opt.step()
        ddp.comm.Barrier()
        if i >= spec["warmup"]:
            steps.append(time.perf_counter() - t0)
            reduces.append(t2 - t1)
    step = statistics.median(steps)
    return {"ranks": ddp.size, "step_s": step, "samples_per_s": spec["global_batch"] / step,
            "allreduce_fraction": statistics.median(reduces) / step, "in_sync": ddp.in_sync(),
            "hidden_activity": float(np.mean([s.activity() for s in net.spikes[:-1]]))}


def table(records: list[dict]) -> str:
    head = (f"{'workload':<11} {'scaling':<7} {'ranks x thr':>11} {'batch':>6} {'samples/s':>10} "
            f"{'speed-up':>8} {'efficiency':>10} {'allreduce %':>11}")
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(f"{r['workload']:<11} {r['scaling']:<7} {r['ranks']:>5} x {r['threads']:<3} "
                     f"{r['global_batch']:>6} {r['samples_per_s']:>10.1f} {r['speedup']:>8.2f} "
                     f"{r['efficiency']:>10.2f} {100 * r['allreduce_fraction']:>11.1f}")
    lines.append("speed-up: samples/s over the 1-rank run with the same threads per rank; "
                 "efficiency: speed-up / ranks")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        from mpi4py import MPI

        result = run_worker(json.loads(args.worker))
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(json.dumps(result), flush=True)
        return 0
    w, = wl.workloads([args.workload], tiny=args.tiny)
    print(f"calibrating {w.name} to activity {args.activity}", flush=True)
    gains = wl.calibrate_gains(w, args.activity)
    records = []
    for scaling in args.scaling:
        for ranks, threads in args.configs:
            global_batch = w.batch * ranks if scaling == "weak" else w.batch
            if ranks > global_batch:
                raise SystemExit(f"{ranks} ranks need a global batch of at least {ranks}, got {global_batch}")
            spec = {"workload": w.__dict__, "activity": args.activity, "gains": gains, "threads": threads,
                    "global_batch": global_batch, "warmup": args.warmup, "repeats": args.repeats}
            cmd = mpirun_command(ranks) + [sys.executable, "-m", "saltatory.bench.distributed",
                                           "--worker", json.dumps(spec)]
            print(f"{scaling}: {ranks} rank(s) x {threads} thread(s), global batch {global_batch}", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(threads))
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"worker failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            record = {"workload": w.name, "sizes": list(w.sizes), "scaling": scaling, "threads": threads,
                      "global_batch": global_batch, "activity": args.activity, **json.loads(lines[-1])}
            if not record["in_sync"]:
                raise SystemExit(f"ranks diverged: {record}")
            records.append(record)
    for r in records:
        base = next((b for b in records if b["scaling"] == r["scaling"] and b["ranks"] == 1
                     and b["threads"] == r["threads"]), None)
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"] if base else float("nan")
        r["efficiency"] = r["speedup"] / r["ranks"]
    print(table(records))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
