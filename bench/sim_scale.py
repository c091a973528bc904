"""Simulator scale: wall time, events per second and peak memory against the number of MNs.

    python bench/sim_scale.py [--mns 1000,10000] [--mags 100] [--hours 1] [--mode context] [-n 1]

Each size runs in a fresh process (so peak RSS is that run's) on the embedded
default scenario resized: 2 LMAs, ``--mags`` MAGs on a square-ish grid, the
given MNs, 1 simulated hour by default. Prints per size the median [min-max]
of ``-n`` runs of wall seconds and events/s, and the largest peak RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time


def one(mns: int, mags: int, hours: float, mode: str, seed: int) -> dict[str, float]:
    from mcproxy_pmip_sim.domain import Simulator
    from mcproxy_pmip_sim.scenario import default_scenario

    columns = next(c for c in range(int(mags ** 0.5), 0, -1) if mags % c == 0)
    scenario = dataclasses.replace(default_scenario(), mns=mns, mags=mags, grid_columns=columns,
                                   duration_interval=hours * 3600.0)
    started = time.perf_counter()
    sim = Simulator(scenario, mode, seed).run()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "events": sim.events, "events_per_s": sim.events / wall,
            "handovers": sim.counters()["handovers"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mns", default="1000,10000")
    parser.add_argument("--mags", type=int, default=100)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--mode", default="context")
    parser.add_argument("-n", type=int, default=1)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child[0], args.mags, args.hours, args.mode, args.child[1])))
        return 0
    for mns in (int(v) for v in args.mns.split(",")):
        runs = []
        for seed in range(1, args.n + 1):
            done = subprocess.run([sys.executable, __file__, "--mags", str(args.mags), "--hours",
                                   str(args.hours), "--mode", args.mode, "--child", str(mns),
                                   str(seed)], capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout))
        print(f"{mns} MNs x {args.mags} MAGs x 2 LMAs, {args.hours:g} h, {args.mode}, n={args.n}: "
              f"wall s {spread([r['wall_s'] for r in runs])}; "
              f"events/s {spread([r['events_per_s'] for r in runs])}; "
              f"events {runs[0]['events']}; handovers {runs[0]['handovers']}; "
              f"peak RSS MB {max(r['peak_rss_mb'] for r in runs):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
