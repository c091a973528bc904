"""Multicast disruption of PMIPv6 handovers per mode, data plane, L2 outage and family (docs/testbed.md).

Compares the static, plugin, context and predictive modes (``--modes``) in
one run, on each data plane of ``--planes`` the kernel allows (a plane it
refuses, e.g. mroute without CONFIG_IP_MROUTE, is skipped with the reason),
with mcproxy-pmip on the LMA and the MAGs. Each run is one testbed scenario:
one LMA, two MAGs, one MN receiving an IPv6 source-specific and an IPv4
any-source stream at ``--rate`` packet/s, and one handover per L2 outage of
``--outages`` (back and forth between the MAGs). Handovers without a context
(static, plugin) are spaced by 11 s, since the new MAG waits for the MN's
answer to its General Query (up to the 10 s Max Response Time); context and
predictive by 2 s.

Printed per mode, plane, outage and family, as the median [min-max] over the
``-n`` repetitions with how many measured it: gap (ms), lost, duplicated,
reordered, attach -> first packet (ms), attach -> last buffered packet (ms,
the last arrival after the attach of a packet sent before it; null when none
was). The definitions are in docs/testbed.md. Needs root; every run's
results folder is kept under ``--out``. About 80 s per repetition and plane
with the defaults.

    python bench/handover_bench.py -n 1                        # every mode, a quick look
    python bench/handover_bench.py -n 3 --modes context,predictive --outages 50
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcproxy_pmip_testbed.daemons import mcproxy_pmip_spec
from mcproxy_pmip_testbed.planes import DataPlaneError
from mcproxy_pmip_testbed.runner import run_scenario
from mcproxy_pmip_testbed.scenario import MODES, Scenario, load_scenario

#: namespaces and socket folders of this bench start with it
PREFIX = "tbp"
PLANES = ("nftables", "mroute")
WAITS_FOR_QUERY = ("static", "plugin")
METRICS = (("gap_ms", "gap ms"), ("lost", "lost"), ("duplicated", "dup"),
           ("reordered", "reo"), ("attach_to_first_packet_ms", "att->first ms"),
           ("binding_attach_to_first_packet_ms", "bind->first ms"),
           ("binding_attach_to_last_buffered_packet_ms", "bind->last buf ms"))


def bench_scenario(mode: str, outages_ms: Sequence[float], rate: float, plane: str) -> Scenario:
    """One handover per outage, mag1 -> mag2 -> mag1 ..., spaced for the mode."""
    spacing = 11.0 if mode in WAITS_FOR_QUERY else 2.0
    warmup = 1.5
    handovers = "\n".join(
        f"  - {{at: {warmup + index * spacing}, mn: mn1, to: mag{2 if index % 2 == 0 else 1}, "
        f"l2_outage_ms: {outage}}}" for index, outage in enumerate(outages_ms))
    return load_scenario(f"""\
topology:
  lmas: [lma1]
  mags: [mag1, mag2]
  mns: [{{name: mn1, lma: lma1, mag: mag1}}]
streams:
  - {{name: v6, family: ipv6, group: "ff3e::8000:1", source_specific: true, rate: {rate}}}
  - {{name: v4, family: ipv4, group: "239.1.1.1", rate: {rate}}}
subscriptions: {{mn1: [v6, v4]}}
handovers:
{handovers}
options: {{warmup_s: {warmup}, tail_s: {spacing}, data_plane: {plane}}}
""", f"<bench {mode}>")


def summarize(values: Sequence[float | None], repetitions: int) -> str:
    """``median [min-max] k/n``; ``-`` when no repetition measured it."""
    measured = [v for v in values if v is not None]
    if not measured:
        return f"- 0/{repetitions}"
    low, high, middle = min(measured), max(measured), statistics.median(measured)
    digits = 0 if all(float(v).is_integer() for v in measured) else 1
    return f"{middle:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}] {len(measured)}/{repetitions}"


def collect(runs: Sequence[dict[str, Any]], outages_ms: Sequence[float],
            ) -> dict[tuple[float, str], list[dict[str, Any]]]:
    """Rows of every run keyed by (planned outage ms, family)."""
    keyed: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for run in runs:
        for row in run["handovers"]:
            keyed.setdefault((outages_ms[row["handover"]], row["family"]), []).append(row)
    return keyed


def table(results: dict[tuple[str, str], list[dict[str, Any]]], outages_ms: Sequence[float],
          repetitions: int) -> str:
    """One line per mode, plane, outage and family; metric columns over the repetitions."""
    header = ["mode", "plane", "l2 ms", "fam", *(title for _, title in METRICS)]
    cells = [header]
    for (mode, plane), runs in results.items():
        keyed = collect(runs, outages_ms)
        for outage, family in sorted(keyed, key=lambda k: (outages_ms.index(k[0]), k[1])):
            rows = keyed[(outage, family)]
            cells.append([mode, plane, f"{outage:g}", family]
                         + [summarize([r.get(name) for r in rows], repetitions)
                            for name, _ in METRICS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"median [min-max] measured/runs over {repetitions} run(s)"]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--repetitions", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--planes", default=",".join(PLANES),
                        help="comma-separated data planes: " + ", ".join(PLANES))
    parser.add_argument("--outages", default="50,20", help="L2 outages in ms, comma-separated")
    parser.add_argument("--rate", type=float, default=1000.0, help="packet/s of each stream")
    parser.add_argument("--out", type=Path,
                        default=Path("results") / f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    planes = [p for p in args.planes.split(",") if p]
    outages = [float(o) for o in args.outages.split(",") if o]
    unknown = sorted(set(modes) - set(MODES)) + sorted(set(planes) - set(PLANES))
    if unknown or args.repetitions < 1 or not outages:
        parser.error(f"unknown mode(s) or plane(s) {unknown}" if unknown
                     else "repetitions must be at least 1 and --outages not empty")
    spec = mcproxy_pmip_spec()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for plane in planes:
        for mode in modes:
            if plane in skipped:
                break
            scenario = bench_scenario(mode, outages, args.rate, plane)
            for index in range(args.repetitions):
                folder = args.out / f"{plane}-{mode}-{index + 1}"
                print(f"run {plane} {mode} {index + 1}/{args.repetitions} -> {folder}",
                      file=sys.stderr, flush=True)
                try:
                    run = run_scenario(scenario, mode, folder, spec, prefix=PREFIX)
                except DataPlaneError as exc:
                    skipped[plane] = str(exc)
                    print(f"plane {plane} skipped: {exc}", flush=True)
                    break
                results.setdefault((mode, plane), []).append(run)
    text = table(results, outages, args.repetitions)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({"table": text, "skipped": skipped}, indent=2))
    return 0 if results else 2


if __name__ == "__main__":
    sys.exit(main())
