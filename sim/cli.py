"""``mcproxy-pmip-sim``: simulate handovers at domain scale on the daemon's engine.

``run`` simulates the scenario (embedded default or ``--scenario``) in each
``--mode`` with one ``--seed`` and writes results.json and plots to ``--out``;
``sweep`` runs parameter values × modes × seeds in parallel (local processes
or a Dask cluster) and prints one table (optionally written as CSV).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import yaml

from mcproxy_pmip import __version__
from mcproxy_pmip_sim.report import results_document, summary, write_outputs
from mcproxy_pmip_sim.cluster import dask_executor
from mcproxy_pmip_sim.run import simulate, sweep
from mcproxy_pmip_sim.scenario import MODES, Scenario, default_scenario, load_scenario


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario is None:
        return default_scenario()
    return load_scenario(args.scenario.read_text(), str(args.scenario))


def cmd_run(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    run = simulate(scenario, args.mode or list(MODES), args.seed, progress=not args.quiet,
                   keep_rows=not args.no_rows)
    document = results_document(run)
    out = args.out or Path("results") / f"sim-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    written = write_outputs(out, document,
                            {mode: data["tally"].gaps_ms for mode, data in run["modes"].items()})
    print(summary(document))
    print("wrote " + " ".join(str(p) for p in written))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    vary = dict(_vary(text) for text in args.vary or ())
    seeds = range(args.seed, args.seed + args.seeds)
    modes = args.mode or list(MODES)
    if args.scheduler and args.executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    context = (dask_executor(args.scheduler, args.processes) if args.executor == "dask"
               else nullcontext(None))
    with context as executor:
        rows = sweep(scenario, modes, seeds, vary, args.processes, executor)
    columns = list(rows[0])
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(_fmt(row[c]).rjust(w) for c, w in zip(columns, widths)))
    if args.csv:
        with args.csv.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, columns)
            writer.writeheader()
            writer.writerows(rows)
    return 0


def _vary(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` -> (KEY, values), each value read as YAML (numbers stay numbers)."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise ValueError(f"--vary {text!r}: need KEY=VALUE[,VALUE...]")
    return key.strip(), [yaml.safe_load(v) for v in values.split(",")]


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcproxy-pmip-sim",
        description="simulate PMIPv6 multicast handovers at domain scale on the daemon's engine")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="simulate one seed in one or more modes")
    sweep_parser = commands.add_parser("sweep", help="values x modes x seeds in parallel, one table")
    for sub in (run, sweep_parser):
        sub.add_argument("--scenario", type=Path, help="scenario YAML (default: embedded)")
        sub.add_argument("--mode", action="append", choices=MODES,
                         help="repeatable; default: every mode")
        sub.add_argument("--seed", type=int, default=1, help="random seed (sweep: the first)")
    run.add_argument("--out", type=Path, help="results folder (default results/sim-<time>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    run.add_argument("--no-rows", action="store_true",
                     help="leave the per-handover rows out of results.json (aggregates, loss by"
                          " group and plots stay): a long run then keeps 16 bytes a row, not 350")
    run.set_defaults(func=cmd_run)
    sweep_parser.add_argument("--seeds", type=int, default=4, help="number of seeds")
    sweep_parser.add_argument("--vary", action="append", metavar="KEY=V1,V2",
                              help="repeatable: run every combination of these scenario values"
                                   " (nested keys as delays.x, mobility.x)")
    sweep_parser.add_argument("--processes", type=int,
                              help="local worker processes (default: CPU count)")
    sweep_parser.add_argument("--executor", choices=("process", "dask"), default="process",
                              help="local process pool, or Dask (the cluster extra)")
    sweep_parser.add_argument("--scheduler", metavar="ADDRESS",
                              help="Dask scheduler, tcp://host:8786 (default: a local Dask"
                                   " cluster of --processes workers)")
    sweep_parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    sweep_parser.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"mcproxy-pmip-sim: {exc}", file=sys.stderr)
        return 2
