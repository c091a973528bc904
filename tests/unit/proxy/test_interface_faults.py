"""Interfaces that vanish and come back, on task.Clock with the in-memory plane and packet sockets.

A downstream deleted and created again (a new ifindex under the same name),
also when the removal and the creation arrive in one batch of link events;
an upstream that goes down and up, is deleted and created again, or loses
and regains carrier: it reports the whole database again.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.kernel.netmon import LinkChanged
from mcproxy_pmip.proxy.instance import UPSTREAM_RETURN_REPORT_INTERVAL
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d2;\n"
G4 = ipaddress.ip_address("239.1.1.1")
G6 = ipaddress.ip_address("ff3e::8000:1")


@pytest.fixture
def run():
    proxy = MemoryProxy(CONFIG, ["up0", "d1", "d2"])
    yield proxy
    proxy.stop()


def set_admin(run: MemoryProxy, name: str, up: bool) -> None:
    """``ip link set NAME down|up`` on the pretend host."""
    info = dataclasses.replace(run.host.links[name], up=up, running=up)
    run.host.links[name] = info
    run.host._events.append(LinkChanged(info.ifindex, name, up, up, info.mtu))


def reported_groups(run: MemoryProxy, family: Family, since: int) -> set:
    return {record.group for report in run.sent_reports(family, "up0")[since:] for record in report.records}


@pytest.mark.parametrize("coalesced", [False, True], ids=["two-batches", "one-batch"])
def test_recreated_downstream_gets_its_new_index_a_query_and_forwarding(run: MemoryProxy, coalesced) -> None:
    run.igmp_report("d1", [exclude_none(str(G4))])
    old = run.host.links["d1"].ifindex
    run.host.remove_link("d1")
    if not coalesced:
        run.links_changed()
    new = run.host.add_link("d1").ifindex
    run.links_changed()
    plane = run.plane.instances["p"]
    assert new != old
    assert plane.interfaces()["d1"] == new
    for family in (Family.IPV4, Family.IPV6):
        assert new in run.sockets[family].watched and old not in run.sockets[family].watched
        queries = run.sent_queries(family, "d1")
        assert queries and queries[-1].group is None, f"no {family.name} General Query on the new d1"
    assert (Family.IPV4, G4) not in plane.groups, "the old link's members outlived it"
    run.igmp_report("d1", [exclude_none(str(G4))])
    run.mld_report("d1", [exclude_none(str(G6))])
    assert (Family.IPV4, G4) in plane.groups and (Family.IPV6, G6) in plane.groups


def test_upstream_down_and_up_reports_the_database_again(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none(str(G4))])
    run.mld_report("d1", [exclude_none(str(G6))])
    run.reactor.advance(30)
    before = {family: len(run.sent_reports(family, "up0")) for family in Family}
    set_admin(run, "up0", False)
    run.links_changed()
    assert "up0" not in run.proxy.instances["p"].attached
    set_admin(run, "up0", True)
    run.links_changed()
    run.reactor.advance(UPSTREAM_RETURN_REPORT_INTERVAL)
    assert G4 in reported_groups(run, Family.IPV4, before[Family.IPV4])
    assert G6 in reported_groups(run, Family.IPV6, before[Family.IPV6])
    assert run.plane.instances["p"].interfaces()["up0"] == run.host.links["up0"].ifindex


@pytest.mark.parametrize("coalesced", [False, True], ids=["two-batches", "one-batch"])
def test_recreated_upstream_is_attached_under_its_new_index_and_reported_on(run: MemoryProxy, coalesced) -> None:
    run.igmp_report("d1", [exclude_none(str(G4))])
    run.reactor.advance(30)
    run.host.remove_link("up0")
    if not coalesced:
        run.links_changed()
    new = run.host.add_link("up0").ifindex
    run.links_changed()
    run.reactor.advance(UPSTREAM_RETURN_REPORT_INTERVAL)
    assert run.plane.instances["p"].interfaces()["up0"] == new
    assert new in run.sockets[Family.IPV4].watched
    assert G4 in reported_groups(run, Family.IPV4, 0), "no report on the new up0 (a fresh ifindex)"


def test_upstream_carrier_regained_reports_the_database_again(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none(str(G4))])
    run.reactor.advance(30)
    before = len(run.sent_reports(Family.IPV4, "up0"))
    run.host.set_carrier("up0", False)
    run.links_changed()
    run.reactor.advance(5)
    assert len(run.sent_reports(Family.IPV4, "up0")) == before, "a report while the carrier was away"
    run.host.set_carrier("up0", True)
    run.links_changed()
    run.reactor.advance(UPSTREAM_RETURN_REPORT_INTERVAL)
    assert G4 in reported_groups(run, Family.IPV4, before)
