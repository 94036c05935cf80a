#!/usr/bin/env python3
"""A/B timing of the LIF training step on the shd-paper stack, before and after a change.

Measures one whole training pass (forward + backward) of the shd-paper stack (bench_stack's
ShdPaperStep: 700-974-974-974-20, B = 48, T = 100, sparse mode) at 1 % and 5 % activity with two
builds of the library in the same run, alternating them, and what learnable alpha and theta1 cost
on that step (ShdPaperStepLearnable: the same workload with dL/dalpha and dL/dtheta1). See
docs/benchmarks-ab.md.

Usage:
    python3 benchmarks/ab_step.py [--before REV] [--after REV|worktree] [--rounds N]
                                  [--min-time S] [--warmup S] [--out results.json] [--jobs J]

    --before REV   the baseline commit (default 8a518dd, the commit before the neuron-unit refactor)
    --after X      'worktree' (default): this checkout as it is now, from build/cpp when that build
                   is up to date, otherwise built into build/ab/after; or a commit REV
    --rounds N     rounds of the alternation (default 5)
    --min-time S   Google Benchmark's minimum time per run, in seconds (default 2)
    --warmup S     untimed warm-up per run before it, in seconds (default 0.5): the first
                   iterations of a process pay for first-touch allocations
    --out FILE     raw samples, medians and ratios as JSON (default benchmarks/results/ab_step.json)
    --jobs J       parallel compile jobs for the builds (default 2)

A commit REV is checked out with `git worktree add --detach build/ab/src-<rev>` (reused when
present) and only the bench_stack target is built, Release, without tests, CUDA or Poplar, into
build/ab/build-<rev> (several minutes on two cores the first time; later runs reuse the build).

Every round runs, per activity, the three variants before:ShdPaperStep/<a>/0,
after:ShdPaperStep/<a>/0 and after:ShdPaperStepLearnable/<a>, each as its own bench_stack process,
in an order rotated by the round, so that slow drifts of the machine fall on all variants alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AB = REPO / "build" / "ab"
DEFAULT_BEFORE = "8a518dd"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ab_step.json"
ACTIVITIES = (10, 50)  # per mille, ShdPaperStep's first argument
VARIANTS = ("before", "after", "learnable")
BENCH_REL = Path("benchmarks") / "cpp" / "bench_stack"
# What goes into bench_stack: the up-to-date check of build/cpp looks at these.
SOURCES = ("CMakeLists.txt", "cmake", "include", "src", "benchmarks/cpp")
TIME_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def say(msg: str) -> None:
    print(f"[ab_step] {msg}", flush=True)


def run(cmd: list[str], what: str, cwd: Path | None = None, log: Path | None = None) -> str:
    """Runs cmd; returns its stdout. On failure stops with the command and its output's tail."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise SystemExit(f"ab_step: {what}: cannot run {cmd[0]}: {e}") from e
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        where = f" (full log: {log})" if log is not None else ""
        raise SystemExit(
            f"ab_step: {what} failed (exit {proc.returncode}): {' '.join(cmd)}{where}\n{tail}"
        )
    return proc.stdout


def git(*args: str, cwd: Path = REPO) -> str:
    return run(["git", *args], f"git {args[0]}", cwd=cwd).strip()


def resolve(rev: str) -> tuple[str, str]:
    """(full commit, short name) of a revision; stops when it names no commit."""
    try:
        full = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            cwd=REPO, capture_output=True, text=True, check=False,
        )
    except OSError as e:
        raise SystemExit(f"ab_step: cannot run git: {e}") from e
    if full.returncode != 0 or not full.stdout.strip():
        raise SystemExit(f"ab_step: {rev!r} is not a commit of {REPO}")
    commit = full.stdout.strip()
    return commit, git("rev-parse", "--short", commit)


