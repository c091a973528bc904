"""Proxy, ProxyInstance and ProxyApi on task.Clock with the in-memory data plane and packet sockets.

The whole IO layer runs here as in the daemon, only the kernel is replaced by
``dataplane.memory``: start-up queries, reports merged upstream, the plane's
forwarding per group, interface limits, carrier regain, removal, reload.
"""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import parse_config
from mcproxy_pmip.control.protocol import CommandError
from mcproxy_pmip.dataplane.port import PlaneLimitReached, Role, SourceFilter
from mcproxy_pmip.proxy.api import ProxyApi
from mcproxy_pmip.kernel.igmp_socket import ReceivedIgmp
from mcproxy_pmip.wire import igmp
from mcproxy_pmip.wire.records import FilterMode
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none, include, leave

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d2;\n"
G4, G6 = ipaddress.ip_address("239.1.1.1"), ipaddress.ip_address("ff3e::8000:1")
S1, S2 = ipaddress.ip_address("10.1.0.1"), ipaddress.ip_address("10.1.0.2")


@pytest.fixture
def run():
    proxy = MemoryProxy(CONFIG, ["up0", "d1", "d2"])
    yield proxy
    proxy.stop()


def test_start_attaches_every_interface_and_queries_downstreams(run: MemoryProxy) -> None:
    plane = run.plane.instances["p"]
    assert plane.roles == {"up0": Role.UPSTREAM, "d1": Role.DOWNSTREAM, "d2": Role.DOWNSTREAM}
    for family in (Family.IPV4, Family.IPV6):
        assert run.sockets[family].watched == {info.ifindex for info in run.host.links.values()}
        for link in ("d1", "d2"):
            queries = run.sent_queries(family, link)
            assert len(queries) == 1 and queries[0].group is None, "a General Query at once (docs/scenarios.md item 3)"
        assert run.sent_queries(family, "up0") == []


