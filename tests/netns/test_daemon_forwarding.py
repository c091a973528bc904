"""The daemon's kernel forwarding seen on the wire, with Linux hosts (docs/scenarios.md items 12-15, IGMPv2 / MLDv1 hosts).

Data is UDP from the upstream router (or a host); what reaches a link is read
with AF_PACKET captures, what the kernel holds with the ``routes`` control
command (MFC rows: source, group, iif, oifs, packets).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.wire.records import RecordType
from tests.netns.planes import PLANES
from tests.netns.netns_fixtures import address, netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import PORT, Capture, ProxyTopology
from tests.netns.scenario_tools import (
    Watch,
    data_frames,
    queries,
    reports_from,
    scenario_topology,
    sender_from,
    sending,
    yaml_config,
)

pytestmark = pytest.mark.netns

FAMILIES = pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["ipv4", "ipv6"])
GROUP = {Family.IPV4: "239.6.6.1", Family.IPV6: "ff15::6:1"}
SOURCE = {Family.IPV4: "10.1.0.1", Family.IPV6: "fd01::1"}
SOURCE2 = {Family.IPV4: "10.1.0.11", Family.IPV6: "fd01::11"}
HOST1 = {Family.IPV4: "10.2.1.2", Family.IPV6: "fd02:1::2"}
CONFIG = yaml_config(query_interval=5, query_response_interval=1, last_member_query_interval=0.2,
                     last_member_query_count=2, unsolicited_report_interval=0.2)


@pytest.fixture(params=PLANES)
def topo(netns_factory, tmp_path, request) -> Iterator[ProxyTopology]:  # noqa: F811
    yield from scenario_topology(netns_factory, tmp_path, request.param)


def route(daemon, family: Family, source: str, group: str) -> dict | None:
    """The daemon's MFC row for (source, group), or None."""
    for row in daemon.request("routes"):
        if (row["family"], row["source"], row["group"]) == (family.name.lower(), source, group):
            return row
    return None


@FAMILIES
def test_first_packet_installs_the_entry_with_the_member_downstream(topo, family) -> None:
    """docs/scenarios.md item 12: (*,G) join on d1; the cache miss installs (S,G) up0 -> d1; data reaches the host."""
    daemon = topo.start_daemon(CONFIG)
    receiver = topo.join(topo.hosts[0], family, GROUP[family])
    watch = Watch([], [receiver])
    watch.until(lambda: [r for r in daemon.request("groups", interface="d1") if r["group"] == GROUP[family]], 5,
                "the group on d1")
    assert route(daemon, family, SOURCE[family], GROUP[family]) is None, "entry before any data"
    watch.until(lambda: watch.arrivals.get(receiver), 5, "data at the host",
                send=sending(topo.sender(family), GROUP[family]), period=0.01)
    row = route(daemon, family, SOURCE[family], GROUP[family])
    assert row is not None, daemon.request("routes")
    assert (row["iif"], row["oifs"]) == ("up0", ["d1"])
    assert row["packets"] >= 1


@FAMILIES
def test_data_already_flowing_reaches_a_new_member_at_once(topo, family) -> None:
    """docs/scenarios.md item 13: the existing (S,G) entry gains d1 when the report arrives; no wait for expiry."""
    daemon = topo.start_daemon(CONFIG)
    send = sending(topo.sender(family), GROUP[family])
    d1 = Capture(topo.px, "d1")
    watch = Watch([d1])
    watch.until(lambda: route(daemon, family, SOURCE[family], GROUP[family]), 5, "the (S,G) entry of the flow",
                send=send, period=0.002)
    assert route(daemon, family, SOURCE[family], GROUP[family])["oifs"] == []
    started = time.monotonic()
    receiver = topo.join(topo.hosts[0], family, GROUP[family])
    watch.receivers.append(receiver)
    watch.until(lambda: watch.arrivals.get(receiver), 5, "data at the new member", send=send, period=0.002)
    reports = [s for s in reports_from(d1, family, since=started) if s.records(ipaddress.ip_address(GROUP[family]))
               or getattr(s.message, "group", None) == ipaddress.ip_address(GROUP[family])]
    assert reports, "the host's report on d1"
    delay = watch.arrivals[receiver][0] - reports[0].at
    print(f"first data at the host {delay * 1000:.1f} ms after its report on d1")
    assert delay < 0.5
    assert route(daemon, family, SOURCE[family], GROUP[family])["oifs"] == ["d1"]


