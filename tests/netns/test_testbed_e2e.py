"""The testbed's main job with our daemon: PMIPv6 handovers measured end to end (docs/scenarios.md item 21).

The CLI runs the embedded default scenario in static mode as a subprocess
(what CI runs) on the data plane ``auto`` picks; a shortened scenario runs in
context mode through the API, and in predictive mode (namespaces prefixed
``tbp``), whose recorded timeline must show the driver's order of events.
All check the results folder against
docs/testbed.md (with the plane each daemon reports: mroute where the kernel
has multicast routing, except for MAGs with the pmipv6 plugin, else nftables)
and that nothing is left behind. Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip_testbed import nsutil
from mcproxy_pmip_testbed.daemons import mcproxy_pmip_spec
from mcproxy_pmip_testbed.planes import kernel_missing_mroute
from mcproxy_pmip_testbed.runner import run_scenario
from mcproxy_pmip_testbed.scenario import load_scenario

pytestmark = pytest.mark.netns

TESTBED = Path(sys.executable).parent / "mcproxy-pmip-testbed"
RUN_KEYS = {"run_id", "mode", "context_transfer", "daemon", "data_plane", "data_planes",
            "access_bridge", "tunnel", "build_seconds", "started_at", "ended_at", "handovers",
            "timeline", "per_handover", "per_family"}
ROW_KEYS = {"handover", "mn", "from_mag", "to_mag", "mode", "stream", "family", "group",
            "detach_at", "attach_at", "l2_outage_ms", "gap_ms", "lost", "duplicated", "reordered",
            "attach_to_upstream_report_ms", "attach_to_first_packet_ms",
            "attach_to_last_buffered_packet_ms", "binding_attach_to_first_packet_ms",
            "binding_attach_to_last_buffered_packet_ms"}
OPTIONAL_NUMBERS = ("gap_ms", "lost", "attach_to_upstream_report_ms", "attach_to_first_packet_ms",
                    "attach_to_last_buffered_packet_ms", "binding_attach_to_first_packet_ms",
                    "binding_attach_to_last_buffered_packet_ms")
FAULTS = {"lost", "duplicated", "reordered"}

SHORT_SCENARIO = """\
topology:
  lmas: [lma1]
  mags: [mag1, mag2]
  mns: [{name: mn1, lma: lma1, mag: mag1}]
streams:
  - {name: v6, family: ipv6, group: "ff3e::8000:1", source_specific: true, rate: 1000}
  - {name: v4, family: ipv4, group: "239.1.1.1", rate: 1000}
subscriptions: {mn1: [v6, v4]}
handovers:
  - {at: 1.5, mn: mn1, to: mag2, l2_outage_ms: 50}
options: {warmup_s: 1.5, tail_s: 1.5}
"""


def expected_planes(mode: str) -> dict[str, str]:
    """What ``auto`` picks for the default topology's daemons on this kernel."""
    kernel = "nftables" if kernel_missing_mroute(frozenset({Family.IPV4, Family.IPV6})) else "mroute"
    mag = kernel if mode == "static" else "nftables"  # the pmipv6 plugin: a link per MN
    return {"lma1": kernel, "mag1": mag, "mag2": mag}


def check_results(out: Path, mode: str, handovers: int) -> dict[str, Any]:
    """results.json follows the documented schema; the other files of the folder exist."""
    results = json.loads((out / "results.json").read_text())
    assert set(results) == RUN_KEYS
    assert (results["mode"], results["daemon"], results["tunnel"]) == (mode, "mcproxy-pmip", "tun-relay")
    assert results["data_plane"] == "auto"
    assert results["data_planes"] == expected_planes(mode)
    assert results["access_bridge"] is False, "one MN: point-to-point access links"
    assert results["started_at"] < results["ended_at"]
    rows = results["handovers"]
    assert len(rows) == 2 * handovers, "one row per handover and subscribed stream"
    for row in rows:
        assert set(row) == ROW_KEYS, sorted(set(row) ^ ROW_KEYS)
        assert row["mode"] == mode and row["family"] in ("ipv4", "ipv6")
        assert row["detach_at"] < row["attach_at"] and row["l2_outage_ms"] >= 50
        assert isinstance(row["duplicated"], int) and isinstance(row["reordered"], int)
        for key in OPTIONAL_NUMBERS:
            assert row[key] is None or row[key] >= 0, (key, row[key])
    assert [entry["handover"] for entry in results["timeline"]] == list(range(handovers))
    assert [entry["handover"] for entry in results["per_handover"]] == list(range(handovers))
    for entry in results["per_handover"]:
        assert set(entry) == FAULTS | {"handover", "families"}
        assert set(entry["families"]) == {"ipv4", "ipv6"}
        assert all(set(figures) == FAULTS for figures in entry["families"].values())
    assert set(results["per_family"]) == {"ipv4", "ipv6"}
    for family, figures in results["per_family"].items():
        mine = [row for row in rows if row["family"] == family]
        assert figures["duplicated"] == sum(row["duplicated"] for row in mine)
        assert figures["reordered"] == sum(row["reordered"] for row in mine)
    for name in ("plot.png", "mn1.arrivals", "sender.json", "mag1-tun1.pcap", "mag2-tun1.pcap",
                 "lma1.conf", "mag1.conf", "mag2.conf", "daemon-lma1.log", "daemon-mag1.log",
                 "daemon-mag2.log", "relay-mag1.log"):
        assert (out / name).stat().st_size > 0, f"{name} missing or empty"
    sent = json.loads((out / "sender.json").read_text())
    assert sent, "the sender summary lists its streams"
    return results


