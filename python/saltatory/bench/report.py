"""The benchmark's table, ratios, machine summary and plot."""

from __future__ import annotations

import platform
import statistics


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _point(r: dict) -> tuple:
    """A workload point: the workload, its sizes, the activity and Saltatory's neuron model (the
    baselines run the LIF)."""
    return (r["workload"], tuple(r["sizes"]), r["activity"], r.get("neuron", "lif"))


def _name(r: dict) -> str:
    """The record's library as the tables name it: saltatory-<mode>[<neuron> unless LIF]."""
    if r["library"] != "saltatory":
        return r["library"]
    neuron = r.get("neuron", "lif")
    return f"saltatory-{r['mode']}" + ("" if neuron == "lif" else f"[{neuron}]")


def fastest_peers(records: list[dict]) -> dict:
    """The fastest peer (any library but Saltatory; they run the LIF) of each workload point."""
    best = {}
    for r in records:
        if "error" not in r and r["library"] != "saltatory":
            point = _point(r)
            if point not in best or r["samples_per_s"] > best[point]["samples_per_s"]:
                best[point] = r
    return best


def add_ratios(records: list[dict]) -> None:
    """Adds, to each successful record, its throughput over snnTorch's, over the fastest peer's
    (named in ``peer``) and over Saltatory dense's at the same workload point (where those ran),
    and for sparse records over its 1-thread run."""
    ok = [r for r in records if "error" not in r]
    by_key = {(_point(r), r["library"], r["mode"], r["threads"]): r for r in ok}
    peers = fastest_peers(ok)
    for r in ok:
        peer = peers.get(_point(r))
        if r["library"] == "saltatory" and peer is not None:
            r["peer"], r["vs_peer"] = peer["library"], r["samples_per_s"] / peer["samples_per_s"]
        for name, lib, mode in (("vs_snntorch", "snntorch", "dense"),
                                ("vs_saltatory_dense", "saltatory", "dense")):
            base = [b for (p, l, m, _), b in by_key.items() if p == _point(r) and l == lib and m == mode]
            if base and base[0] is not r:
                r[name] = r["samples_per_s"] / base[0]["samples_per_s"]
        stored = by_key.get((_point(r), "saltatory", "sparse", r["threads"]))
        if r["library"] == "saltatory" and r["mode"] == "recompute" and stored is not None:
            if r.get("peak_mem_bytes") and stored.get("peak_mem_bytes"):
                r["vs_stored_memory"] = stored["peak_mem_bytes"] / r["peak_mem_bytes"]
            # per round (the two ran next to each other in each), then the median of those
            rounds = zip(r.get("round_step_s", []), stored.get("round_step_s", []))
            r["round_vs_stored_time"] = [mine / theirs for mine, theirs in rounds]
            r["vs_stored_time"] = (statistics.median(r["round_vs_stored_time"])
                                   if r["round_vs_stored_time"] else r["step_s"] / stored["step_s"])
        if r["library"] == "saltatory" and r["mode"] == "sparse" and r["threads"] > 1:
            one = by_key.get((_point(r), "saltatory", "sparse", 1))
            if one is not None:
                r["vs_one_thread"] = r["samples_per_s"] / one["samples_per_s"]


def _fmt(value, spec: str) -> str:
    """``value`` formatted by ``spec``, or a dash padded to the spec's width."""
    return format("-", f">{spec.split('.')[0]}") if value is None else format(value, spec)


def table(records: list[dict]) -> str:
    head = (f"{'workload':<13} {'sizes':<22} {'a':>6} {'library':<24} {'thr':>3} {'act %':>6} "
            f"{'samples/s':>10} {'x snnTorch':>10} {'x peer':>6} {'peer':<12} {'x dense':>8} "
            f"{'x 1 thr':>7} {'peak MB':>8} "
            f"{'bound':>6} {'drop %':>6}")
    lines = [head, "-" * len(head)]
    for r in records:
        name = _name(r)
        sizes = "-".join(str(s) for s in r["sizes"])
        if "error" in r:
            lines.append(f"{r['workload']:<13} {sizes:<22} {r['activity']:>6.3f} {name:<24} "
                         f"{r['threads']:>3}  not run: {r['error']}")
            continue
        peak = None if r.get("peak_mem_bytes") is None else r["peak_mem_bytes"] / 2**20
        drop = r.get("dropped_fraction")
        lines.append(
            f"{r['workload']:<13} {sizes:<22} {r['activity']:>6.3f} {name:<24} {r['threads']:>3} "
            f"{100 * r['hidden_activity']:>6.2f} {r['samples_per_s']:>10.1f} "
            f"{_fmt(r.get('vs_snntorch'), '10.1f')} {_fmt(r.get('vs_peer'), '6.1f')} "
            f"{r.get('peer', '-'):<12} {_fmt(r.get('vs_saltatory_dense'), '8.1f')} "
            f"{_fmt(r.get('vs_one_thread'), '7.2f')} {_fmt(peak, '8.1f')} "
            f"{_fmt(r.get('bound_fraction'), '6.2f')} {_fmt(None if drop is None else 100 * drop, '6.2f')}")
    lines.append("a: target activity; act %: measured hidden activity; x ...: samples/s ratios at the "
                 "same point; peer: the fastest peer library there (x peer is over it); bound: "
                 "(weight-row bytes / gather bandwidth) / step time")
    return "\n".join(lines)


