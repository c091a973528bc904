"""Seeded runs, the mobility models, the results file and the command line."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from mcproxy_pmip_sim import cli
from mcproxy_pmip_sim.mobility import parse_trace, random_waypoint
from mcproxy_pmip_sim.parts import Row, in_order
from mcproxy_pmip_sim.report import cdf_ranks, quantile, results_document
from mcproxy_pmip_sim.run import simulate, sweep
from mcproxy_pmip_sim.scenario import MODES, default_scenario, load_scenario
from mcproxy_pmip_testbed.measure import HandoverRecord, StreamInfo, measure_stream
from mcproxy_pmip_testbed.payload import Arrival
from mcproxy_pmip_testbed.results import HANDOVER_KEYS, check_results, load_results, write_results

SMALL = dataclasses.replace(default_scenario(), duration_interval=120.0, mns=8)


def test_same_seed_same_results_other_seed_other_results() -> None:
    first = json.dumps(results_document(simulate(SMALL, MODES, 3)), sort_keys=True, default=dict)
    again = json.dumps(results_document(simulate(SMALL, MODES, 3)), sort_keys=True, default=dict)
    other = json.dumps(results_document(simulate(SMALL, MODES, 4)), sort_keys=True, default=dict)
    assert first == again
    assert first != other


def test_modes_share_moves_and_rank_as_expected() -> None:
    run = simulate(SMALL, MODES, 5)
    handovers = {mode: [(r["mn"], r["detach_at"], r["group"]) for r in data["rows"]]
                 for mode, data in run["modes"].items()}
    assert len({tuple(v) for v in handovers.values()}) == 1 and handovers["static"]
    p95s = {mode: data["aggregate"]["gap_ms"]["p95"] for mode, data in run["modes"].items()}
    assert p95s["predictive"] <= p95s["context"] < p95s["plugin"]


def test_random_waypoint_moves_one_neighbouring_cell_at_a_time() -> None:
    import random
    scenario = dataclasses.replace(default_scenario(), mags=12, grid_columns=4, mns=30)
    starts, planned = random_waypoint(scenario, random.Random(1))
    moves = list(planned)
    cells = list(starts)
    # merged from each MN's own moves in (time, MN) order
    assert moves and moves == sorted(moves, key=lambda m: (m.at, m.mn))
    for move in moves:
        old_row, old_col = divmod(cells[move.mn], 4)
        row, col = divmod(move.cell, 4)
        assert abs(old_row - row) + abs(old_col - col) == 1
        cells[move.mn] = move.cell


def test_trace_gives_start_cells_and_skips_non_moves() -> None:
    starts, moves = parse_trace("0 0 2\n0,1,1\n5 0 2\n7 0 3\n", mns=2, cells=4)
    assert starts == [2, 1]
    assert [(m.at, m.mn, m.cell) for m in moves] == [(7.0, 0, 3)]
    with pytest.raises(ValueError, match="out of range"):
        parse_trace("1 5 0\n", mns=2, cells=4)


def test_scenario_yaml_overrides_and_checks() -> None:
    scenario = load_scenario("mns: 5\ndelays: {tunnel_interval: 0.01}\n")
    assert scenario.mns == 5 and scenario.delays.tunnel_interval == 0.01
    assert scenario.lmas == default_scenario().lmas
    with pytest.raises(ValueError, match="unknown keys"):
        load_scenario("mnz: 5\n")
    with pytest.raises(ValueError, match="grid_columns"):
        load_scenario("mags: 5\ngrid_columns: 2\n")


def test_quantile_interpolates() -> None:
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert quantile([1.0, 2.0], 0.95) == pytest.approx(1.95)
    assert quantile([], 0.5) is None


def test_sim_and_testbed_results_load_with_the_same_reader(tmp_path: Path) -> None:
    assert cli.main(["run", "--mode", "context", "--mode", "static", "--seed", "2",
                     "--quiet", "--scenario", str(_scenario_file(tmp_path)),
                     "--out", str(tmp_path / "out")]) == 0
    results = load_results(tmp_path / "out" / "results.json")
    assert results["handovers"] and set(results["aggregates"]) == {"context", "static"}
    handover = HandoverRecord(0, "mn1", "mag1", "mag2", "context", 10.0, 10.05)
    stream = StreamInfo(0, "v4", "ipv4", "239.1.1.1")
    arrivals = [Arrival(0, seq, 0.0, 9.9 + seq * 0.01) for seq in range(30)]
    testbed = {"mode": "context", "handovers": [measure_stream(handover, stream, arrivals, 20.0, [])]}
    check_results(testbed)
    assert tuple(testbed["handovers"][0]) == HANDOVER_KEYS
    broken = dict(results, handovers=[{k: v for k, v in results["handovers"][0].items()
                                       if k != "gap_ms"}])
    with pytest.raises(ValueError, match="gap_ms"):
        check_results(broken)


def test_without_rows_the_aggregates_and_plots_are_those_of_the_rows(tmp_path: Path) -> None:
    kept = simulate(SMALL, ["plugin", "context"], 6)
    tallied = simulate(SMALL, ["plugin", "context"], 6, keep_rows=False)
    for mode, data in kept["modes"].items():
        rows = data["rows"]
        gaps = sorted(r["gap_ms"] for r in rows if r["gap_ms"] is not None)
        assert rows and tallied["modes"][mode]["rows"] == []
        assert data["aggregate"]["rows"] == len(rows)
        assert data["aggregate"]["rows_without_gap"] == len(rows) - len(gaps)
        assert data["aggregate"]["gap_ms"] == {"median": quantile(gaps, 0.5),
                                               "p95": quantile(gaps, 0.95), "max": gaps[-1]}
        assert list(data["tally"].gaps_ms) == gaps
        assert tallied["modes"][mode]["aggregate"] == data["aggregate"]
    with_rows, without = results_document(kept), results_document(tallied)
    assert without["handovers"] == [] and with_rows["handovers"]
    assert without["loss_by_group"] == with_rows["loss_by_group"]
    for mode, means in with_rows["loss_by_group"].items():
        for name, mean in means.items():
            losses = [r["lost"] for r in with_rows["handovers"]
                      if r["mode"] == mode and r["stream"] == name and r["lost"] is not None]
            assert mean == pytest.approx(sum(losses) / len(losses))
    assert cli.main(["run", "--mode", "context", "--quiet", "--no-rows", "--scenario",
                     str(_scenario_file(tmp_path)), "--out", str(tmp_path / "out")]) == 0
    results = load_results(tmp_path / "out" / "results.json")
    assert results["handovers"] == [] and results["aggregates"]["context"]["rows"] > 0
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "out" / "gap_cdf.png").stat().st_size > 0


def test_a_tally_is_sorted_a_chunk_at_a_time_into_one_ascending_array() -> None:
    import random
    from array import array
    rng = random.Random(3)
    for typecode, draw in (("d", lambda: rng.expovariate(0.1)), ("q", lambda: rng.randrange(40))):
        for count in (0, 1, 7, 50, 1001):
            values = array(typecode, (draw() for _ in range(count)))
            expected = sorted(values)
            ordered = in_order(values, chunk=8)
            assert ordered.typecode == typecode and list(ordered) == expected
            assert len(values) == 0, "the values are taken out of the array they came in"


def test_results_are_written_row_by_row_and_read_back_whole(tmp_path: Path) -> None:
    rows = [Row(*(f"v{k}\n{n}" if k == 1 else n * 100 + k for k in range(len(HANDOVER_KEYS))))
            for n in range(3)]
    document = {"mode": "context", "aggregates": {"context": {"gap_ms": {"median": 1.5}}},
                "handovers": rows, "seed": 7}
    write_results(tmp_path / "results.json", document)
    text = (tmp_path / "results.json").read_text()
    assert load_results(tmp_path / "results.json") == {**document, "handovers": [dict(r) for r in rows]}
    assert [line.strip().rstrip(",") for line in text.splitlines() if '"handover":' in line] \
        == [json.dumps(dict(r)) for r in rows]
    write_results(tmp_path / "empty.json", {"mode": "static", "handovers": []})
    assert load_results(tmp_path / "empty.json") == {"mode": "static", "handovers": []}
    with pytest.raises(ValueError, match="no 'handovers'"):
        write_results(tmp_path / "bad.json", {"mode": "static"})


def test_a_long_gap_cdf_is_drawn_through_evenly_spread_order_statistics() -> None:
    assert cdf_ranks(5, points=10) == [0, 1, 2, 3, 4]
    ranks = cdf_ranks(1_000_001, points=11)
    assert ranks == list(range(0, 1_000_001, 100_000))


def _scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text("mns: 6\nduration_interval: 90\n")
    return path


def test_sweep_runs_modes_by_seeds_in_processes_and_matches_serial_runs() -> None:
    tiny = dataclasses.replace(SMALL, duration_interval=60.0, mns=4)
    table = sweep(tiny, ["context", "plugin"], [1, 2], processes=2)
    assert [(row["mode"], row["seed"]) for row in table] == [
        ("context", 1), ("context", 2), ("plugin", 1), ("plugin", 2)]
    serial = simulate(tiny, ["plugin"], 2)["modes"]["plugin"]["aggregate"]
    assert table[3]["gap_ms_median"] == serial["gap_ms"]["median"]
    assert table[3]["events"] == serial["events"]