def assert_nothing_left(run_id: str, prefix: str = "mptb") -> None:
    prefix = f"{prefix}{run_id}"
    namespaces = nsutil.list_namespaces(prefix)
    assert namespaces == [], f"namespaces left behind: {namespaces}"
    stray = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if prefix in cmdline:
            stray.append(f"{pid}: {cmdline}")
    assert stray == [], f"processes left behind: {stray}"


def print_rows(results: dict[str, Any]) -> None:
    for row in results["handovers"]:
        print(f"\n{results['mode']} #{row['handover']} {row['family']}: gap {row['gap_ms']} ms, "
              f"lost {row['lost']}, attach->report {row['attach_to_upstream_report_ms']} ms, "
              f"attach->packet {row['attach_to_first_packet_ms']} ms", end="")
    print()


def test_cli_default_scenario_static(tmp_path) -> None:
    out = tmp_path / "static"
    done = subprocess.run([str(TESTBED), "run", "--mode", "static", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    assert "mode static" in done.stdout and "gap ms" in done.stdout, done.stdout
    results = check_results(out, "static", handovers=3)
    plane = expected_planes("static")["lma1"]
    assert f"data plane: {plane} (lma1, mag1, mag2) (requested auto); point-to-point access " \
           "links" in done.stdout, done.stdout
    print(done.stdout)
    first = [r for r in results["handovers"] if r["handover"] == 0]
    assert all(r["from_mag"] == "mag1" and r["to_mag"] == "mag2" for r in first)
    assert_nothing_left(results["run_id"])


def test_context_mode_measures_upstream_report(tmp_path) -> None:
    out = tmp_path / "context"
    results = run_scenario(load_scenario(SHORT_SCENARIO), "context", out, mcproxy_pmip_spec())
    check_results(out, "context", handovers=1)
    print_rows(results)
    for row in results["handovers"]:
        assert row["attach_to_upstream_report_ms"] is not None, \
            f"{row['family']}: no upstream join captured on mag2's tunnel"
        assert row["gap_ms"] is not None and row["attach_to_first_packet_ms"] is not None, \
            f"{row['family']}: the stream did not come back after the handover"
    assert_nothing_left(results["run_id"])


PREDICTIVE_ORDER = ("prepare_sent", "prepare_answered", "detach_sent", "detach_answered",
                    "radio_detach", "radio_attach", "route_switch", "attach_sent", "attach_answered")


@pytest.fixture
def tbp_cleanup():
    """Namespaces and processes of runs prefixed ``tbp`` removed, also when the run fails."""
    yield "tbp"
    nsutil.clean_leftovers("tbp")


def test_predictive_mode_prepares_then_detaches_before_the_radio(tmp_path, tbp_cleanup) -> None:
    out = tmp_path / "predictive"
    scenario = load_scenario(SHORT_SCENARIO.replace("warmup_s: 1.5,",
                                                    "warmup_s: 1.5, prepare_lead_s: 0.05,"))
    assert scenario.options.prepare_lead_interval == 0.05
    results = run_scenario(scenario, "predictive", out, mcproxy_pmip_spec(), prefix=tbp_cleanup)
    check_results(out, "predictive", handovers=1)
    print_rows(results)
    print(json.dumps(results["timeline"], indent=1), json.dumps(results["per_family"]))
    events = results["timeline"][0]["events"]
    assert tuple(events) == PREDICTIVE_ORDER, list(events)
    times = [events[name] for name in PREDICTIVE_ORDER]
    assert times == sorted(times), events
    assert events["radio_detach"] - events["prepare_answered"] >= 0.05, "the lead time was waited"
    row = results["handovers"][0]
    assert (row["detach_at"], row["attach_at"]) == (events["radio_detach"], events["radio_attach"])
    buffer = results["timeline"][0]["buffer"]
    assert buffer is None or {"flushed", "skipped", "overflow", "marker"} <= set(buffer), buffer
    config = (out / "mag2.conf").read_text()
    assert "tunnel_for_lma" in config and "peers" in config, config
    for row in results["handovers"]:
        assert row["gap_ms"] is not None, f"{row['family']}: the stream did not come back"
    assert_nothing_left(results["run_id"], prefix=tbp_cleanup)
