"""Real data through a kernel multicast routing table, IPv4 and IPv6.

sender ns --veth-- [up0  router ns  dn0] --veth-- receiver ns

The router opens table 42 (MRT_TABLE), installs its two interfaces as vifs,
sends traffic arriving on up0 to the table with an ``iif`` mrule, reads the
NOCACHE upcall of the first packet, installs the MFC entry and the receiver
(a socket joined to the group) gets the data; the (S,G) counters move.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import counters, mfc, mrules, upcalls, vifs
from mcproxy_pmip.kernel.mroute import MrouteSocket
from tests.netns.planes import requires_mroute
from tests.netns.netns_fixtures import Netns, address, netns_factory, veth  # noqa: F401 (fixture)

pytestmark = [pytest.mark.netns, requires_mroute]

TABLE = 42
PORT = 5001
SOURCE = {Family.IPV4: ipaddress.ip_address("10.1.0.2"), Family.IPV6: ipaddress.ip_address("fd01::2")}
GROUP = {Family.IPV4: ipaddress.ip_address("239.1.2.3"), Family.IPV6: ipaddress.ip_address("ff15::4242")}


@dataclass
class Topology:
    sender: Netns
    router: Netns
    receiver: Netns


@pytest.fixture
def topology(netns_factory) -> Topology:  # noqa: F811
    sender, router, receiver = netns_factory(), netns_factory(), netns_factory()
    router.sysctl("net.ipv6.conf.all.forwarding", 1)
    router.sysctl("net.ipv4.ip_forward", 1)
    veth(sender, "snd0", router, "up0")
    veth(router, "dn0", receiver, "rcv0")
    address(sender, "snd0", "10.1.0.2/24", "fd01::2/64")
    address(router, "up0", "10.1.0.1/24", "fd01::1/64")
    address(router, "dn0", "10.2.0.1/24", "fd02::1/64")
    address(receiver, "rcv0", "10.2.0.2/24", "fd02::2/64")
    receiver.ip("route", "add", "default", "via", "10.2.0.1")
    receiver.ip("-6", "route", "add", "default", "via", "fd02::1")
    for ns, interface in ((router, "up0"), (router, "dn0"), (receiver, "rcv0")):
        ns.sysctl(f"net.ipv4.conf.{interface}.rp_filter", 0)
    return Topology(sender, router, receiver)


def wait_readable(fd: int, timeout: float, what: str) -> None:
    readable, _, _ = select.select([fd], [], [], timeout)
    assert readable, f"timed out after {timeout}s waiting for {what}"


def open_sender(family: Family) -> socket.socket:
    ifindex = socket.if_nametoindex("snd0")
    if family is Family.IPV4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("4s4si", bytes(4), bytes(4), ifindex))
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    return sock


def open_receiver(family: Family) -> socket.socket:
    ifindex = socket.if_nametoindex("rcv0")
    group = GROUP[family]
    if family is Family.IPV4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((str(group), PORT))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4si", group.packed, bytes(4), ifindex))
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind((str(group), PORT, 0, ifindex))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group.packed + struct.pack("@I", ifindex))
    sock.setblocking(False)
    return sock


@pytest.fixture(params=[Family.IPV4, Family.IPV6], ids=["ipv4", "ipv6"])
def family(request) -> Family:
    return request.param


@pytest.fixture
def router_table(topology: Topology, family: Family) -> Iterator[MrouteSocket]:
    with topology.router.entered():
        sock = MrouteSocket(family, TABLE)
    yield sock
    sock.close()


def test_cache_miss_upcall_then_mfc_forwards_data(topology: Topology, family: Family, router_table: MrouteSocket):
    router = topology.router
    with router.entered():
        table = vifs.VifTable(router_table)
        up, down = table.add("up0"), table.add("dn0")
        rule = mrules.add_mrule(family, TABLE, iif="up0")
        assert rule in mrules.list_mrules(family)
    shown = router.ip("-4" if family is Family.IPV4 else "-6", "mrule", "show")
    assert f"iif up0 lookup {TABLE}" in shown, shown
    with topology.receiver.entered():
        receiver = open_receiver(family)
    with topology.sender.entered():
        sender = open_sender(family)
    source, group = SOURCE[family], GROUP[family]
    try:
        sender.sendto(b"first", (str(group), PORT))
        wait_readable(router_table.fileno(), 2.0, "the NOCACHE upcall")
        found = router_table.read_upcalls()
        assert found == [upcalls.NoCache(family, up.index, source, group)], found
        assert router_table.read_upcalls() == [], "one upcall per unresolved (S,G)"

        entries = mfc.MfcTable(router_table)
        entries.install(source, group, up.index, {down.index})
        shown = router.ip("-4" if family is Family.IPV4 else "-6", "mroute", "show", "table", str(TABLE))
        assert f"({source},{group})" in shown.replace(" ", ""), shown
        assert "Iif: up0" in shown and "Oifs: dn0" in shown, shown

        wait_readable(receiver.fileno(), 2.0, "the queued first packet at the receiver")
        assert receiver.recv(100) == b"first"

        before = counters.read_sg_counters(router_table, source, group)
        for n in range(5):
            sender.sendto(b"more %d" % n, (str(group), PORT))
        got = []
        deadline = time.monotonic() + 2.0
        while len(got) < 5 and time.monotonic() < deadline:
            wait_readable(receiver.fileno(), max(0.0, deadline - time.monotonic()), "forwarded data")
            got.append(receiver.recv(100))
        assert got == [b"more %d" % n for n in range(5)]
        after = counters.read_sg_counters(router_table, source, group)
        assert after.packets - before.packets == 5, (before, after)
        assert after.bytes > before.bytes

        entries.remove(source, group)
        shown = router.ip("-4" if family is Family.IPV4 else "-6", "mroute", "show", "table", str(TABLE))
        assert str(group) not in shown, shown
    finally:
        sender.close()
        receiver.close()
        with router.entered():
            mrules.delete_mrule(rule)
    with router.entered():
        assert rule not in mrules.list_mrules(family)


def test_wrong_vif_upcall_with_assert(topology: Topology, family: Family, router_table: MrouteSocket):
    router = topology.router
    with router.entered():
        table = vifs.VifTable(router_table)
        up, down = table.add("up0"), table.add("dn0")
        rule = mrules.add_mrule(family, TABLE, iif="up0")
    source, group = SOURCE[family], GROUP[family]
    with topology.sender.entered():
        sender = open_sender(family)
    try:
        router_table.set_assert(True)
        # The entry expects the data on dn0 and forwards to up0: data arriving on up0 is "wrong".
        mfc.MfcTable(router_table).install(source, group, down.index, {up.index})
        sender.sendto(b"wrong", (str(group), PORT))
        wait_readable(router_table.fileno(), 2.0, "the WRONGVIF upcall")
        found = router_table.read_upcalls()
        assert found == [upcalls.WrongVif(family, up.index, source, group)], found
    finally:
        sender.close()
        with router.entered():
            mrules.delete_mrule(rule)


def open_oracle(family: Family) -> socket.socket:
    """A plain raw IGMP / ICMPv6 socket joined to the report group on dn0 (so reports are delivered)."""
    ifindex = socket.if_nametoindex("dn0")
    report_group = family.all_routers_report_group
    if family is Family.IPV4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
        mreq = struct.pack("4s4si", report_group.packed, bytes(4), ifindex)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        mreq = report_group.packed + struct.pack("@I", ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    sock.setblocking(False)
    return sock


def test_mroute_socket_gets_upcalls_only_not_reports(topology: Topology, family: Family, router_table: MrouteSocket):
    with topology.router.entered():
        oracle = open_oracle(family)
    try:
        with topology.receiver.entered():
            receiver = open_receiver(family)  # the join makes the receiver's kernel send reports
        report_type = 0x22 if family is Family.IPV4 else 143  # IGMPv3 / MLDv2 report
        deadline = time.monotonic() + 3.0
        seen = None
        while seen is None:
            wait_readable(oracle.fileno(), max(0.0, deadline - time.monotonic()), "a report at the router")
            data = oracle.recv(2000)
            # Raw IPv4 sockets include the IP header (with the Router Alert option).
            offset = (data[0] & 0x0F) * 4 if family is Family.IPV4 else 0
            if len(data) > offset and data[offset] == report_type:
                seen = data
        readable, _, _ = select.select([router_table.fileno()], [], [], 0)
        assert readable == [], "the report must not reach the mroute socket"
        assert router_table.read_upcalls() == []
        assert router_table.ignored_packets == 0 and router_table.malformed_upcalls == 0
        receiver.close()
    finally:
        oracle.close()


def test_mfc_update_and_vif_removal(topology: Topology, family: Family, router_table: MrouteSocket):
    router = topology.router
    ip_family = "-4" if family is Family.IPV4 else "-6"
    with router.entered():
        table = vifs.VifTable(router_table)
        up, down = table.add("up0"), table.add("dn0")
    source, group = SOURCE[family], GROUP[family]
    entries = mfc.MfcTable(router_table)
    entries.install(source, group, up.index, set())
    shown = router.ip(ip_family, "mroute", "show", "table", str(TABLE))
    assert "Iif: up0" in shown and "Oifs" not in shown, shown
    entries.install(source, group, up.index, {down.index})
    shown = router.ip(ip_family, "mroute", "show", "table", str(TABLE))
    assert shown.count(str(group)) == 1 and "Oifs: dn0" in shown, shown
    with pytest.raises(ValueError):
        entries.install(source, group, up.index, {up.index})
    assert entries.without_vif(down.index) == [mfc.MfcEntry(source, group, up.index, frozenset())]
    with router.entered():
        table.remove("dn0")
    shown = router.ip(ip_family, "mroute", "show", "table", str(TABLE))
    assert "Iif: up0" in shown and "dn0" not in shown, shown
    assert entries.without_vif(up.index) == [mfc.MfcEntry(source, group, up.index, frozenset())]
    assert len(entries) == 0
    assert router.ip(ip_family, "mroute", "show", "table", str(TABLE)).strip() == ""
    with pytest.raises(KernelError) as missing:
        counters.read_sg_counters(router_table, source, group)
    assert missing.value.errno == errno.EADDRNOTAVAIL


def test_read_upcalls_is_bounded_and_never_blocks(topology: Topology, family: Family, router_table: MrouteSocket):
    with topology.router.entered():
        table = vifs.VifTable(router_table)
        up = table.add("up0")
        rule = mrules.add_mrule(family, TABLE, iif="up0")
    base = GROUP[family]
    groups = [base + n for n in range(5)]
    with topology.sender.entered():
        sender = open_sender(family)
    try:
        for group in groups:
            sender.sendto(b"x", (str(group), PORT))
        found: list[upcalls.Upcall] = []
        deadline = time.monotonic() + 2.0
        while len(found) < len(groups):
            wait_readable(router_table.fileno(), max(0.0, deadline - time.monotonic()), "five NOCACHE upcalls")
            batch = router_table.read_upcalls(max_messages=2)
            assert 1 <= len(batch) <= 2
            found += batch
        assert sorted(found, key=lambda u: u.group) == [
            upcalls.NoCache(family, up.index, SOURCE[family], group) for group in groups
        ]
        assert router_table.read_upcalls() == [], "returns at once when nothing is queued"
    finally:
        sender.close()
        with topology.router.entered():
            mrules.delete_mrule(rule)
