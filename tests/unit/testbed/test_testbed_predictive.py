"""Predictive mode in the testbed without root: the scenario option, the MAG configs
(``tunnel_for_lma`` read back by the plugin's own validation), the driver's order of
events and timeline, and the fault counts (lost, duplicated, reordered) on hand-made
arrival lists."""

from __future__ import annotations

import dataclasses

import itertools

import pytest

from mcproxy_pmip.config import parse_config
from mcproxy_pmip_plugins.pmipv6 import parse_settings
from mcproxy_pmip_testbed.cli import fault_lines, summary_table
from mcproxy_pmip_testbed.daemons import mcproxy_config
from mcproxy_pmip_testbed.driver import EVENTS, HandoverDriver
from mcproxy_pmip_testbed.measure import (HandoverRecord, StreamInfo, fault_totals,
                                          measure, measure_stream_extended, stream_faults)
from mcproxy_pmip_testbed.payload import Arrival
from mcproxy_pmip_testbed.plan import make_plan
from mcproxy_pmip_testbed.results import check_results
from mcproxy_pmip_testbed.runner import daemon_roles
from mcproxy_pmip_testbed.scenario import Handover, default_scenario, load_scenario
from tests.unit.testbed.test_testbed_scenario import GOOD

V6 = StreamInfo(0, "v6", "ipv6", "ff3e::8000:1")
V4 = StreamInfo(1, "v4", "ipv4", "239.1.1.1")
HANDOVER = HandoverRecord(0, "mn1", "mag1", "mag2", "predictive", 10.0, 10.05)


def arrivals(pairs, stream: int = 0, origin: float = 0.0) -> list[Arrival]:
    """(seq, received_at) pairs; each packet sent 1 ms per sequence number from ``origin``."""
    return [Arrival(stream, seq, origin + seq * 0.001, at) for seq, at in pairs]


# -- scenario and configs --------------------------------------------------------------------
def test_prepare_lead_defaults_to_a_tenth_and_is_checked() -> None:
    assert default_scenario().options.prepare_lead_interval == 0.1
    chosen = load_scenario(GOOD.replace("mode: plugin", "mode: predictive").replace(
        'capture: ["lma1:src0"]', "prepare_lead_s: 0.02"))
    assert (chosen.mode, chosen.options.prepare_lead_interval) == ("predictive", 0.02)
    with pytest.raises(Exception, match="prepare_lead_s"):
        load_scenario(GOOD.replace('capture: ["lma1:src0"]', "prepare_lead_s: -1"))


def test_predictive_mags_get_the_channel_and_a_tunnel_for_every_lma_address() -> None:
    scenario = load_scenario(GOOD.replace("lmas: [lma1]", "lmas: [lma1, lma2]"))
    plan = make_plan(scenario.topology, run_id="0001")
    for role in (r for r in daemon_roles(plan, "predictive") if r.kind == "mag"):
        settings = parse_settings(parse_config(mcproxy_config(role), "x.conf").plugin("pmipv6").settings)
        assert settings.peers and settings.name == role.node
        expected = {str(t.lma_underlay.ip): plan.tunnel(t.lma, role.node).mag_tunnel_if
                    for t in plan.tunnels}
        assert {str(k): v for k, v in settings.tunnel_for_lma.items()} == expected
        # a binding at the other MAG names the LMA by that MAG's tunnel: it must be known here
        other = "mag2" if role.node == "mag1" else "mag1"
        assert expected[str(plan.tunnel("lma2", other).lma_underlay.ip)] == "tun2"
    for role in daemon_roles(plan, "context", "predictive"):
        assert "tunnel_for_lma" not in role.plugin_settings, "context mode must not prepare"


# -- the driver ---------------------------------------------------------------------------
class Recorder:
    """Control clients and the testbed in one: every call in one list."""

    def __init__(self, calls: list, name: str = "", buffer: dict | None = None) -> None:
        self.calls, self.name, self.buffer = calls, name, buffer

    def handover_prepare(self, mn_id, target):
        self.calls.append(("prepare", self.name, target))

    def detach(self, mn_id):
        self.calls.append(("detach", self.name))

    def attach(self, mn_id, access_if, tunnel_if, lma, hnp, lifetime, context=None,
               previous_mag=None):
        self.calls.append(("attach", self.name, previous_mag))
        return {"attached": True, "buffer": self.buffer} if self.buffer else {"attached": True}


