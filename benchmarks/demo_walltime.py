"""Wall time of `synthmix demo` (full or --quick) from a fresh run directory, per stage kind.

    python benchmarks/demo_walltime.py [--quick] [--threads N] [--jobs N] [--out DIR] [--keep]

Runs the real command in a subprocess (fresh run dir, so nothing is reused), then prints:
the total wall time and its ratio to the target (10 min full, 2 min quick), the CPU time of the
demo process (with one torch thread ~ the wall time on an unshared core), seconds per stage
kind from the stages' done markers, the wall time during which each kind was running (the union
of its stages' start..done intervals from events.jsonl: with worker processes the cells' stages
overlap, so their summed seconds exceed the wall time), the machine's load average, and the demo's
headline numbers (mean ± 95 % CI per setup) from results/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the demo config's)")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a fresh temp dir)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: the demo's rule)")
    ap.add_argument("--keep", action="store_true", help="keep the temp run directory")
    args = ap.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="synthmix-demo-")) / "run"
    if out.exists():
        sys.exit(f"{out} exists: the benchmark needs a fresh run directory")
    cmd = [sys.executable, "-m", "synthmix", "demo", "--out", str(out)] + (["--quick"] if args.quick else [])
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    import resource

    load_before = os.getloadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    load_after = os.getloadavg()
    if res.returncode != 0:  # failed cells: report them, and the timing of what ran
        print(res.stderr[-3000:])
        print(f"demo exited with code {res.returncode}: see `synthmix status {out}`")

    target = 120.0 if args.quick else 600.0
    per_kind: dict[str, float] = defaultdict(float)
    cpu_kind: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for done in (out / "stages").glob("*/done.json"):
        d = json.loads(done.read_text())
        per_kind[d["kind"]] += d["seconds"]
        cpu_kind[d["kind"]] += d.get("cpu_seconds", 0.0)
        count[d["kind"]] += 1
    print(f"command: {' '.join(['synthmix', *cmd[3:]])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print(f"wall time: {wall:.0f} s = {wall / 60:.1f} min = {wall / target:.2f} x the {target / 60:.0f}-min target")
    # With one torch thread, CPU time ~ the wall time the demo would take with a core to itself.
    print(f"CPU time of the demo process: {cpu:.0f} s = {cpu / 60:.1f} min = {cpu / target:.2f} x the target "
          f"({cpu / wall:.0%} of one core on average during the run)")
    spans = _spans(out / "events.jsonl")
    busy = _union([iv for ivs in spans.values() for iv in ivs])
    print(f"{'stage kind':<12} {'n':>3} {'stage s':>8} {'CPU s':>8} {'wall s':>8} {'share':>6}")
    for k, s in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        w = _union(spans.get(k, []))
        print(f"{k:<12} {count[k]:>3} {s:>8.1f} {cpu_kind[k]:>8.1f} {w:>8.1f} {w / wall:>6.1%}")
    print(f"{'(startup, aggregation, report: no stage running)':<40} {wall - busy:>8.1f} {(wall - busy) / wall:>6.1%}")
    print("stage s / CPU s: summed over the stages (parallel workers overlap); wall s: time during which "
          "at least one stage of the kind ran")

    summary = json.loads((out / "results" / "summary.json").read_text())
    cols = summary["headline"]
    print("\nheadline (mean ± half 95 % CI over seeds; Δ vs " + str(summary["reference"]) + "):")
    print("setup | " + " | ".join(cols))
    for r in summary["setups"]:
        cells = []
        for c in cols:
            st = r["metrics"].get(c)
            if not st:
                cells.append("–")
                continue
            txt = f"{st['mean']:.3f}" + (f" ± {(st['hi'] - st['lo']) / 2:.3f}" if st.get("lo") is not None else "")
            d = r["diff"].get(c)
            if d and d.get("lo") is not None:
                txt += f" (Δ {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}])"
            cells.append(txt)
        print(f"{r['setup']} | " + " | ".join(cells))
    print(f"\nreport: {out / 'report.html'}")
    if args.out is None and not args.keep:
        shutil.rmtree(out.parent)


def _spans(events: Path) -> dict[str, list[tuple[float, float]]]:
    """{kind: [(start, end)]} of every stage that ran, from the execution log."""
    starts: dict[str, float] = {}
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "start":
            starts[e["key"]] = e["t"]
        elif e["event"] in ("done", "failed") and e["key"] in starts:
            out[e["kind"]].append((starts.pop(e["key"]), e["t"]))
    return out


def _union(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


if __name__ == "__main__":
    main()
