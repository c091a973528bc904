"""One simulation run (a scenario, a seed, one or more modes) and the parameter sweep.

``simulate`` runs each mode on the same scenario and seed (so the same moves,
subscriptions and outages) and returns rows, aggregates and counters.
``sweep`` runs modes × seeds as independent jobs on a ``multiprocessing``
pool and merges their aggregates into one table.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence
from typing import Any

from mcproxy_pmip_sim.domain import Simulator
from mcproxy_pmip_sim.events import Progress
from mcproxy_pmip_sim.report import aggregate
from mcproxy_pmip_sim.scenario import Scenario


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


def simulate(scenario: Scenario, modes: Sequence[str], seed: int,
             progress: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"seed": seed, "duration_interval": scenario.duration_interval,
                              "modes": {}}
    for mode in modes:
        show = stderr_progress(mode) if progress and sys.stderr.isatty() else None
        sim = Simulator(scenario, mode, seed, show).run()
        counters = sim.counters()
        result["modes"][mode] = {"rows": sim.rows, "counters": counters,
                                 "aggregate": aggregate(sim.rows, counters)}
    return result


def _job(job: tuple[Scenario, str, int]) -> dict[str, Any]:
    scenario, mode, seed = job
    run = simulate(scenario, [mode], seed)
    agg = run["modes"][mode]["aggregate"]
    lma = agg["reports_per_s_at_lma"]
    return {"mode": mode, "seed": seed, "rows": agg["rows"],
            "rows_without_gap": agg["rows_without_gap"],
            "gap_ms_median": agg["gap_ms"]["median"], "gap_ms_p95": agg["gap_ms"]["p95"],
            "lost_median": agg["lost"]["median"], "lost_p95": agg["lost"]["p95"],
            "reports_per_s_per_mag_median": agg["reports_per_s_per_mag"]["median"],
            "reports_per_s_at_lma_mean": sum(lma.values()) / len(lma),
            "events": agg["events"]}


def sweep(scenario: Scenario, modes: Sequence[str], seeds: Sequence[int],
          processes: int | None = None) -> list[dict[str, Any]]:
    """modes × seeds on a process pool; one row per job, in (mode, seed) order."""
    jobs = [(scenario, mode, seed) for mode in modes for seed in seeds]
    with multiprocessing.Pool(processes) as pool:
        return pool.map(_job, jobs)