def configure_and_build(src: Path, build: Path, jobs: int) -> Path:
    """Configures (once) a minimal Release build of src in build and builds bench_stack there."""
    build.mkdir(parents=True, exist_ok=True)
    if not (build / "CMakeCache.txt").exists():
        cmd = ["cmake", "-S", str(src), "-B", str(build)]
        if shutil.which("ninja"):
            cmd += ["-G", "Ninja"]
        cmd += [
            "-DCMAKE_BUILD_TYPE=Release",
            "-DSALTATORY_BUILD_TESTS=OFF",
            "-DSALTATORY_BUILD_BENCHMARKS=ON",
            "-DSALTATORY_BUILD_PYTHON=OFF",
            "-DSALTATORY_ENABLE_CUDA=OFF",
            "-DSALTATORY_ENABLE_POPLAR=OFF",
        ]
        say(f"configuring {build.relative_to(REPO)}")
        run(cmd, "cmake configure", log=build / "ab-configure.log")
    say(f"building bench_stack in {build.relative_to(REPO)} (-j{jobs}; minutes the first time)")
    run(
        ["cmake", "--build", str(build), "--target", "bench_stack", "--parallel", str(jobs)],
        "cmake build", log=build / "ab-build.log",
    )
    binary = build / BENCH_REL
    if not binary.is_file():
        raise SystemExit(f"ab_step: the build produced no {binary}")
    return binary


def build_rev(rev: str, jobs: int) -> dict:
    """Worktree build/ab/src-<rev> of a commit, its bench_stack in build/ab/build-<rev>."""
    commit, short = resolve(rev)
    src = AB / f"src-{short}"
    if src.exists():
        head = git("rev-parse", "HEAD", cwd=src)
        if head != commit:
            raise SystemExit(
                f"ab_step: {src} exists but is at {head}, not {commit} ({rev}); remove it with "
                f"`git worktree remove {src}`"
            )
        say(f"reusing worktree {src.relative_to(REPO)} ({short})")
    else:
        AB.mkdir(parents=True, exist_ok=True)
        say(f"git worktree add --detach {src.relative_to(REPO)} {short}")
        run(["git", "worktree", "add", "--detach", str(src), commit], "git worktree add", cwd=REPO)
    binary = configure_and_build(src, AB / f"build-{short}", jobs)
    subject = git("log", "-1", "--format=%s", commit)
    return {"rev": rev, "commit": commit, "subject": subject, "dirty": False,
            "binary": str(binary.relative_to(REPO))}


def newest_source_mtime() -> float:
    files = git("ls-files", "-co", "--exclude-standard", "--", *SOURCES).splitlines()
    return max((REPO / f).stat().st_mtime for f in files if (REPO / f).is_file())


def usable_main_build() -> Path | None:
    """build/cpp's bench_stack when it is a plain Release build newer than every source."""
    binary = REPO / "build" / "cpp" / BENCH_REL
    cache = REPO / "build" / "cpp" / "CMakeCache.txt"
    if not binary.is_file() or not cache.is_file():
        return None
    text = cache.read_text(errors="replace")
    plain = (
        re.search(r"^CMAKE_BUILD_TYPE:\w+=Release$", text, re.M)
        and not re.search(r"^SALTATORY_NATIVE:\w+=(ON|TRUE|1)$", text, re.M | re.I)
        and not re.search(r"^SALTATORY_SANITIZE:\w+=\S", text, re.M)
    )
    if not plain or binary.stat().st_mtime < newest_source_mtime():
        return None
    return binary


def build_worktree(jobs: int) -> dict:
    head = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", *SOURCES))
    binary = usable_main_build()
    if binary is not None and "ShdPaperStepLearnable" in "".join(list_benchmarks(binary)):
        say(f"using {binary.relative_to(REPO)} (up to date with the working tree)")
    else:
        binary = configure_and_build(REPO, AB / "after", jobs)
    return {"rev": "worktree", "commit": head, "subject": git("log", "-1", "--format=%s"),
            "dirty": dirty, "binary": str(binary.relative_to(REPO))}


def list_benchmarks(binary: Path) -> list[str]:
    return run([str(binary), "--benchmark_list_tests=true"], f"{binary} --benchmark_list_tests")\
        .split()


