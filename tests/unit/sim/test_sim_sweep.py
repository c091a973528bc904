"""Parameter sweeps: scenario values × modes × seeds on a process pool or a Dask cluster, one table."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
from pathlib import Path

import pytest

from mcproxy_pmip_sim import cli
from mcproxy_pmip_sim.run import simulate, sweep, sweep_jobs
from mcproxy_pmip_sim.scenario import default_scenario, with_values

TINY = dataclasses.replace(default_scenario(), duration_interval=60.0, mns=4)
OUTAGES = {"l2_outage_max_interval": [0.05, 0.2], "query_interval": [60, 125]}


def test_with_values_sets_top_level_and_nested_keys_and_checks_them() -> None:
    varied = with_values(TINY, {"query_interval": 60, "mobility.dwell_min_interval": 5.0,
                                "delays.tunnel_interval": 0.01})
    assert (varied.query_interval, varied.mobility.dwell_min_interval,
            varied.delays.tunnel_interval) == (60, 5.0, 0.01)
    assert varied.mns == TINY.mns and TINY.query_interval == 125.0
    for key in ("mnz", "delays", "delays.nope", "nope.tunnel_interval"):
        with pytest.raises(ValueError, match="unknown key"):
            with_values(TINY, {key: 1})
    with pytest.raises(ValueError, match="query_response_interval must be less"):
        with_values(TINY, {"query_interval": 5})


def test_jobs_are_every_combination_in_order_and_checked_before_any_runs() -> None:
    jobs = sweep_jobs(TINY, ["context", "plugin"], [1, 2], OUTAGES)
    assert len(jobs) == 2 * 2 * 2 * 2
    assert [(tuple(values.values()), mode, seed) for _, mode, seed, values in jobs[:5]] == [
        ((0.05, 60), "context", 1), ((0.05, 60), "context", 2), ((0.05, 60), "plugin", 1),
        ((0.05, 60), "plugin", 2), ((0.05, 125), "context", 1)]
    assert jobs[4][0].query_interval == 125 and jobs[4][0].l2_outage_max_interval == 0.05
    with pytest.raises(ValueError, match="l2_outage"):     # min 0.2 with max 0.02
        sweep_jobs(TINY, ["context"], [1], {"l2_outage_min_interval": [0.2],
                                            "l2_outage_max_interval": [0.02, 0.3]})


def test_a_swept_value_changes_the_result_as_a_serial_run_with_that_value_does() -> None:
    outages = {"l2_outage_min_interval": [0.02, 0.2], "l2_outage_max_interval": [0.2]}
    table = sweep(TINY, ["context"], [1], outages, processes=2)
    assert [row["l2_outage_min_interval"] for row in table] == [0.02, 0.2]
    serial = simulate(with_values(TINY, {"l2_outage_min_interval": 0.2,
                                         "l2_outage_max_interval": 0.2}), ["context"], 1)
    expected = serial["modes"]["context"]["aggregate"]
    assert table[1]["gap_ms_median"] == expected["gap_ms"]["median"]
    assert table[1]["events"] == expected["events"]
    assert table[0]["gap_ms_median"] < table[1]["gap_ms_median"]


def test_sweep_command_varies_values_writes_one_csv_and_rejects_a_bad_vary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text("mns: 4\nduration_interval: 60\n")
    out = tmp_path / "sweep.csv"
    assert cli.main(["sweep", "--scenario", str(scenario), "--mode", "context", "--seeds", "1",
                     "--processes", "2", "--vary", "query_interval=60,125",
                     "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["query_interval"], r["mode"], r["seed"]) for r in rows] == [
        ("60", "context", "1"), ("125", "context", "1")]
    assert "query_interval" in capsys.readouterr().out.splitlines()[0]
    assert cli.main(["sweep", "--vary", "query_interval", "--seeds", "1"]) == 2
    assert cli.main(["sweep", "--vary", "nope=1", "--seeds", "1"]) == 2
    assert cli.main(["sweep", "--scheduler", "tcp://127.0.0.1:1", "--seeds", "1"]) == 2
    assert "--vary 'query_interval'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="needs Dask's distributed scheduler (the cluster extra)")
def test_a_dask_cluster_gives_the_table_the_process_pool_gives() -> None:
    from dask.distributed import LocalCluster

    from mcproxy_pmip_sim.cluster import dask_executor
    vary = {"query_interval": [60, 125]}
    local = sweep(TINY, ["context", "plugin"], [1], vary, processes=2)
    with dask_executor(workers=2) as executor:
        on_own_cluster = sweep(TINY, ["context", "plugin"], [1], vary, executor=executor)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as running, \
            dask_executor(running.scheduler_address) as executor:
        on_running_scheduler = sweep(TINY, ["context", "plugin"], [1], vary, executor=executor)
    assert len(local) == 4
    assert on_own_cluster == local, "the Dask workers' table differs from the local processes'"
    assert on_running_scheduler == local


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="needs Dask's distributed scheduler (the cluster extra)")
def test_the_sweep_command_runs_on_dask(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text("mns: 4\nduration_interval: 60\n")
    out = tmp_path / "dask.csv"
    assert cli.main(["sweep", "--scenario", str(scenario), "--mode", "plugin", "--seeds", "2",
                     "--executor", "dask", "--processes", "2", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    expected = sweep(dataclasses.replace(TINY, mns=4, duration_interval=60.0), ["plugin"], [1, 2],
                     processes=2)
    assert [(r["seed"], r["events"]) for r in rows] == [
        (str(e["seed"]), str(e["events"])) for e in expected]
