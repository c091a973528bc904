"""State files and rp_filter recovery after a crash, on files in a temporary directory.

``kernel.statefile`` writes per-process files named by the network namespace
and pid; ``kernel.sysctl`` records rp_filter originals in one before it
writes 0, and the next start puts a dead run's originals back before it reads
its own "previous" values. The /proc/sys files are stood in for by files
under ``tmp_path``; the pids of "crashed runs" are of real processes that
have exited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mcproxy_pmip.kernel import statefile, sysctl


@pytest.fixture
def state(tmp_path, monkeypatch):
    directory = tmp_path / "state"
    monkeypatch.setenv(statefile.STATE_DIR_ENV, str(directory))
    return directory


@pytest.fixture
def proc(tmp_path, monkeypatch):
    """rp_filter files for ``all``, ``d1`` and ``d2``, all at 2 (loose)."""
    root = tmp_path / "conf"
    for name in ("all", "d1", "d2"):
        (root / name).mkdir(parents=True)
        (root / name / "rp_filter").write_text("2\n")
    monkeypatch.setattr(sysctl, "_path", lambda interface: str(root / interface / "rp_filter"))
    return root


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def crashed_file(state, kind: str, data: dict) -> str:
    state.mkdir(parents=True, exist_ok=True)
    pid = dead_pid()
    path = state / f"{kind}-{statefile.netns_id()}-{pid}.json"
    path.write_text(json.dumps({"pid": pid, **data}))
    return str(path)


def value(proc, name: str) -> int:
    return int((proc / name / "rp_filter").read_text())


def test_own_file_is_written_whole_and_not_listed_as_found(state) -> None:
    path = statefile.write("k", {"x": [1, 2]})
    assert os.path.basename(path) == f"k-{statefile.netns_id()}-{os.getpid()}.json"
    assert json.loads(open(path, encoding="utf-8").read()) == {"pid": os.getpid(), "x": [1, 2]}
    assert list(statefile.found("k")) == []
    statefile.remove(path)
    statefile.remove(path)
    assert not os.path.exists(path)


def test_found_tells_dead_from_live_and_skips_broken_files(state) -> None:
    dead = crashed_file(state, "k", {"v": 1})
    live = state / f"k-{statefile.netns_id()}-1.json"
    live.write_text(json.dumps({"pid": 1}))
    (state / f"k-{statefile.netns_id()}-7.json").write_text("{not json")
    (state / "k-i999-5.json").write_text(json.dumps({"pid": 5}))  # another namespace
    found = {f.path: f.alive for f in statefile.found("k")}
    assert found == {dead: False, str(live): True}


def test_disable_records_before_writing_and_finish_restores_and_removes(state, proc) -> None:
    previous = sysctl.disable_rp_filter(["d1", "gone"])
    assert previous == {"all": 2, "d1": 2}
    assert value(proc, "all") == value(proc, "d1") == 0 and value(proc, "d2") == 2
    recorded = json.loads(open(statefile.own_path(sysctl.STATE_KIND), encoding="utf-8").read())
    assert recorded["values"] == {"all": 2, "d1": 2}
    sysctl.finish_rp_filter(previous)
    assert value(proc, "all") == value(proc, "d1") == 2
    assert not os.path.exists(statefile.own_path(sysctl.STATE_KIND))


def test_a_crashed_runs_values_come_back_before_the_next_run_records(state, proc) -> None:
    for name in ("all", "d1"):
        (proc / name / "rp_filter").write_text("0\n")  # what the killed run left
    path = crashed_file(state, sysctl.STATE_KIND, {"values": {"all": 2, "d1": 1}})
    previous = sysctl.disable_rp_filter(["d1"])
    assert previous == {"all": 2, "d1": 1}, "the next run recorded the crashed run's 0"
    assert not os.path.exists(path)
    sysctl.finish_rp_filter(previous)
    assert value(proc, "all") == 2 and value(proc, "d1") == 1


def test_a_live_runs_originals_are_taken_and_its_file_kept(state, proc) -> None:
    (proc / "all" / "rp_filter").write_text("0\n")
    state.mkdir(parents=True)
    live = state / f"{sysctl.STATE_KIND}-{statefile.netns_id()}-1.json"
    live.write_text(json.dumps({"pid": 1, "values": {"all": 2}}))
    assert sysctl.disable_rp_filter([])["all"] == 2
    assert value(proc, "all") == 0
    assert live.exists()


def test_an_unwritable_state_directory_is_logged_and_rp_filter_still_reset(tmp_path, proc, monkeypatch,
                                                                            caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(statefile.STATE_DIR_ENV, str(blocker / "state"))
    previous = sysctl.disable_rp_filter(["d1"])
    assert value(proc, "all") == 0 and previous["all"] == 2
    assert "rp_filter_state_write_failed" in caplog.text
    sysctl.finish_rp_filter(previous)
    assert value(proc, "all") == 2
