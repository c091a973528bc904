"""Links, host members, hand-made frames and bounded reads for the packet socket tests (root only).

Namespaces come from ``netns_fixtures.netns_factory`` with the prefix
``pio-`` and are removed with everything in them, also when a test fails.
A ``Link`` is a veth between a proxy namespace and a host namespace; many
links can share a host namespace. Frames are crafted here, byte by byte, and
put on a link with a packet socket in the host namespace, so that the proxy
side sees exactly what a broken or unusual host would send.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from mcproxy_pmip.wire import checksum, ipv4, ipv6
from netns_fixtures import Netns, netns_factory

__all__ = ["netns_factory"]  # the fixture that ``link`` needs, re-exported for pytest

PREFIX = "pio-"
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
UDP_PORT = 5001
PROXY_V4 = ipaddress.IPv4Interface("10.78.0.1/24")
HOST_V4 = ipaddress.IPv4Interface("10.78.0.2/24")


@dataclass(frozen=True)
class Link:
    """A veth: ``proxy_if`` in the proxy namespace, ``host_if`` in the host namespace, both up."""

    proxy: Netns
    host: Netns
    proxy_if: str
    host_if: str
    proxy_ifindex: int
    host_ifindex: int


def ifindexes(ns: Netns) -> dict[str, int]:
    """Interface name -> index in ``ns`` (one ``ip`` call)."""
    found = {}
    for line in ns.ip("-o", "link", "show").splitlines():
        number, name = line.split(":")[:2]
        found[name.strip().split("@")[0]] = int(number)
    return found


def allmulti_counts(ns: Netns) -> dict[str, int]:
    """Interface name -> its ALLMULTI reference count (``ip -d link``'s "allmulti N").

    The ALLMULTI flag in ``<...>`` shows only what a user set with ``ip link
    set allmulticast on``; requests such as ``PACKET_MR_ALLMULTI`` raise the count.
    """
    found = {}
    for line in ns.ip("-d", "-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        words = line.split()
        found[name] = int(words[words.index("allmulti") + 1])
    return found


def make_links(proxy: Netns, hosts: list[Netns], per_host: int, wait_ipv6: bool = False) -> list[Link]:
    """``per_host`` links from ``proxy`` (d0, d1, ...) to each host (h0, h1, ...), built with ``ip -batch``.

    ``wait_ipv6``: return only when every link has its link-local addresses (``wait_link_locals``).
    """
    plan = [(host, f"d{i}", f"h{i}") for i, host in enumerate(h for h in hosts for _ in range(per_host))]
    batch = "".join(f"link add {d} type veth peer name {h} netns {host.name}\nlink set {d} up\n"
                    for host, d, h in plan)
    ip_batch(proxy, batch)
    for host in hosts:
        ip_batch(host, "".join(f"link set {h} up\n" for peer, _, h in plan if peer is host))
    proxy_index = ifindexes(proxy)
    host_index = {host.name: ifindexes(host) for host in hosts}
    if wait_ipv6:
        wait_link_locals(proxy, [d for _, d, _ in plan])
        for host in hosts:
            wait_link_locals(host, [h for peer, _, h in plan if peer is host])
    return [Link(proxy, host, d, h, proxy_index[d], host_index[host.name][h]) for host, d, h in plan]


@pytest.fixture
def link(netns_factory: Callable[..., Netns]) -> Link:
    """One link d0 (PROXY_V4) -- h0 (HOST_V4) between a proxy and a host namespace."""
    proxy = netns_factory(prefix=PREFIX)
    host = netns_factory(prefix=PREFIX)
    (made,) = make_links(proxy, [host], 1)
    proxy.ip("address", "add", str(PROXY_V4), "dev", made.proxy_if)
    host.ip("address", "add", str(HOST_V4), "dev", made.host_if)
    return made


def ip_batch(ns: Netns, commands: str) -> None:
    """``ip -n NS -batch -`` with ``commands``, one per line."""
    result = subprocess.run(["ip", "-n", ns.name, "-batch", "-"], input=commands, capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"ip -n {ns.name} -batch failed: {result.stderr.strip()}")


def wait_link_locals(ns: Netns, names: list[str], timeout: float = 5.0) -> None:
    """Wait until each of ``names`` has its link-local address: carrier is up and IPv6 configured.

    The kernel reports carrier with a delay of up to a second (linkwatch); before
    that the link has no IPv6 routes. Polls ``ip``, bounded.
    """
    deadline = time.monotonic() + timeout
    while True:
        ready = {line.split()[1] for line in ns.ip("-o", "-6", "address", "show", "scope", "link").splitlines()}
        missing = sorted(set(names) - ready)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no link-local address after {timeout}s in {ns.name} on {missing}")
        time.sleep(0.02)


def link_local(ns: Netns, ifname: str, timeout: float = 5.0) -> ipaddress.IPv6Address:
    """The link-local address of ``ifname`` (it appears when the link comes up), bounded wait."""
    deadline = time.monotonic() + timeout
    while True:
        for word in ns.ip("-o", "-6", "addr", "show", "dev", ifname, "scope", "link").split():
            if word.startswith("fe80::"):
                return ipaddress.IPv6Interface(word).ip
        if time.monotonic() > deadline:
            raise AssertionError(f"no link-local address on {ns.name}/{ifname} after {timeout}s")
        time.sleep(0.02)


class Members:
    """Sockets in host namespaces holding memberships (the host's kernel reports them); closed at teardown."""

    def __init__(self) -> None:
        self._sockets: dict[tuple[str, int], socket.socket] = {}

    def _socket(self, ns: Netns, family: int) -> socket.socket:
        key = (ns.name, family)
        if key not in self._sockets:
            with ns.entered():
                self._sockets[key] = socket.socket(family, socket.SOCK_DGRAM)
        return self._sockets[key]

    def join(self, ns: Netns, ifindex: int, group: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self._membership(ns, ifindex, group, join=True)

    def leave(self, ns: Netns, ifindex: int, group: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self._membership(ns, ifindex, group, join=False)

    def _membership(self, ns: Netns, ifindex: int, group, join: bool) -> None:
        if group.version == 4:
            option = socket.IP_ADD_MEMBERSHIP if join else socket.IP_DROP_MEMBERSHIP
            self._socket(ns, socket.AF_INET).setsockopt(
                socket.IPPROTO_IP, option, struct.pack("=4s4si", group.packed, bytes(4), ifindex))
        else:
            option = socket.IPV6_JOIN_GROUP if join else socket.IPV6_LEAVE_GROUP
            self._socket(ns, socket.AF_INET6).setsockopt(
                socket.IPPROTO_IPV6, option, struct.pack("=16si", group.packed, ifindex))

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()


@pytest.fixture
def members() -> Iterator[Members]:
    created = Members()
    yield created
    created.close()


def send_udp(link: Link, group: ipaddress.IPv4Address | ipaddress.IPv6Address, payload: bytes = b"data") -> None:
    """One UDP datagram from the host to ``group`` out of the link's host side."""
    family = socket.AF_INET if group.version == 4 else socket.AF_INET6
    with link.host.entered():
        sock = socket.socket(family, socket.SOCK_DGRAM)
    with contextlib.closing(sock):
        if group.version == 4:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            struct.pack("=4s4si", bytes(4), bytes(4), link.host_ifindex))
            sock.sendto(payload, (str(group), UDP_PORT))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, link.host_ifindex)
            sock.sendto(payload, (str(group), UDP_PORT, 0, link.host_ifindex))


def multicast_mac(group: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """The Ethernet address a group maps to (RFC 1112 §6.4, RFC 2464 §7)."""
    if group.version == 4:
        return b"\x01\x00\x5e" + (int(group) & 0x7FFFFF).to_bytes(3, "big")
    return b"\x33\x33" + group.packed[-4:]


def inject(link: Link, *packets: bytes, mac: bytes | None = None) -> None:
    """Put ``packets`` (IPv4 or IPv6, by their version) on the link from the host side, as they are.

    Each frame goes to ``mac``, by default the MAC address of the packet's (multicast) destination.
    """
    with link.host.entered():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    with contextlib.closing(sock):
        for packet in packets:
            version = packet[0] >> 4
            ethertype = ETH_P_IP if version == 4 else ETH_P_IPV6
            destination = (ipaddress.IPv4Address(packet[16:20]) if version == 4
                           else ipaddress.IPv6Address(packet[24:40]))
            sock.sendto(packet, (link.host_if, ethertype, 0, 0, mac or multicast_mac(destination)))


def ipv4_packet(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload: bytes, *,
                protocol: int = ipv4.IPPROTO_IGMP, good_checksum: bool = True, fragment: int = 0) -> bytes:
    """An IPv4 packet with TTL 1 and Router Alert; its header checksum right or wrong."""
    options = ipv4.ROUTER_ALERT_OPTION
    header = struct.pack("!BBHHHBBH4s4s", 0x46, 0xC0, 24 + len(payload), 0, fragment, 1, protocol, 0,
                         src.packed, dst.packed) + options
    value = checksum.internet_checksum(header) ^ (0 if good_checksum else 0x5555)
    return header[:10] + struct.pack("!H", value) + header[12:] + payload


def ipv6_packet(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, icmp: bytes, *,
                hop_by_hop: bool = True) -> bytes:
    """An IPv6 packet with hop limit 1 carrying ICMPv6 ``icmp``, after the MLD Hop-by-Hop header or not."""
    body = b"\x3a" + ipv6.HOP_BY_HOP_ROUTER_ALERT[1:] + icmp if hop_by_hop else icmp
    first = ipv6.NEXT_HEADER_HOP_BY_HOP if hop_by_hop else 58
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), first, 1, src.packed, dst.packed) + body


def collect(sock, done: Callable[[list], bool], what: str, timeout: float = 3.0) -> list:
    """Read ``sock`` (waiting on select, no sleeps) until ``done(everything read)``; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    got: list = []
    while not done(got):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; read {len(got)}: {got!r:.2000}")
        if select.select([sock.fileno()], [], [], remaining)[0]:
            got.extend(sock.read_packets())
    return got


def read_until(sock, predicate: Callable[[object], bool], what: str, timeout: float = 3.0) -> list:
    """Read ``sock`` until a packet matches ``predicate``; everything read."""
    return collect(sock, lambda got: any(predicate(packet) for packet in got), what, timeout)


