"""Mobility models: which cell (and so which MAG) each MN is in, over time, and how long
the radio link is down at each move (the L2 outage models).

``random_waypoint`` on a grid of cells (one MAG per cell): an MN picks a
destination cell uniformly, walks there one neighbouring cell at a time
(columns first, then rows), staying a dwell drawn uniformly in
[dwell_min, dwell_max] in each cell, pauses up to ``pause_max`` at the
destination and picks again. ``trace``: lines ``time mn cell`` (``#``
comments allowed); an MN's first line at time 0 gives its start cell, else
it starts in cell 0.

L2 outages (``l2_outage_model``): ``uniform`` in [min, max]; ``exponential``:
min plus an exponential draw of mean ``l2_outage_mean_interval``, cut at max
(most outages short, a tail of long ones); ``samples``: one of
``l2_outage_samples`` with equal chance (outages measured elsewhere, such as
in the testbed).

Moves come as an iterator in time order (ties by MN). A random waypoint run's
moves are drawn for the whole run at start (one random stream, MN by MN) but
stored per MN in arrays, 12 bytes a move, and merged as the run takes them:
a day of 10,000 MNs is 20 million moves.
"""

from __future__ import annotations

import heapq
import itertools
import random
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mcproxy_pmip_sim.scenario import Scenario


@dataclass(frozen=True, slots=True)
class Move:
    """MN ``mn`` (index) leaves its cell for ``cell`` at ``at`` (the radio link breaks then)."""

    at: float
    mn: int
    cell: int


def random_waypoint(scenario: Scenario, rng: random.Random) -> tuple[list[int], Iterator[Move]]:
    """Start cells and the moves before the end of the run, in time order."""
    columns = scenario.grid_columns
    mobility = scenario.mobility
    starts: list[int] = []
    per_mn: list[tuple[array, array]] = []
    for mn in range(scenario.mns):
        cell = rng.randrange(scenario.mags)
        starts.append(cell)
        times, cells = array("d"), array("i")
        per_mn.append((times, cells))
        at = rng.uniform(mobility.dwell_min_interval, mobility.dwell_max_interval)
        while at < scenario.duration_interval:
            target = rng.randrange(scenario.mags)
            if target == cell:
                at += rng.uniform(0.0, mobility.pause_max_interval) + mobility.dwell_min_interval
                continue
            while cell != target and at < scenario.duration_interval:
                row, column = divmod(cell, columns)
                target_row, target_column = divmod(target, columns)
                if column != target_column:
                    column += 1 if target_column > column else -1
                else:
                    row += 1 if target_row > row else -1
                cell = row * columns + column
                times.append(at)
                cells.append(cell)
                at += rng.uniform(mobility.dwell_min_interval, mobility.dwell_max_interval)
            at += rng.uniform(0.0, mobility.pause_max_interval)
    return starts, _in_time_order(per_mn)


def _in_time_order(per_mn: Iterable[tuple[array, array]]) -> Iterator[Move]:
    """Every MN's moves (its times and cells, in its own order) merged by (time, MN); an
    MN's moves at one instant keep their order."""
    streams = (zip(times, itertools.repeat(mn), itertools.count(), cells)
               for mn, (times, cells) in enumerate(per_mn))
    for at, mn, _, cell in heapq.merge(*streams):
        yield Move(at, mn, cell)


def parse_trace(text: str, mns: int, cells: int) -> tuple[list[int], Iterator[Move]]:
    """Start cells and moves of a trace; a line naming the MN's current cell is no move."""
    starts = [0] * mns
    current = {}
    moves: list[Move] = []
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").split()
        if len(fields) != 3:
            raise ValueError(f"trace line {number}: need 'time mn cell'")
        at, mn, cell = float(fields[0]), int(fields[1]), int(fields[2])
        if not (0 <= mn < mns and 0 <= cell < cells):
            raise ValueError(f"trace line {number}: mn or cell out of range")
        entries.append((at, mn, cell))
    entries.sort()
    for at, mn, cell in entries:
        if at == 0 and mn not in current:
            starts[mn] = cell
        elif cell != current.get(mn, starts[mn]):
            moves.append(Move(at, mn, cell))
        current[mn] = cell
    return starts, iter(moves)


def plan_moves(scenario: Scenario, rng: random.Random) -> tuple[list[int], Iterator[Move]]:
    if scenario.mobility.model == "trace":
        text = Path(scenario.mobility.trace_file or "").read_text()
        return parse_trace(text, scenario.mns, scenario.mags)
    return random_waypoint(scenario, rng)


def draw_outage(scenario: Scenario, rng: random.Random) -> float:
    """The L2 outage of one move (seconds)."""
    model = scenario.l2_outage_model
    if model == "exponential":
        drawn = rng.expovariate(1.0 / scenario.l2_outage_mean_interval)
        return min(scenario.l2_outage_min_interval + drawn, scenario.l2_outage_max_interval)
    if model == "samples":
        return rng.choice(scenario.l2_outage_samples)
    return rng.uniform(scenario.l2_outage_min_interval, scenario.l2_outage_max_interval)