class FakeTestbed:
    def __init__(self, calls: list) -> None:
        self.calls = calls
        self.plan = make_plan(default_scenario().topology, run_id="0001")
        self.attached = {"mn1": "mag1"}

    def radio_detach(self, mn):
        self.calls.append(("radio_detach",))

    def radio_attach(self, mn, mag):
        self.calls.append(("radio_attach", mag))
        self.attached[mn] = mag

    def point_lma_route(self, mn, mag):
        self.calls.append(("route", mag))


def test_predictive_driver_prepares_then_detaches_the_old_mag_before_the_radio() -> None:
    calls: list = []
    buffer = {"flushed": 3, "skipped": 1, "overflow": 0, "marker": "peer"}
    controls = {"mag1": Recorder(calls, "mag1"), "mag2": Recorder(calls, "mag2", buffer)}
    ticks = itertools.count(1000.0, 1.0)  # every clock reading one second later: no sleeping
    driver = HandoverDriver(FakeTestbed(calls), "predictive", controls, 60,
                            clock=lambda: next(ticks), lead_interval=0.5)
    record = driver.handover(Handover(at=2.0, mn="mn1", to="mag2", l2_outage_interval=0.05))
    assert calls == [("prepare", "mag1", "mag2"), ("detach", "mag1"), ("radio_detach",),
                     ("radio_attach", "mag2"), ("route", "mag2"), ("attach", "mag2", "mag1")]
    names = [name for name, _ in record.events]
    assert names == ["prepare_sent", "prepare_answered", "detach_sent", "detach_answered",
                     "radio_detach", "radio_attach", "route_switch", "attach_sent",
                     "attach_answered"]
    assert [n for n in EVENTS if n in names] == names, "EVENTS lists them in this order"
    events = dict(record.events)
    assert (record.detach_at, record.attach_at) == (events["radio_detach"], events["radio_attach"])
    assert record.buffer == buffer and record.timeline()["buffer"] == buffer
    assert record.timeline()["events"] == events


def test_reactive_modes_detach_after_the_radio_and_have_no_buffer() -> None:
    calls: list = []
    controls = {"mag1": Recorder(calls, "mag1"), "mag2": Recorder(calls, "mag2")}
    driver = HandoverDriver(FakeTestbed(calls), "context", controls, 60, transfer="reactive")
    record = driver.handover(Handover(at=2.0, mn="mn1", to="mag2", l2_outage_interval=0.0))
    assert calls.index(("radio_detach",)) < calls.index(("detach", "mag1"))
    assert "prepare_sent" not in dict(record.events) and record.buffer is None


# -- fault counts ----------------------------------------------------------------------------
def test_reordered_counts_arrivals_below_the_highest_seen_duplicates_excluded() -> None:
    # 0..4 before the window; inside: 7, 5, 6 (both below 7: reordered), 6 again (duplicate,
    # not reordered), 8, 3 (arrived before: a duplicate), 9
    seen = arrivals([(seq, 9.0 + seq * 0.01) for seq in range(5)]
                    + [(7, 10.1), (5, 10.2), (6, 10.3), (6, 10.4), (8, 10.5), (3, 10.6), (9, 10.7)])
    faults = stream_faults(seen, 10.0, 20.0, seen[4])
    assert (faults.lost, faults.duplicated, faults.reordered) == (0, 2, 2)


def test_reordering_before_the_window_is_not_this_handovers() -> None:
    seen = arrivals([(0, 9.0), (2, 9.1), (1, 9.2), (3, 10.1)])
    assert stream_faults(seen, 10.0, 20.0, seen[2]).reordered == 0


