"""Scenario YAML parsing and validation, and the address plan derived from it."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip_testbed.plan import make_plan
from mcproxy_pmip_testbed.scenario import Topology, default_scenario, load_scenario

GOOD = """
topology:
  lmas: [lma1]
  mags: [mag1, mag2]
  mns: [{name: mn1, mag: mag1}, {name: mn2, mag: mag2}]
streams:
  - {name: s6, family: ipv6, group: "ff3e::1", source_specific: true}
  - {name: s4, family: ipv4, group: "239.2.2.2", rate: 500, port: 6000}
subscriptions: {mn1: [s6, s4], mn2: [s4]}
handovers:
  - {at: 2, mn: mn1, to: mag2, l2_outage_ms: 100}
  - {at: 2.5, mn: mn2, to: mag1}
mode: plugin
options: {warmup_s: 1, tail_s: 2, mn_sees_link_change: true, capture: ["lma1:src0"]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_scenario(text)
    return [p.message for p in info.value.problems]


def test_default_scenario_is_the_documented_one() -> None:
    scenario = default_scenario()
    assert scenario.topology.lmas == ("lma1",)
    assert scenario.topology.mags == ("mag1", "mag2")
    assert [s.family.value for s in scenario.streams] == [6, 4]
    assert scenario.streams[0].source_specific
    assert [h.to for h in scenario.handovers] == ["mag2", "mag1", "mag2"]
    assert scenario.mode is None


def test_good_scenario_parses() -> None:
    scenario = load_scenario(GOOD)
    assert scenario.topology.mns[0].lma == "lma1"
    assert scenario.stream("s4").rate == 500 and scenario.stream("s4").port == 6000
    assert scenario.stream("s6").group == ipaddress.IPv6Address("ff3e::1")
    assert scenario.handovers[0].l2_outage_interval == pytest.approx(0.1)
    assert scenario.handovers[1].l2_outage_interval == 0.0
    assert scenario.options.mn_sees_link_change is True
    assert scenario.options.capture == ("lma1:src0",)
    assert scenario.duration_interval == pytest.approx(4.5)
    assert scenario.mode == "plugin"


@pytest.mark.parametrize(("change", "expected"), [
    (("mag: mag1}, {name: mn2", "mag: mag9}, {name: mn2"), "unknown MAG 'mag9'"),
    (('group: "239.2.2.2"', 'group: "10.0.0.1"'), "is not an IPV4 multicast group"),
    (('group: "ff3e::1"', 'group: "ff02::1"'), "link-local scope"),
    (('"ff3e::1", source_specific: true', '"ff0e::1", source_specific: true'), "SSM range"),
    (("{mn1: [s6, s4]", "{mn1: [s6, nope]"), "unknown stream 'nope'"),
    (("{at: 2.5, mn: mn2, to: mag1}", "{at: 2.5, mn: mn2, to: mag2}"), "already attached"),
    (("{at: 2.5,", "{at: 1.5,"), "time order"),
    (("mode: plugin", "mode: magic"), "must be one of"),
    (("tail_s: 2", "tail_s: -1"), "options.tail_s"),
    (("lmas: [lma1]", "lmas: [LMA_1]"), "bad node name"),
])
def test_each_problem_is_reported(change: tuple[str, str], expected: str) -> None:
    assert change[0] in GOOD
    problems = problems_of(GOOD.replace(*change))
    assert any(expected in p for p in problems), problems


def test_all_problems_listed_at_once() -> None:
    text = GOOD.replace("mode: plugin", "mode: magic").replace("to: mag1}", "to: mag7}")
    problems = problems_of(text)
    assert len(problems) >= 2


def test_not_yaml_is_a_config_error() -> None:
    assert problems_of("topology: [unclosed")[0].startswith("not YAML")


def test_handover_before_warmup_rejected() -> None:
    assert any("warmup" in p for p in problems_of(GOOD.replace("warmup_s: 1", "warmup_s: 3")))


def test_plan_names_fit_interfaces_and_addresses_are_per_mn() -> None:
    scenario = load_scenario(GOOD)
    plan = make_plan(scenario.topology, run_id="ab12")
    assert plan.ns("mag1") == "mptbab12-mag1"
    assert len(plan.namespaces) == 2 + 1 + 2 + 2
    tunnel = plan.tunnel("lma1", "mag2")
    assert (tunnel.lma_tunnel_if, tunnel.mag_tunnel_if) == ("t2", "tun1")
    assert tunnel.lma_underlay.network == tunnel.mag_underlay.network
    mn1, mn2 = plan.mn("mn1"), plan.mn("mn2")
    assert mn1.hnp != mn2.hnp and mn1.home_v6.ip in mn1.hnp
    assert mn1.gateway_v4.network == mn1.home_v4.network
    assert not plan.access_bridge
    assert plan.mag_downstreams("mag1", "lma1") == ("a1", "a2")


def test_access_bridge_beyond_31_mns_per_mag_on_mroute_only() -> None:
    from mcproxy_pmip_testbed.scenario import MobileNode
    mns = tuple(MobileNode(f"mn{i}", "lma1", "mag1") for i in range(1, 33))
    small = make_plan(Topology(("lma1",), ("mag1",), mns[:31]), mag_plane="mroute")
    large = make_plan(Topology(("lma1",), ("mag1",), mns), mag_plane="mroute")
    unlimited = make_plan(Topology(("lma1",), ("mag1",), mns), mag_plane="nftables")
    assert not small.access_bridge
    assert large.access_bridge and large.mag_downstreams("mag1", "lma1") == ("acc0",)
    assert not unlimited.access_bridge
    assert unlimited.mag_downstreams("mag1", "lma1") == tuple(f"a{i}" for i in range(1, 33))
    names = [m.radio_mag_port(1) for m in large.mns] + [m.mag_access_if() for m in large.mns]
    assert max(len(n) for n in names) <= 15
