"""Multicast disruption of PMIPv6 handovers per mode: static, plugin, context (docs/scenarios.md item 21).

Runs a testbed scenario (the embedded default, or ``--scenario FILE``) N times
in each mode with mcproxy-pmip on the LMA and the MAGs, then prints one table
per mode: a row per handover and stream, each metric as the median and the
spread (min-max) over the repetitions, with how many repetitions measured it
(a value is missing when the stream did not come back, or no report was
needed, within the handover's window):

- gap at the MN (ms): last packet before the detach to the first after the attach;
- packets lost at the stream's rate (1000 packet/s in the default scenario);
- attach -> the new MAG's upstream join report (ms);
- attach -> first packet at the MN (ms).

Each table's header names the data plane the daemons ran on (``--data-plane
auto|mroute|nftables``, default the scenario's ``options.data_plane``, else
auto). Needs root. Every run's results folder is kept under ``--out``.

    python bench/handover_bench.py                        # default scenario, 3 runs per mode
    python bench/handover_bench.py -n 5 --modes context   # one mode
    python bench/handover_bench.py --data-plane nftables  # every daemon on nftables
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcproxy_pmip.config.model import DATA_PLANES
from mcproxy_pmip_testbed.daemons import mcproxy_pmip_spec
from mcproxy_pmip_testbed.planes import DataPlaneError, plane_summary
from mcproxy_pmip_testbed.runner import run_scenario
from mcproxy_pmip_testbed.scenario import MODES, Scenario, default_scenario, load_scenario

METRICS = (("gap_ms", "gap ms"), ("lost", "lost"),
           ("attach_to_upstream_report_ms", "attach->report ms"),
           ("attach_to_first_packet_ms", "attach->packet ms"))


def summarize(values: Sequence[float | None], repetitions: int) -> str:
    """``median [min-max] k/n``; ``-`` when no repetition measured it."""
    measured = [v for v in values if v is not None]
    if not measured:
        return f"- 0/{repetitions}"
    low, high, middle = min(measured), max(measured), statistics.median(measured)
    digits = 0 if all(float(v).is_integer() for v in measured) else 1
    return f"{middle:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}] {len(measured)}/{repetitions}"


def mode_table(mode: str, runs: Sequence[dict[str, Any]]) -> str:
    """One mode's table: rows per (handover, stream), metric columns over the runs."""
    keyed: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        for row in run["handovers"]:
            key = (row["handover"], row["mn"], row["from_mag"], row["to_mag"], row["family"])
            keyed.setdefault(key, []).append(row)
    header = ["#", "mn", "from", "to", "fam", *(title for _, title in METRICS)]
    cells = [header]
    for key, rows in sorted(keyed.items()):
        cells.append([str(part) for part in key]
                     + [summarize([r[name] for r in rows], len(runs)) for name, _ in METRICS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    planes = "; ".join(sorted({plane_summary(run["data_planes"]) for run in runs}))
    lines = [f"mode {mode} ({len(runs)} runs), data plane {planes}: median [min-max] measured/runs"]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def run_mode(scenario: Scenario, mode: str, repetitions: int, out: Path) -> list[dict[str, Any]]:
    spec = mcproxy_pmip_spec()
    runs = []
    for index in range(repetitions):
        folder = out / f"{mode}-{index + 1}"
        print(f"run {mode} {index + 1}/{repetitions} -> {folder}", file=sys.stderr, flush=True)
        runs.append(run_scenario(scenario, mode, folder, spec))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--repetitions", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--scenario", type=Path, help="scenario YAML (default: the embedded one)")
    parser.add_argument("--data-plane", choices=DATA_PLANES,
                        help="data plane of the daemons (default: the scenario's, else auto)")
    parser.add_argument("--out", type=Path,
                        default=Path("results") / f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or args.repetitions < 1:
        parser.error(f"unknown mode(s) {unknown}" if unknown else "repetitions must be at least 1")
    scenario = (load_scenario(args.scenario.read_text(), str(args.scenario))
                if args.scenario else default_scenario())
    if args.data_plane:
        scenario = dataclasses.replace(scenario, options=dataclasses.replace(
            scenario.options, data_plane=args.data_plane))
    tables = {}
    for mode in modes:
        try:
            runs = run_mode(scenario, mode, args.repetitions, args.out)
        except DataPlaneError as exc:
            print(exc, file=sys.stderr)
            return 2
        tables[mode] = mode_table(mode, runs)
        print(tables[mode] + "\n", flush=True)
    (args.out / "bench.json").write_text(json.dumps(tables, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
