"""One simulation run (a scenario, a seed, one or more modes) and the parameter sweep.

``simulate`` runs each mode on the same scenario and seed (so the same moves,
subscriptions and outages) and returns rows, aggregates and counters.
``sweep`` runs parameter values × modes × seeds as independent jobs on a
``concurrent.futures`` executor (a local process pool unless one is given, such
as a Dask cluster's: ``mcproxy_pmip_sim.cluster``) and merges their aggregates
into one table.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from mcproxy_pmip_sim.domain import Simulator
from mcproxy_pmip_sim.events import Progress
from mcproxy_pmip_sim.report import aggregate
from mcproxy_pmip_sim.scenario import Scenario, with_values


def stderr_progress(mode: str) -> Progress:
    """A one-line progress bar on stderr (a terminal only), redrawn every percent of
    simulated time; ends the line at the end of the run."""
    def show(now: float, duration: float, events: int) -> None:
        done = int(40 * now / duration)
        sys.stderr.write(f"\r{mode:<10} [{'#' * done}{'.' * (40 - done)}] {now:8.1f}/{duration:.0f} s "
                         f"{events} events")
        if now >= duration:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show


def simulate(scenario: Scenario, modes: Sequence[str], seed: int, progress: bool = False,
             keep_rows: bool = True) -> dict[str, Any]:
    """Each mode's rows (none unless ``keep_rows``), tally, counters and aggregate."""
    result: dict[str, Any] = {"seed": seed, "duration_interval": scenario.duration_interval,
                              "modes": {}}
    for mode in modes:
        show = stderr_progress(mode) if progress and sys.stderr.isatty() else None
        sim = Simulator(scenario, mode, seed, show, keep_rows).run()
        counters = sim.counters()
        result["modes"][mode] = {"rows": sim.row_objects, "tally": sim.tally, "counters": counters,
                                 "aggregate": aggregate(sim.tally, counters)}
    return result


def _job(job: tuple[Scenario, str, int, dict[str, Any]]) -> dict[str, Any]:
    scenario, mode, seed, values = job
    run = simulate(scenario, [mode], seed, keep_rows=False)
    agg = run["modes"][mode]["aggregate"]
    lma = agg["reports_per_s_at_lma"]
    return {**values, "mode": mode, "seed": seed, "rows": agg["rows"],
            "rows_without_gap": agg["rows_without_gap"],
            "gap_ms_median": agg["gap_ms"]["median"], "gap_ms_p95": agg["gap_ms"]["p95"],
            "lost_median": agg["lost"]["median"], "lost_p95": agg["lost"]["p95"],
            "reports_per_s_per_mag_median": agg["reports_per_s_per_mag"]["median"],
            "reports_per_s_at_lma_mean": sum(lma.values()) / len(lma),
            "events": agg["events"]}


def sweep_jobs(scenario: Scenario, modes: Sequence[str], seeds: Sequence[int],
               vary: Mapping[str, Sequence[Any]] | None = None
               ) -> list[tuple[Scenario, str, int, dict[str, Any]]]:
    """Every combination of the ``vary`` values (key -> values, ``with_values`` keys) × modes
    × seeds, each with its scenario checked before anything runs."""
    keys = list(vary or {})
    jobs = []
    for combination in itertools.product(*(vary[k] for k in keys)) if keys else [()]:
        values = dict(zip(keys, combination))
        varied = with_values(scenario, values) if values else scenario
        jobs.extend((varied, mode, seed, values) for mode in modes for seed in seeds)
    return jobs


def sweep(scenario: Scenario, modes: Sequence[str], seeds: Sequence[int],
          vary: Mapping[str, Sequence[Any]] | None = None, processes: int | None = None,
          executor: Executor | None = None) -> list[dict[str, Any]]:
    """The jobs of ``sweep_jobs`` on ``executor`` (default: a pool of ``processes`` local
    processes); one row per job, in (values, mode, seed) order."""
    jobs = sweep_jobs(scenario, modes, seeds, vary)
    if executor is not None:
        return list(executor.map(_job, jobs))
    with ProcessPoolExecutor(processes) as pool:
        return list(pool.map(_job, jobs))