@FAMILIES
def test_source_specific_join_forwards_only_that_source(topo, family) -> None:
    """docs/scenarios.md item 14: INCLUDE{S1} for G: S1 reaches the host's link, S2 never does; upstream INCLUDE{S1}."""
    address(topo.up, "u0", "10.1.0.11/24", "fd01::11/64")
    group = GROUP[family]
    up, h1 = Capture(topo.up, "u0"), Capture(topo.hosts[0], "e0")
    watch = Watch([up, h1])
    daemon = topo.start_daemon(CONFIG)
    receiver = topo.join(topo.hosts[0], family, group, source=SOURCE[family])
    watch.receivers.append(receiver)
    s1, s2 = sender_from(topo.up, family, SOURCE[family]), sender_from(topo.up, family, SOURCE2[family])

    def both() -> None:
        s1.sendto(b"s1", (group, PORT))
        s2.sendto(b"s2", (group, PORT))

    watch.until(lambda: watch.arrivals.get(receiver), 5, "S1's data at the host", send=both, period=0.01)
    watch.run(0.3, send=both, period=0.01)
    sources = {str(src) for _, src in data_frames(h1, group)}
    assert sources == {SOURCE[family]}, f"data sources on the host link: {sources}"
    upstream = [r for s in reports_from(up, family) for r in s.records(ipaddress.ip_address(group))]
    assert upstream, "no upstream record for G"
    first = upstream[0]
    assert first.record_type in (RecordType.ALLOW_NEW_SOURCES, RecordType.CHANGE_TO_INCLUDE), upstream
    assert [str(s) for s in first.sources] == [SOURCE[family]]
    rows = [r for r in daemon.request("groups", interface="d1") if r["group"] == group]
    assert [(r["filter_mode"], r["sources"]) for r in rows] == [("INCLUDE", [SOURCE[family]])]
    assert route(daemon, family, SOURCE2[family], group)["oifs"] == []


@FAMILIES
def test_downstream_data_goes_upstream_and_to_members_never_back(topo, family) -> None:
    """docs/scenarios.md item 15: data from h1 on d1 goes up0 and d2 (h2 is a member), never back out of d1."""
    group = GROUP[family]
    up, h1 = Capture(topo.up, "u0"), Capture(topo.hosts[0], "e0")
    daemon = topo.start_daemon(CONFIG)
    receiver = topo.join(topo.hosts[1], family, group)
    watch = Watch([up, h1], [receiver])
    send = sending(sender_from(topo.hosts[0], family, HOST1[family], "e0"), group)
    watch.until(lambda: watch.arrivals.get(receiver), 5, "h1's data at h2", send=send, period=0.01)
    watch.run(0.3, send=send, period=0.01)
    assert data_frames(up, group, HOST1[family]), "h1's data did not go upstream"
    assert data_frames(h1, group) == [], "data went back out of d1"
    row = route(daemon, family, HOST1[family], group)
    assert (row["iif"], row["oifs"]) == ("d1", ["d2", "up0"])


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmpv2", "mldv1"])
def test_older_version_host_join_and_leave(topo, family) -> None:
    """An IGMPv2 / MLDv1 host: join -> data; leave -> Q(G) in its version, forwarding stops at ~LMQT."""
    host = topo.hosts[0]
    host.sysctl("net.ipv4.conf.e0.force_igmp_version", 2)
    host.sysctl("net.ipv6.conf.e0.force_mld_version", 1)
    old = 2 if family is Family.IPV4 else 1
    group = GROUP[family]
    h1, d1 = Capture(host, "e0"), Capture(topo.px, "d1")
    watch = Watch([h1, d1])
    daemon = topo.start_daemon(CONFIG)
    receiver = topo.join(host, family, group)
    watch.receivers.append(receiver)
    send = sending(topo.sender(family), group)
    watch.until(lambda: watch.arrivals.get(receiver), 5, "data at the host", send=send, period=0.01)
    rows = [r for r in daemon.request("groups", interface="d1") if r["group"] == group]
    assert [(r["filter_mode"], r["version"]) for r in rows] == [("EXCLUDE", old)]
    closed = time.monotonic()
    watch.receivers.remove(receiver)
    receiver.close()
    watch.run(1.0, send=send, period=0.01)
    target = ipaddress.ip_address(group)
    leaves = [s for s in reports_from(d1, family, since=closed) if getattr(s.message, "group", None) == target]
    assert leaves, "the host's Leave / Done on d1"
    left = leaves[0].at
    specific = [q for q in queries(h1, family, left) if q.message.group == target]
    assert specific, "no Q(G) after the leave"
    assert {q.message.version for q in specific} == {old}, "Q(G) not in the host's version"
    last = max(at for at, _ in data_frames(h1, group)) - left
    print(f"forwarding stopped {last * 1000:.0f} ms after the leave")
    assert 0.3 <= last <= 0.55, f"forwarding should stop at ~LMQT (0.4 s), stopped at {last:.3f} s"
    assert not [r for r in daemon.request("groups", interface="d1") if r["group"] == group]