def memory_table(records: list[dict]) -> str:
    """Checkpointing in time against the stored-membrane sparse path, per workload point."""
    head = (f"{'workload':<13} {'T':>5} {'a':>6} {'thr':>3} {'stored MB':>10} {'recompute MB':>12} "
            f"{'memory /':>9} {'step time x':>11}")
    lines = ["BPTT memory: sparse path storing every membrane vs recomputing them (checkpointing in time)",
             head, "-" * len(head)]
    for r in records:
        if "vs_stored_time" not in r:
            continue
        stored = r["peak_mem_bytes"] * r["vs_stored_memory"] if r.get("vs_stored_memory") else None
        lines.append(f"{r['workload']:<13} {r['steps']:>5} {r['activity']:>6.3f} {r['threads']:>3} "
                     f"{_fmt(None if stored is None else stored / 2**20, '10.1f')} "
                     f"{_fmt(None if r.get('peak_mem_bytes') is None else r['peak_mem_bytes'] / 2**20, '12.1f')} "
                     f"{_fmt(r.get('vs_stored_memory'), '9.2f')} {r['vs_stored_time']:>11.2f}")
    lines.append("memory /: stored peak over recompute peak (higher is better); step time x: recompute "
                 "step time over stored (lower is better; with --rounds, the median of the rounds' ratios)")
    return "\n".join(lines)


def rounds_summary(records: list[dict]) -> str:
    """How much each record's step time moved between rounds, and the recompute records' step time
    over the stored path's in each round, whose median is their ``vs_stored_time``."""
    ok = [r for r in records if "error" not in r and len(r.get("round_step_s", [])) > 1]
    if not ok:
        return "rounds: no record ran in more than one round"
    spreads = [max(r["round_step_s"]) / min(r["round_step_s"]) - 1 for r in ok]
    lines = [f"rounds: {len(ok[0]['round_step_s'])}, interleaved; a record's step time moved by "
             f"{100 * statistics.median(spreads):.0f} % between its fastest and slowest round "
             f"(median over records; at most {100 * max(spreads):.0f} %)"]
    for r in ok:
        if r.get("round_vs_stored_time"):
            ratios = ", ".join(f"{x:.2f}" for x in r["round_vs_stored_time"])
            lines.append(f"  recompute x stored, {r['workload']} {'-'.join(map(str, r['sizes']))} "
                         f"a={r['activity']} x{r['threads']}: {ratios} by round (median "
                         f"{r['vs_stored_time']:.2f})")
    return "\n".join(lines)


def machine_summary(probes: dict, env: dict) -> str:
    versions = ", ".join(f"{name} {env.get(name)}" for name in
                         ("torch", "snntorch", "norse", "spikingjelly", "jax", "spyx"))
    lines = [f"machine: {env['cpu']}, {env['cores']} cores; {versions}"]
    for (sizes, threads), p in sorted(probes.items()):
        rows, cols = p["probe_matrix"]
        lines.append(f"probe {threads} thread(s), {rows}x{cols} matrix: row gather "
                     f"{p['gather_bytes_per_s'] / 1e9:.1f} GB/s, multiply-add "
                     f"{p['multiply_add_flop_per_s'] / 1e9:.1f} GFLOP/s ({'FMA' if p['fma'] else 'mul+add'})")
    return "\n".join(lines)


def plot(records: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if "error" not in r]
    panels = sorted({(r["workload"], tuple(r["sizes"])) for r in ok})
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 4), squeeze=False)
    for ax, (workload, sizes) in zip(axes[0], panels):
        lines = {}
        for r in ok:
            if (r["workload"], tuple(r["sizes"])) != (workload, sizes):
                continue
            name = _name(r)
            lines.setdefault(f"{name} x{r['threads']}", []).append((r["activity"], r["samples_per_s"]))
        for label, points in sorted(lines.items()):
            xs, ys = zip(*sorted(points))
            ax.plot([100 * x for x in xs], ys, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("hidden activity (target, %)")
        ax.set_ylabel("training samples/s")
        ax.set_title(f"{workload} {'-'.join(map(str, sizes))}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
