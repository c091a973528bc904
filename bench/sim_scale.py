"""Simulator scale: wall and CPU time, events per second and peak memory against the number of MNs.

    python bench/sim_scale.py [--mns 1000,10000,100000] [--hours 1,1,0.05] [-n 3,1,1]
                              [--mags 100] [--mode context] [--dwell 20,60] [--seed 1]
                              [--no-rows] [--profile DIR]

The embedded default scenario resized: 2 LMAs, ``--mags`` MAGs on a
square-ish grid, the given MNs. ``--hours`` and ``-n`` (repetitions) are
given per size, in the order of ``--mns`` (one value: every size). Every run
is a fresh process (so its peak RSS is its own) with the same seed, so the
repetitions differ only by the machine. Prints per size the median [min-max]
of wall seconds, CPU seconds and events per wall second, the events and
handovers of the run and the largest peak RSS. A size simulated for less
than an hour also gets its wall time scaled to one hour (linear in simulated
time, labelled as extrapolated: rows, and so memory, grow the same way).
``--no-rows`` runs as ``mcproxy-pmip-sim run --no-rows`` does, keeping each
mode's tally instead of its rows.
``--profile DIR`` adds one run per size under cProfile, not counted in the
figures, and writes ``DIR/sim-<mns>.prof`` (read with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mcproxy_pmip_sim.domain import Simulator
from mcproxy_pmip_sim.scenario import Scenario, default_scenario, with_values


def resized(mns: int, mags: int, hours: float, dwell: tuple[float, float]) -> Scenario:
    """The default scenario at this size and dwell, checked as a loaded scenario is."""
    columns = next(c for c in range(int(mags ** 0.5), 0, -1) if mags % c == 0)
    return with_values(default_scenario(),
                       {"mns": mns, "mags": mags, "grid_columns": columns,
                        "duration_interval": hours * 3600.0,
                        "mobility.dwell_min_interval": dwell[0],
                        "mobility.dwell_max_interval": dwell[1]}, "sim_scale")


def one(mns: int, mags: int, hours: float, mode: str, seed: int, dwell: tuple[float, float],
        keep_rows: bool, profile: str | None = None) -> dict[str, float]:
    scenario = resized(mns, mags, hours, dwell)
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    sim = Simulator(scenario, mode, seed, keep_rows=keep_rows)
    if profiler is not None:
        profiler.runcall(sim.run)
        profiler.dump_stats(profile)
    else:
        sim.run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "events": sim.events, "events_per_s": sim.events / wall,
            "handovers": sim.counters()["handovers"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spread(values: list[float], digits: int = 1) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}-{max(values):.{digits}f}]")


def per_size(text: str, sizes: int, kind: type) -> list:
    values = [kind(v) for v in text.split(",")]
    if len(values) == 1:
        return values * sizes
    if len(values) != sizes:
        raise SystemExit(f"give one value or one per size (--mns has {sizes}): {text}")
    return values


def dwell_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want MIN,MAX seconds: {text}") from None
    return low, high


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mns", default="1000,10000,100000")
    parser.add_argument("--hours", default="1,1,0.05", help="simulated hours, per size")
    parser.add_argument("-n", default="3,1,1", help="repetitions, per size")
    parser.add_argument("--mags", type=int, default=100)
    parser.add_argument("--mode", default="context")
    parser.add_argument("--dwell", default=(20.0, 60.0), type=dwell_range,
                        help="seconds in a cell: MIN,MAX (default 20,60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-rows", action="store_true", help="keep the tally, not the rows")
    parser.add_argument("--profile", metavar="DIR", help="profile each size's first run into DIR")
    parser.add_argument("--child", nargs=2, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    dwell_min, dwell_max = args.dwell
    if args.child:
        print(json.dumps(one(int(args.child[0]), args.mags, args.child[1], args.mode, args.seed,
                             args.dwell, not args.no_rows, args.profile)))
        return 0
    sizes = [int(v) for v in args.mns.split(",")]
    hours = per_size(args.hours, len(sizes), float)
    repetitions = per_size(args.n, len(sizes), int)
    for mns, duration in zip(sizes, hours):
        try:
            resized(mns, args.mags, duration, args.dwell)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    for mns, duration, n in zip(sizes, hours, repetitions):
        runs = []
        command = [sys.executable, __file__, "--mags", str(args.mags), "--mode", args.mode,
                   "--seed", str(args.seed), "--dwell", f"{dwell_min},{dwell_max}",
                   "--child", str(mns), str(duration)] + (["--no-rows"] if args.no_rows else [])
        for _ in range(n):
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout))
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            subprocess.run(command + ["--profile", str(Path(args.profile) / f"sim-{mns}.prof")],
                           capture_output=True, check=True)
        walls = [r["wall_s"] for r in runs]
        line = (f"{mns} MNs x {args.mags} MAGs x 2 LMAs, {duration:g} h, {args.mode}, "
                f"dwell {dwell_min:g}-{dwell_max:g} s{', no rows' if args.no_rows else ''}, n={n}: "
                f"wall s {spread(walls)}; CPU s {spread([r['cpu_s'] for r in runs])}; "
                f"events/s {spread([r['events_per_s'] for r in runs], 0)}; "
                f"events {runs[0]['events']}; handovers {runs[0]['handovers']} "
                f"({runs[0]['handovers'] / (mns * duration):.1f} per MN and hour); "
                f"peak RSS MB {max(r['peak_rss_mb'] for r in runs):.0f}")
        if duration < 1.0:
            line += (f"; EXTRAPOLATED to 1 h (x{1 / duration:g}): "
                     f"wall s {statistics.median(walls) / duration:.0f}")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