def benchmark_library_version() -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libbenchmark-dev"],
                             capture_output=True, text=True, check=False)
    except OSError:
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def min_time_flag(seconds: float, version: str | None) -> str:
    """Google Benchmark < 1.8 takes a bare number of seconds; 1.8 and later want a unit suffix."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    modern = m is not None and (int(m.group(1)), int(m.group(2))) >= (1, 8)
    return f"--benchmark_min_time={seconds:g}{'s' if modern else ''}"


def measure(binary: Path, name: str, flags: list[str]) -> tuple[dict, dict]:
    """One bench_stack process running exactly `name`: (its result entry, the run's context)."""
    out = run([str(binary), f"--benchmark_filter=^{re.escape(name)}$", *flags,
               "--benchmark_format=json"], f"{name} ({binary})")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as e:
        raise SystemExit(f"ab_step: {binary} {name}: output is not JSON ({e}):\n{out[-2000:]}")
    entries = [b for b in doc.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
    if len(entries) != 1:
        raise SystemExit(f"ab_step: {binary} {name}: expected one result, got {len(entries)}")
    return entries[0], doc.get("context", {})


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def threads() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what TBB uses by default
    except AttributeError:
        return os.cpu_count() or 1


def fmt_ratio(median: float | None, per_round: list[float]) -> str:
    if median is None:
        return "-"
    if len(per_round) < 2:
        return f"{median:.3f}"
    return f"{median:.3f} [{min(per_round):.2f}-{max(per_round):.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(
        description="A/B timing of the shd-paper LIF training step (see the module docstring).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage:")[1] if __doc__ else None,
    )
    ap.add_argument("--before", default=DEFAULT_BEFORE, metavar="REV",
                    help=f"baseline commit (default {DEFAULT_BEFORE})")
    ap.add_argument("--after", default="worktree", metavar="REV|worktree",
                    help="commit to compare, or 'worktree' for this checkout (default)")
    ap.add_argument("--rounds", type=int, default=5, metavar="N", help="rounds (default 5)")
    ap.add_argument("--min-time", type=float, default=2.0, metavar="S",
                    help="Google Benchmark minimum time per run in seconds (default 2)")
    ap.add_argument("--warmup", type=float, default=0.5, metavar="S",
                    help="untimed warm-up per run in seconds (default 0.5)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="FILE",
                    help="JSON output (default benchmarks/results/ab_step.json)")
    ap.add_argument("--jobs", type=int, default=2, metavar="J",
                    help="parallel compile jobs (default 2)")
    args = ap.parse_args()
    if args.rounds < 1 or args.min_time <= 0 or args.jobs < 1 or args.warmup < 0:
        ap.error("--rounds and --jobs must be at least 1, --min-time positive, --warmup >= 0")
    for tool in ("git", "cmake"):
        if shutil.which(tool) is None:
            raise SystemExit(f"ab_step: {tool} is not on PATH")

    before = build_rev(args.before, args.jobs)
    after = build_worktree(args.jobs) if args.after == "worktree" else build_rev(args.after, args.jobs)

    names = {
        "before": lambda a: f"ShdPaperStep/{a}/0/real_time",
        "after": lambda a: f"ShdPaperStep/{a}/0/real_time",
        "learnable": lambda a: f"ShdPaperStepLearnable/{a}/real_time",
    }
    builds = {"before": before, "after": after, "learnable": after}
    available = {v: set(list_benchmarks(REPO / b["binary"])) for v, b in builds.items()}
    variants = []
    for v in VARIANTS:
        missing = [names[v](a) for a in ACTIVITIES if names[v](a) not in available[v]]
        if not missing:
            variants.append(v)
        elif v == "learnable":
            say(f"{builds[v]['binary']} has no {missing[0]}: learnable variant skipped")
        else:
            raise SystemExit(f"ab_step: {builds[v]['binary']} has no benchmark {missing[0]}")

    version = benchmark_library_version()
    flag = min_time_flag(args.min_time, version)
    # A bare number of seconds in every version so far.
    flags = [flag, f"--benchmark_min_warmup_time={args.warmup:g}"]
    cpu, n_threads = cpu_model(), threads()
    load_start = os.getloadavg()
    say(f"{args.rounds} rounds x {len(ACTIVITIES)} activities x {len(variants)} variants, "
        f"{' '.join(flags)}; CPU {cpu}, {n_threads} threads")

    samples: list[dict] = []
    context: dict = {}
    for r in range(args.rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        for a in ACTIVITIES:
            for i, v in enumerate(order):
                name = names[v](a)
                entry, ctx = measure(REPO / builds[v]["binary"], name, flags)
                context = context or ctx
                ms = entry["real_time"] * TIME_UNITS_MS[entry.get("time_unit", "ns")]
                cpu_ms = entry["cpu_time"] * TIME_UNITS_MS[entry.get("time_unit", "ns")]
                samples.append({
                    "round": r, "activity_per_mille": a, "variant": v, "position": i,
                    "benchmark": name, "binary": builds[v]["binary"],
                    "real_time_ms": ms, "cpu_time_ms": cpu_ms,
                    "iterations": entry.get("iterations"),
                    "hidden_activity": entry.get("hidden_activity"),
                    "samples_per_s": entry.get("samples_per_s"),
                })
                say(f"round {r + 1}/{args.rounds} a={a / 10:g}% {v:9s} {ms:9.2f} ms "
                    f"({entry.get('iterations')} it)")

    def times(a: int, v: str) -> list[float]:
        return [s["real_time_ms"] for s in samples if s["activity_per_mille"] == a
                and s["variant"] == v]

    def paired(a: int, num: str, den: str) -> list[float]:
        by = {(s["round"], s["variant"]): s["real_time_ms"] for s in samples
              if s["activity_per_mille"] == a}
        return [by[(r, num)] / by[(r, den)] for r in range(args.rounds)
                if (r, num) in by and (r, den) in by]

    results = []
    for a in ACTIVITIES:
        med = {v: statistics.median(times(a, v)) if times(a, v) else None for v in VARIANTS}
        best = {v: min(times(a, v)) if times(a, v) else None for v in VARIANTS}
        act = [s["hidden_activity"] for s in samples if s["activity_per_mille"] == a
               and s["variant"] == "after" and s["hidden_activity"] is not None]
        ratio = {
            "after_over_before": med["after"] / med["before"],
            "learnable_over_after": (med["learnable"] / med["after"]
                                     if med["learnable"] is not None else None),
        }
        # The fastest run of each variant is the one the machine disturbed least: on a shared,
        # noisy machine the ratio of the minima is the steadier estimate of what a change costs.
        ratio_of_minima = {
            "after_over_before": best["after"] / best["before"],
            "learnable_over_after": (best["learnable"] / best["after"]
                                     if best["learnable"] is not None else None),
        }
        per_round = {"after_over_before": paired(a, "after", "before"),
                     "learnable_over_after": paired(a, "learnable", "after")}
        results.append({
            "activity_per_mille": a,
            "hidden_activity": statistics.median(act) if act else None,
            "median_ms": med, "min_ms": best, "ratios": ratio,
            "ratios_of_minima": ratio_of_minima, "ratios_per_round": per_round,
        })

    header = ("activity", "hidden act.", "before ms", "after ms", "learnable ms",
              "after/before", "learnable/after", "of minima")
    rows = []
    for res in results:
        med = res["median_ms"]
        rows.append((
            f"{res['activity_per_mille'] / 10:g} %",
            f"{res['hidden_activity']:.4f}" if res["hidden_activity"] is not None else "-",
            *(f"{med[v]:.2f}" if med[v] is not None else "-" for v in VARIANTS),
            fmt_ratio(res["ratios"]["after_over_before"], res["ratios_per_round"]["after_over_before"]),
            fmt_ratio(res["ratios"]["learnable_over_after"],
                      res["ratios_per_round"]["learnable_over_after"]),
            " / ".join("-" if res["ratios_of_minima"][k] is None
                       else f"{res['ratios_of_minima'][k]:.3f}"
                       for k in ("after_over_before", "learnable_over_after")),
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    print()
    print(f"shd-paper training step (ShdPaperStep, sparse), {args.rounds} rounds, "
          f"min time {args.min_time:g} s + warm-up {args.warmup:g} s per run; medians of real time")
    load_end = os.getloadavg()
    print(f"CPU: {cpu}, {n_threads} threads; 1-minute load average {load_start[0]:.2f} at the start, "
          f"{load_end[0]:.2f} at the end")
    print(f"before: {before['rev']} ({before['commit'][:10]})   after: {after['rev']} "
          f"({after['commit'][:10]}{', uncommitted changes' if after['dirty'] else ''})")
    print(line(header))
    for row in rows:
        print(line(row))
    print("ratios: of the medians; in brackets the range of the per-round ratios; "
          "'of minima': after/before and learnable/after of each variant's fastest run")

    doc = {
        "workload": "shd-paper-step",
        "sizes": [700, 974, 974, 974, 20], "batch": 48, "steps": 100, "mode": "sparse",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rounds": args.rounds, "min_time_s": args.min_time, "warmup_s": args.warmup,
        "benchmark_flags": flags,
        "activities_per_mille": list(ACTIVITIES),
        "before": before, "after": after,
        "env": {
            "cpu": cpu, "threads": n_threads, "cores": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine(),
            "benchmark_library": version,
            "load_average_start": list(load_start), "load_average_end": list(load_end),
            "benchmark_context": {k: context.get(k) for k in (
                "host_name", "num_cpus", "mhz_per_cpu", "cpu_scaling_enabled",
                "library_build_type", "load_avg") if k in context},
        },
        "results": results,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
