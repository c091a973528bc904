"""The packet sockets at kernel-default sysctls: forty downstreams, report bursts, missing privileges.

A proxy namespace with 40 veth downstreams (more than ``igmp_max_memberships``,
20, allows IP memberships for) to four host namespaces of ten links each,
whose kernels report in IGMPv3/MLDv2, IGMPv2/MLDv1 and the two mixes. Every
report reaches the socket with the right interface index; data, our own
queries and frames with broken checksums do not.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable

import pytest

from mcproxy_pmip.addresses import ALL_NODES, ALL_SYSTEMS
from mcproxy_pmip.kernel.packet_socket import IgmpPacketSocket, MldPacketSocket
from mcproxy_pmip.wire import igmp, mld
from netns_fixtures import Netns
from packet_io_fixtures import (PREFIX, Link, allmulti_counts, collect, inject, ip_batch, ipv4_packet,
                                ipv6_packet, link, link_local, make_links, members, netns_factory,
                                send_udp)

__all__ = ["link", "members", "netns_factory"]  # fixtures, imported for pytest

pytestmark = pytest.mark.netns

#: (IGMP version, MLD version) the kernel of each host namespace reports in
HOST_VERSIONS = ((3, 2), (2, 1), (3, 1), (2, 2))
LINKS_PER_HOST = 10
WAIT = 5.0


def group4(index: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address("239.77.0.0") + index + 1


def group6(index: int) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address("ff3e::77:0") + index + 1


@pytest.fixture
def downstreams(netns_factory: Callable[..., Netns]) -> tuple[Netns, list[Link], dict[str, tuple[int, int]]]:
    """The proxy namespace, its 40 links, and the (IGMP, MLD) versions of each host namespace."""
    proxy = netns_factory(prefix=PREFIX)
    hosts = [netns_factory(prefix=PREFIX) for _ in HOST_VERSIONS]
    versions = {}
    for host, (igmp_version, mld_version) in zip(hosts, HOST_VERSIONS):
        versions[host.name] = (igmp_version, mld_version)
        if igmp_version == 2:
            host.sysctl("net.ipv4.conf.all.force_igmp_version", 2)
        if mld_version == 1:
            host.sysctl("net.ipv6.conf.all.force_mld_version", 1)
    links = make_links(proxy, hosts, LINKS_PER_HOST, wait_ipv6=True)
    ip_batch(proxy, "".join(f"address add 10.79.{i}.1/24 dev {link.proxy_if}\n" for i, link in enumerate(links)))
    return proxy, links, versions


def igmp_reported(packet) -> set[tuple[int, ipaddress.IPv4Address]]:
    """(version, group) of each group a host report names; empty for anything else."""
    message = igmp.parse(packet.payload)
    if isinstance(message, igmp.IgmpV3Report):
        return {(3, record.group) for record in message.records}
    if isinstance(message, igmp.IgmpV2Report):
        return {(2, message.group)}
    return set()


def mld_reported(packet) -> set[tuple[int, ipaddress.IPv6Address]]:
    message = mld.parse(packet.payload)
    if isinstance(message, mld.MldV2Report):
        return {(2, record.group) for record in message.records}
    if isinstance(message, mld.MldV1Report):
        return {(1, message.group)}
    return set()


def test_forty_downstreams_at_default_sysctls(downstreams, members) -> None:
    proxy, links, versions = downstreams
    assert proxy.read_sysctl("net.ipv4.igmp_max_memberships") == "20", "kernel default"
    with proxy.entered():
        igmp_socket = IgmpPacketSocket()
        mld_socket = MldPacketSocket()
    try:
        for link in links:
            igmp_socket.watch(link.proxy_ifindex)
            mld_socket.watch(link.proxy_ifindex)
        counts = allmulti_counts(proxy)
        assert {counts[link.proxy_if] for link in links} == {2}, "one ALLMULTI request per socket"

        # Data and our own queries first: neither may be read.
        query4 = igmp.build(igmp.IgmpQuery(3, 1.0, None, robustness=2, query_interval=125.0))
        query6 = mld.build(mld.MldQuery(2, 1.0, None, robustness=2, query_interval=125.0))
        for index, link in enumerate(links):
            send_udp(link, group4(index))
            send_udp(link, group6(index))
            igmp_socket.send(link.proxy_ifindex, None, ALL_SYSTEMS, query4)
            mld_socket.send(link.proxy_ifindex, None, ALL_NODES, query6)
        for index, link in enumerate(links):
            members.join(link.host, link.host_ifindex, group4(index))
            members.join(link.host, link.host_ifindex, group6(index))

        expected4 = {(link.proxy_ifindex, versions[link.host.name][0], group4(i)) for i, link in enumerate(links)}
        expected6 = {(link.proxy_ifindex, versions[link.host.name][1], group6(i)) for i, link in enumerate(links)}

        def seen(got: list, reported: Callable) -> set:
            return {(p.ifindex, version, group) for p in got for version, group in reported(p)}

        got4 = collect(igmp_socket, lambda got: expected4 <= seen(got, igmp_reported),
                       "an IGMP report per link", WAIT)
        got6 = collect(mld_socket, lambda got: expected6 <= seen(got, mld_reported),
                       "an MLD report per link", WAIT)
        ours4 = {group4(i) for i in range(len(links))}
        ours6 = {group6(i) for i in range(len(links))}
        assert {item for item in seen(got4, igmp_reported) if item[2] in ours4} == expected4, "wrong ifindex"
        assert {item for item in seen(got6, mld_reported) if item[2] in ours6} == expected6, "wrong ifindex"
        assert not [p for p in got4 if p.payload[0] == 0x11], "our own queries are never read"
        assert not [p for p in got6 if p.payload[0] == mld.MULTICAST_LISTENER_QUERY], "ours are never read"
        assert (igmp_socket.drops, mld_socket.drops) == ({}, {}), "the filter kept the UDP data out"

        # A bad IPv4 header checksum on the first link, a bad ICMPv6 checksum on the last:
        # dropped and counted; a good report after each shows both were handled.
        first, last = links[0], links[-1]
        marker4, marker6 = ipaddress.IPv4Address("239.77.1.1"), ipaddress.IPv6Address("ff3e::77:1:1")
        report4 = igmp.build(igmp.IgmpV2Report(marker4))
        inject(first, ipv4_packet(ipaddress.IPv4Address(0), marker4, report4, good_checksum=False),
               ipv4_packet(ipaddress.IPv4Address(0), marker4, report4))
        source = link_local(last.host, last.host_if)
        report6 = mld.build(mld.MldV1Report(marker6), source, marker6)
        broken6 = report6[:2] + bytes((report6[2] ^ 0xFF,)) + report6[3:]
        inject(last, ipv6_packet(source, marker6, broken6), ipv6_packet(source, marker6, report6))
        got4 = collect(igmp_socket, lambda got: any(p.dst == marker4 for p in got), "the IPv4 marker", WAIT)
        got6 = collect(mld_socket, lambda got: any(p.dst == marker6 for p in got), "the IPv6 marker", WAIT)
        assert [p.ifindex for p in got4 if p.dst == marker4] == [first.proxy_ifindex]
        assert [p.ifindex for p in got6 if p.dst == marker6] == [last.proxy_ifindex]
        assert igmp_socket.drops == {"bad_ip_checksum": 1}
        assert mld_socket.drops == {"bad_icmpv6_checksum": 1}
    finally:
        igmp_socket.close()
        mld_socket.close()
    counts = allmulti_counts(proxy)
    assert {counts[link.proxy_if] for link in links} == {0}, "closing takes back every request"


def test_a_burst_beyond_the_receive_buffer_is_counted(link: Link) -> None:
    """With a tiny buffer the kernel drops most of a burst; PACKET_STATISTICS accounts for every frame."""
    burst = 300
    with link.proxy.entered():
        sock = IgmpPacketSocket(receive_buffer=4096)
    try:
        sock.watch(link.proxy_ifindex)
        groups = [ipaddress.IPv4Address("239.78.0.0") + i for i in range(burst)]
        inject(link, *(ipv4_packet(ipaddress.IPv4Address(0), g, igmp.build(igmp.IgmpV2Report(g))) for g in groups))
        got = collect(sock, lambda got: len(got) + sock.drops["receive_queue_full"] >= burst,
                      f"{burst} frames read or counted as dropped", WAIT)
        assert sock.drops["receive_queue_full"] > 0
        assert len(got) + sock.drops["receive_queue_full"] == burst
        assert [p.dst for p in got] == sorted(p.dst for p in got), "in order, none twice"
    finally:
        sock.close()


def run_python(ns: Netns, privileges: list[str], code: str) -> str:
    """``code`` in a fresh interpreter in ``ns`` under ``setpriv privileges``; its stdout."""
    result = ns.run(["setpriv", *privileges, sys.executable, "-c", code], check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


OPEN_BOTH = """
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.packet_socket import IgmpPacketSocket, MldPacketSocket
for kind in (IgmpPacketSocket, MldPacketSocket):
    try:
        sock = kind(receive_buffer={size})
    except KernelError as exc:
        print(exc.op, exc.errno)
    else:
        print("opened", sock.receive_buffer)
        sock.close()
"""


def test_opening_without_privileges_names_the_operation(link: Link) -> None:
    out = run_python(link.proxy, ["--reuid=65534", "--regid=65534", "--clear-groups"], OPEN_BOTH.format(size=1 << 20))
    assert out.splitlines() == ["socket(AF_PACKET IGMP) 1", "socket(AF_PACKET MLD) 1"]


def test_without_cap_net_admin_the_buffer_falls_back_to_rmem_max(link: Link) -> None:
    with open("/proc/sys/net/core/rmem_max") as limit:
        rmem_max = int(limit.read())
    wanted = 4 * rmem_max
    out = run_python(link.proxy, ["--inh-caps=-net_admin", "--bounding-set=-net_admin"],
                     OPEN_BOTH.format(size=wanted))
    assert out.splitlines() == [f"opened {2 * rmem_max}"] * 2, "SO_RCVBUF, capped by rmem_max (doubled)"
    for kind in (IgmpPacketSocket, MldPacketSocket):
        with link.proxy.entered():
            sock = kind(receive_buffer=wanted)
        sock.close()
        assert sock.receive_buffer == 2 * wanted, "SO_RCVBUFFORCE with CAP_NET_ADMIN"