def test_report_goes_upstream_at_once_and_the_plane_forwards_the_group(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    reports = run.sent_reports(Family.IPV4, "up0")
    assert [r.group for r in reports[0].records] == [G4]
    plane = run.plane.instances["p"]
    outputs = plane.groups[(Family.IPV4, G4)]
    assert outputs.downstreams == (("d1", SourceFilter(FilterMode.EXCLUDE)),)
    assert outputs.upstreams == ("up0",)
    assert plane.forward(Family.IPV4, S1, G4, "up0") == {"d1"}
    assert plane.forward(Family.IPV4, S1, G4, "d2") == {"up0", "d1"}
    assert plane.forward(Family.IPV4, S1, G4, "d1") == {"up0"}, "never back to the incoming link"


def test_groups_changed_in_one_reactor_turn_reach_the_plane_in_one_call(run: MemoryProxy) -> None:
    plane = run.plane.instances["p"]
    plane.batches.clear()
    socket = run.sockets[Family.IPV4]
    for index, link in enumerate(("d1", "d2", "d1")):
        payload = igmp.build(igmp.IgmpV3Report((exclude_none(f"239.1.1.{index + 1}"),)))
        socket.inject(ReceivedIgmp(run.host.links[link].ifindex, ipaddress.IPv4Address("10.9.9.9"),
                                   ipaddress.IPv4Address("224.0.0.22"), 1, True, payload))
    run.proxy.receiver.read_igmp()
    assert plane.batches == [], "nothing before the turn ends"
    run.reactor.advance(0)
    groups = [ipaddress.ip_address(f"239.1.1.{n}") for n in (1, 2, 3)]
    assert plane.batches == [[(Family.IPV4, group) for group in groups]]
    assert set(plane.groups) == {(Family.IPV4, group) for group in groups}


def test_source_specific_join_gives_an_include_filter(run: MemoryProxy) -> None:
    run.mld_report("d2", [include("ff3e::8000:1", "2001:db8::1")])
    outputs = run.plane.instances["p"].groups[(Family.IPV6, G6)]
    assert outputs.downstreams == (("d2", SourceFilter(FilterMode.INCLUDE,
                                                       frozenset({ipaddress.ip_address("2001:db8::1")}))),)
    plane = run.plane.instances["p"]
    assert plane.forward(Family.IPV6, ipaddress.ip_address("2001:db8::1"), G6, "up0") == {"d2"}
    assert plane.forward(Family.IPV6, ipaddress.ip_address("2001:db8::2"), G6, "up0") == frozenset()


def test_last_member_leave_removes_the_group_from_the_plane(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    run.igmp_report("d1", [leave("239.1.1.1")])
    run.reactor.advance(1.0)
    run.reactor.advance(1.0)
    run.reactor.advance(0.1)
    assert (Family.IPV4, G4) not in run.plane.instances["p"].groups


def test_link_limit_is_a_clear_error_and_leaves_nothing_half_attached() -> None:
    run = MemoryProxy("protocol IGMPv3;\npinstance p: up0 ==> d1;\n", ["up0", "d1", "d2"], max_interfaces=2)
    try:
        api = ProxyApi(run.proxy)
        for _ in range(2):
            with pytest.raises(PlaneLimitReached, match="d2"):
                api.add_downstream("p", "d2")
        instance = run.proxy.instances["p"]
        assert "d2" not in instance.downstreams and "d2" not in instance.attached
        assert run.host.links["d2"].ifindex not in run.sockets[Family.IPV4].watched
        assert ("d2", Family.IPV4) not in instance.core.downstreams
    finally:
        run.stop()


def test_downstream_removed_by_the_operator_leaves_upstream_and_the_plane(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    api = ProxyApi(run.proxy)
    api.del_downstream("p", "d1")
    assert "d1" not in run.plane.instances["p"].roles
    assert (Family.IPV4, G4) not in run.plane.instances["p"].groups
    assert run.host.links["d1"].ifindex not in run.sockets[Family.IPV4].watched
    last = run.sent_reports(Family.IPV4, "up0")[-1]
    assert [(r.record_type.name, r.group) for r in last.records] == [("CHANGE_TO_INCLUDE", G4)]
    with pytest.raises(CommandError):
        api.del_downstream("p", "d1")


def test_carrier_regained_queries_the_link_again_and_keeps_its_state(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    before = len(run.sent_queries(Family.IPV4, "d1"))
    run.host.set_carrier("d1", False)
    run.links_changed()
    run.host.set_carrier("d1", True)
    run.links_changed()
    queries = run.sent_queries(Family.IPV4, "d1")[before:]
    assert queries and queries[0].group is None
    assert (Family.IPV4, G4) in run.plane.instances["p"].groups


def test_link_deleted_drops_its_state_and_a_new_link_of_that_name_is_attached_again(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    run.host.remove_link("d1")
    run.links_changed()
    plane = run.plane.instances["p"]
    assert "d1" not in plane.roles and (Family.IPV4, G4) not in plane.groups
    info = run.host.add_link("d1")
    run.links_changed()
    assert plane.interfaces()["d1"] == info.ifindex


def test_reload_adds_and_removes_downstreams_and_keeps_the_rest(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    run.host.add_link("d3")
    run.links_changed()
    run.proxy.reload(parse_config("protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d3;\n"))
    plane = run.plane.instances["p"]
    assert set(plane.roles) == {"up0", "d1", "d3"}
    assert plane.groups[(Family.IPV4, G4)].downstreams[0][0] == "d1", "d1's membership survived"


def test_stop_closes_the_plane_and_the_sockets() -> None:
    run = MemoryProxy(CONFIG, ["up0", "d1", "d2"])
    run.stop()
    assert run.plane.instances["p"].closed and run.plane.closed
    assert all(sock.closed for sock in run.sockets.values())


def test_status_routes_and_instances_come_from_the_plane(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    api = ProxyApi(run.proxy)
    assert api.status()["data_plane"] == "memory"
    routes = api.routes()
    assert [(r["group"], r["source"], r["oifs"]) for r in routes] == [("239.1.1.1", "*", ["d1", "up0"])]
    row = api.instances()[0]
    assert set(row["interfaces"]) == {"up0", "d1", "d2"}


def test_stop_leaves_no_link_watched_and_closes_the_plane(run: MemoryProxy) -> None:
    plane = run.plane.instances["p"]
    run.stop()
    assert plane.closed
    for family in (Family.IPV4, Family.IPV6):
        assert run.sockets[family].watched == set(), "upstreams are unwatched too"