def test_lost_counts_holes_after_the_flushed_burst_too() -> None:
    # last before detach: 99; after the attach a flushed burst 100..149, then live from 155 on:
    # 150..154 lost at the switch to kernel forwarding, after the first packet after the attach
    pairs = [(seq, 9.9 + seq * 0.0001) for seq in range(100)]
    pairs += [(seq, 10.051 + (seq - 100) * 0.0001) for seq in range(100, 150)]
    pairs += [(seq, 10.06 + (seq - 155) * 0.001) for seq in range(155, 300)]
    row = measure_stream_extended(HANDOVER, V6, arrivals(pairs, origin=9.9), 20.0, None)
    assert (row["lost"], row["duplicated"], row["reordered"]) == (5, 0, 0)
    # 100..149 were sent (1 ms per seq from 9.9) before the attach at 10.05: the burst's end
    assert row["attach_to_last_buffered_packet_ms"] == pytest.approx(1.0 + 4.9, abs=0.01)
    assert row["attach_to_first_packet_ms"] == pytest.approx(1.0, abs=0.01)


def test_delays_from_the_binding_attach_use_the_timeline() -> None:
    sent = dataclasses.replace(HANDOVER, events=(("radio_attach", HANDOVER.attach_at),
                                                 ("attach_sent", HANDOVER.attach_at + 0.0006)))
    pairs = [(seq, 9.9 + seq * 0.0001) for seq in range(100)]
    pairs += [(seq, 10.051 + (seq - 100) * 0.0001) for seq in range(100, 160)]
    row = measure_stream_extended(sent, V6, arrivals(pairs, origin=9.9), 20.0, None)
    assert row["binding_attach_to_first_packet_ms"] == pytest.approx(row["attach_to_first_packet_ms"] - 0.6)
    assert row["binding_attach_to_last_buffered_packet_ms"] == pytest.approx(
        row["attach_to_last_buffered_packet_ms"] - 0.6)
    assert measure_stream_extended(HANDOVER, V6, arrivals(pairs, origin=9.9), 20.0,
                                   None)["binding_attach_to_first_packet_ms"] is None, "no timeline"


def test_lost_is_null_without_a_packet_after_the_attach() -> None:
    row = measure_stream_extended(HANDOVER, V6, arrivals([(0, 9.0), (1, 9.5)]), 20.0, None)
    assert row["lost"] is None and row["reordered"] == 0
    assert row["attach_to_last_buffered_packet_ms"] is None


def test_totals_per_handover_and_family_and_the_printed_lines() -> None:
    later = HandoverRecord(1, "mn1", "mag2", "mag1", "predictive", 12.0, 12.05)
    v6 = arrivals([(0, 9.0), (1, 10.06), (3, 10.07), (2, 10.08), (2, 10.09), (4, 12.1)])
    v4 = arrivals([(0, 9.0), (3, 10.06), (5, 12.06), (4, 12.07)], stream=1)
    rows = measure([HANDOVER, later], {0: V6, 1: V4}, {"mn1": [0, 1]},
                   {"mn1": v6 + v4}, end_at=14.0)
    check_results({"mode": "predictive", "handovers": rows})
    totals = fault_totals(rows)
    first, second = totals["per_handover"]
    assert first["families"] == {"ipv4": {"lost": 2, "duplicated": 0, "reordered": 0},
                                 "ipv6": {"lost": 0, "duplicated": 1, "reordered": 1}}
    assert (first["lost"], first["duplicated"], first["reordered"]) == (2, 1, 1)
    assert second["families"]["ipv4"] == {"lost": 0, "duplicated": 0, "reordered": 1}
    assert totals["per_family"] == {"ipv4": {"lost": 2, "duplicated": 0, "reordered": 1},
                                    "ipv6": {"lost": 0, "duplicated": 1, "reordered": 1}}
    text = fault_lines(totals)
    assert "handover 0: lost 2 duplicated 1 reordered 1" in text
    assert "all handovers ipv4: lost 2 duplicated 0 reordered 1" in text
    assert "reo" in summary_table(rows).splitlines()[0]


def test_the_shared_reader_refuses_keys_outside_both_lists() -> None:
    row = measure_stream_extended(HANDOVER, V6, arrivals([(0, 9.0), (60, 10.06)]), 20.0, None)
    check_results({"mode": "predictive", "handovers": [row]})
    with pytest.raises(ValueError, match="extra \\['surprise'\\]"):
        check_results({"mode": "predictive", "handovers": [{**row, "surprise": 1}]})
