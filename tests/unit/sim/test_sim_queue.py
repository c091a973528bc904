"""The run loop and what makes a run reproducible: progress steps, per-link loss draws,
the same results from another process."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import subprocess
import sys

import pytest

from mcproxy_pmip_sim import events
from mcproxy_pmip_sim.domain import Simulator
from mcproxy_pmip_sim.parts import Row
from mcproxy_pmip_sim.scenario import Delays, default_scenario
from mcproxy_pmip_testbed.results import HANDOVER_KEYS

LOSSY = dataclasses.replace(default_scenario(), mns=40, duration_interval=200.0,
                            l2_outage_max_interval=0.3,
                            delays=Delays(access_loss=0.1, tunnel_loss=0.05))

#: a child process that first allocates a given number of objects (so that every engine
#: object it makes afterwards sits at other addresses) and prints the run's rows and counters
_CHILD = """
import dataclasses, json, sys
from mcproxy_pmip_sim.domain import Simulator
from mcproxy_pmip_sim.scenario import Delays, default_scenario
ballast = [object() for _ in range(int(sys.argv[1]))]
scenario = dataclasses.replace(default_scenario(), mns=40, duration_interval=200.0,
                               l2_outage_max_interval=0.3,
                               delays=Delays(access_loss=0.1, tunnel_loss=0.05))
for mode in ("static", "plugin", "context"):
    sim = Simulator(scenario, mode, 3).run()
    print(json.dumps([sim.rows, sim.counters()], sort_keys=True))
"""


def test_lossy_runs_give_the_same_results_in_another_process() -> None:
    # the engine emits messages due at the same instant in an order of its own (the LMA
    # queries its 4 tunnels at once); a loss draw must not depend on that order
    outputs = []
    for ballast, hash_seed in ((0, "1"), (12345, "2")):
        done = subprocess.run([sys.executable, "-c", _CHILD, str(ballast)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONHASHSEED": hash_seed},
                              timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    here = Simulator(LOSSY, "static", 3).run()
    assert json.loads(outputs[0].splitlines()[0])[0] == json.loads(json.dumps(here.rows))


def test_each_link_draws_its_losses_from_its_own_stream() -> None:
    alone = Simulator(LOSSY, "context", 1)
    mixed = Simulator(LOSSY, "context", 1)
    draws_alone = [alone.lost(0.5, "a0>") for _ in range(50)]
    draws_mixed = []
    for _ in range(50):
        mixed.lost(0.5, "tun0:t1>")
        draws_mixed.append(mixed.lost(0.5, "a0>"))
    assert draws_alone == draws_mixed
    assert 0 < sum(draws_alone) < 50
    assert not any(alone.lost(0.0, "a1>") for _ in range(20))


def test_progress_reports_every_percent_and_does_not_change_the_run() -> None:
    seen: list[tuple[float, int]] = []
    watched = Simulator(LOSSY, "context", 2, lambda now, end, events: seen.append((now, events)))
    watched.run()
    plain = Simulator(LOSSY, "context", 2).run()
    assert len(seen) == 100 and seen[-1] == (LOSSY.duration_interval, plain.events)
    assert [now for now, _ in seen] == sorted(now for now, _ in seen)
    assert seen[0][0] == LOSSY.duration_interval / 100
    assert watched.rows == plain.rows and watched.counters() == plain.counters()


def test_rows_keep_the_testbed_keys_and_share_their_names() -> None:
    sim = Simulator(dataclasses.replace(default_scenario(), duration_interval=200.0), "plugin",
                    4).run()
    rows = sim.row_objects
    assert len(rows) > 2 and all(tuple(dict(row)) == HANDOVER_KEYS for row in rows)
    # one string object per group name, not one per row (a long run holds millions of rows)
    assert len({(row.stream, id(row.stream), id(row.group)) for row in rows}) \
        == len({row.stream for row in rows})
    with pytest.raises(ValueError):
        Row(*range(len(HANDOVER_KEYS) - 1))


def test_a_row_reads_as_a_mapping_of_the_testbed_keys() -> None:
    row = Row(*range(len(HANDOVER_KEYS)))
    assert dict(row) == dict(zip(HANDOVER_KEYS, range(len(HANDOVER_KEYS))))
    assert row["gap_ms"] == HANDOVER_KEYS.index("gap_ms") and "lost" in row
    with pytest.raises(KeyError):
        row["keys"]


@pytest.mark.parametrize("generational", [True, False])
def test_the_collector_is_managed_only_where_it_is_generational(
        monkeypatch: pytest.MonkeyPatch, generational: bool) -> None:
    # CPython: off during the slices, youngest generation collected between them, back on
    # after; elsewhere (PyPy collects everything at any gc.collect) left to itself
    monkeypatch.setattr(events, "GENERATIONAL_GC", generational)
    collected: list[int] = []
    monkeypatch.setattr(events.gc, "collect", lambda generation=2: collected.append(generation))
    loop = events.EventLoop(1, None)
    seen: list[bool] = []
    loop.at(5.0, lambda: seen.append(gc.isenabled()))
    assert gc.isenabled()
    loop.run_events(10.0)
    assert seen == [not generational]
    assert collected == ([0] * 100 if generational else [])
    assert gc.isenabled()
