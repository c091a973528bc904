"""``mcproxy-pmip-testbed``: run a handover scenario, or clean up after a killed run.

``run`` without arguments runs the embedded default scenario (one source, one
LMA, two MAGs, one MN with an IPv6 and an IPv4 stream, three handovers) with
the best mode the daemon offers on the data plane ``auto`` picks, prints
progress and a summary table headed by the data plane each daemon ran on, and
writes the results folder. ``clean`` removes every ``mptb*`` namespace and
the processes left in them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcproxy_pmip import __version__
from mcproxy_pmip.config.model import DATA_PLANES
from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip_testbed import nsutil
from mcproxy_pmip_testbed.daemons import SPECS
from mcproxy_pmip_testbed.planes import DataPlaneError, check_request, plane_summary
from mcproxy_pmip_testbed.runner import ScenarioRun, best_mode
from mcproxy_pmip_testbed.scenario import (CONTEXT_TRANSFERS, MODES, Scenario, default_scenario,
                                           load_scenario)

COLUMNS = ("handover", "mn", "from_mag", "to_mag", "family", "group", "l2_outage_ms", "gap_ms",
           "lost", "duplicated", "reordered", "attach_to_upstream_report_ms",
           "attach_to_first_packet_ms", "attach_to_last_buffered_packet_ms")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["#", "mn", "from", "to", "fam", "group", "l2 ms", "gap ms", "lost", "dup", "reo",
              "att->rep ms", "att->pkt ms", "att->buf ms"]
    cells = [header] + [[_cell(row.get(c)) for c in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells)


def fault_lines(results: dict[str, Any]) -> str:
    """Lost / duplicated / reordered per handover (with its families) and per family."""
    def counts(figures: dict[str, Any]) -> str:
        return " ".join(f"{key} {_cell(figures[key])}" for key in ("lost", "duplicated", "reordered"))

    lines = []
    for entry in results["per_handover"]:
        families = "; ".join(f"{family} {counts(figures)}"
                             for family, figures in entry["families"].items())
        lines.append(f"handover {entry['handover']}: {counts(entry)} ({families})")
    for family, figures in results["per_family"].items():
        lines.append(f"all handovers {family}: {counts(figures)}")
    return "\n".join(lines)


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def scenario_for(args: argparse.Namespace) -> Scenario:
    """The scenario of ``run`` (``--scenario`` or the default) with the options the flags override."""
    scenario = (load_scenario(args.scenario.read_text(), str(args.scenario))
                if args.scenario else default_scenario())
    overrides = {key: value for key, value in (("context_transfer", args.context_transfer),
                                               ("data_plane", args.data_plane)) if value}
    if overrides:
        scenario = dataclasses.replace(scenario,
                                       options=dataclasses.replace(scenario.options, **overrides))
    return scenario


def cmd_run(args: argparse.Namespace) -> int:
    scenario = scenario_for(args)
    spec = SPECS[args.daemon]()
    check_request(scenario.options.data_plane, spec)
    mode = args.mode or scenario.mode or best_mode(spec)
    if mode != "static" and not spec.supports_plugin:
        print(f"mode {mode} needs a daemon with the pmipv6 plugin; {spec.name} has none",
              file=sys.stderr)
        return 2
    out = args.out or Path("results") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    transfer = f" (context transfer {scenario.options.context_transfer})" if mode == "context" else ""
    run = ScenarioRun(scenario, mode, out, spec, progress=lambda t: print(t, flush=True))
    print(f"scenario: {len(scenario.topology.mns)} MN(s), {len(scenario.handovers)} handover(s),"
          f" mode {mode}{transfer}, daemon {spec.name}, data plane {scenario.options.data_plane},"
          f" results in {out}", flush=True)
    results = run.execute()
    access = "access bridge acc0" if results["access_bridge"] else "point-to-point access links"
    print(f"data plane: {plane_summary(results['data_planes'])} (requested "
          f"{results['data_plane']}); {access}")
    print(summary_table(results["handovers"]))
    print(fault_lines(results))
    print(f"results: {out / 'results.json'}  plot: {out / 'plot.png'}")
    return 0


def cmd_clean(_args: argparse.Namespace) -> int:
    removed = nsutil.clean_leftovers()
    print(f"removed {len(removed)} namespace(s)" + (": " + " ".join(removed) if removed else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcproxy-pmip-testbed",
                                     description=__doc__.split("\n")[0].partition(": ")[2])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (default: warnings only)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a handover scenario")
    run.add_argument("--scenario", type=Path, help="scenario YAML file (default: the embedded one)")
    run.add_argument("--mode", choices=MODES,
                     help="handover mode (default: the scenario's, else the best the daemon offers)")
    run.add_argument("--context-transfer", choices=CONTEXT_TRANSFERS,
                     help="context mode: how the context moves (default: the scenario's, else control)")
    run.add_argument("--data-plane", choices=DATA_PLANES,
                     help="data plane of every mcproxy-pmip daemon (default: the scenario's, else "
                          "auto); igmpproxy runs on mroute only")
    run.add_argument("--out", type=Path,
                     help="results folder, must be empty (default: results/DATE-TIME)")
    run.add_argument("--daemon", choices=sorted(SPECS), default="mcproxy-pmip",
                     help="the proxy the MAGs run (default: %(default)s)")
    run.set_defaults(handler=cmd_run)
    clean = sub.add_parser("clean", help="remove namespaces and processes of killed runs")
    clean.set_defaults(handler=cmd_clean)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"scenario invalid:\n{exc}", file=sys.stderr)
        return 2
    except (FileExistsError, DataPlaneError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; torn down", file=sys.stderr)
        return 130


