"""Tools for wire-level scenario tests of the daemon (docs/scenarios.md), on top of ``proxy_harness``.

* ``scenario_topology``: the harness topology with this module's namespace prefix ``mps-``
  (a test module wraps it in its own fixture).
* ``yaml_config``: a one-instance YAML configuration with short timers.
* ``Watch``: one loop that sends data at a steady rate, reads AF_PACKET captures
  and host sockets as soon as they are readable and timestamps everything with
  ``time.monotonic()``, so times of queries, reports and data can be compared.
* ``control_messages`` / ``data_frames``: captured frames decoded with the
  project's wire codecs (IGMP, MLD) or as UDP to a group.
* ``Querier``: an upstream router sending queries through the project's raw
  IGMP / MLD sockets (TTL / hop limit 1, Router Alert), opened in its namespace.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.kernel.igmp_socket import IgmpSendSocket
from mcproxy_pmip.kernel.mld_socket import MldSendSocket
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord
from tests.netns.netns_fixtures import Netns
from tests.netns.proxy_harness import (
    PORT,
    Capture,
    ProxyTopology,
    build_proxy_topology,
    received,
)

PREFIX = "mps-"
MLD_TYPES = (130, 131, 132, 143)
UDP = 17


def scenario_topology(netns_factory, tmp_path, data_plane: str = "auto") -> Iterator[ProxyTopology]:
    """Body of a test module's topology fixture: the harness topology in ``mps-`` namespaces."""
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, data_plane)


def yaml_config(downstreams: tuple[str, ...] = ("d1", "d2"), **timers: float) -> str:
    """Instance ``p``: up0 ==> ``downstreams``, IGMPv3 and MLDv2, with ``timers`` (Timers fields)."""
    lines = ["protocols: [IGMPv3, MLDv2]", "instances:", "  - name: p", "    upstreams: [up0]",
             f"    downstreams: [{', '.join(downstreams)}]"]
    if timers:
        lines.append("    timers:")
        lines.extend(f"      {key}: {value}" for key, value in timers.items())
    return "\n".join(lines) + "\n"


def quiet_host_retransmissions(host: Netns, interface: str = "e0") -> None:
    """Make the host's own report retransmissions follow within 10 ms (and IGMP send none)."""
    host.sysctl("net.ipv4.igmp_qrv", 1)
    host.sysctl(f"net.ipv4.conf.{interface}.igmpv3_unsolicited_report_interval", 10)
    host.sysctl(f"net.ipv6.conf.{interface}.mldv2_unsolicited_report_interval", 10)


@dataclass(frozen=True)
class Seen:
    """One IGMP / MLD message seen on a link."""

    at: float
    source: IPAddress
    destination: IPAddress
    message: object

    def records(self, group: IPAddress | None = None) -> tuple[GroupRecord, ...]:
        found = getattr(self.message, "records", ())
        return tuple(r for r in found if group is None or r.group == group)


def control_messages(capture: Capture, family: Family, since: float = 0.0) -> list[Seen]:
    """IGMP or MLD messages captured at or after ``since``, decoded by the wire codecs."""
    seen = []
    for at, fam, proto, src, dst, payload in capture.drain():
        if fam is not family or at < since:
            continue
        if family is Family.IPV4 and proto == 2:
            seen.append(Seen(at, src, dst, igmp.parse(payload)))
        elif family is Family.IPV6 and proto == 58 and payload[0] in MLD_TYPES:
            seen.append(Seen(at, src, dst, mld.parse(payload)))
    return seen


def queries(capture: Capture, family: Family, since: float = 0.0) -> list[Seen]:
    kind = igmp.IgmpQuery if family is Family.IPV4 else mld.MldQuery
    return [s for s in control_messages(capture, family, since) if isinstance(s.message, kind)]


def reports_from(capture: Capture, family: Family, source: IPAddress | None = None,
                 since: float = 0.0) -> list[Seen]:
    """Reports, leaves and dones (anything but queries), optionally from one source address."""
    kind = igmp.IgmpQuery if family is Family.IPV4 else mld.MldQuery
    return [s for s in control_messages(capture, family, since)
            if not isinstance(s.message, kind) and (source is None or s.source == source)]


def data_frames(capture: Capture, group: str, source: str | None = None) -> list[tuple[float, IPAddress]]:
    """(time, source) of the UDP frames to ``group`` captured so far."""
    target = ipaddress.ip_address(group)
    return [(at, src) for at, _, proto, src, dst, _ in capture.drain()
            if proto == UDP and dst == target and (source is None or str(src) == source)]


def link_local(ns: Netns, interface: str) -> ipaddress.IPv6Address:
    for line in ns.ip("-6", "-o", "addr", "show", "dev", interface, "scope", "link").splitlines():
        return ipaddress.IPv6Address(line.split()[3].split("/")[0])
    raise AssertionError(f"no link-local address on {interface} in {ns.name}")


def host_stack_groups(ns: Netns, interface: str) -> frozenset[IPAddress]:
    """Groups the namespace's own host stack has joined on ``interface`` (it reports them itself)."""
    groups = set()
    for line in ns.ip("maddr", "show", "dev", interface).splitlines():
        words = line.split()
        if words and words[0] in ("inet", "inet6"):
            groups.add(ipaddress.ip_address(words[1]))
    return frozenset(groups)


@dataclass
class Watch:
    """Captures and host sockets read in one loop; ``arrivals[sock]`` = monotonic receive times."""

    captures: list[Capture]
    receivers: list[socket.socket] = field(default_factory=list)
    arrivals: dict[socket.socket, list[float]] = field(default_factory=dict)

    def poll(self, timeout: float) -> None:
        readable, _, _ = select.select([c.sock for c in self.captures] + self.receivers, [], [], timeout)
        now = time.monotonic()
        for capture in self.captures:
            if capture.sock in readable:
                capture.drain()
        for receiver in self.receivers:
            if receiver in readable:
                self.arrivals.setdefault(receiver, []).extend(now for _ in received(receiver))

    def run(self, duration: float, send: Callable[[], None] | None = None, period: float = 0.005) -> None:
        """Watch for ``duration`` seconds, calling ``send`` every ``period``."""
        self.until(lambda: False, duration, "", send, period, fail=False)

    def until(self, condition: Callable[[], object], timeout: float, what: str,
              send: Callable[[], None] | None = None, period: float = 0.005, fail: bool = True):
        """Watch (and send) until ``condition`` holds; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if send is not None and now >= next_send:
                send()
                next_send = now + period
            value = condition()
            if value:
                return value
            if now >= deadline:
                if fail:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                return None
            wake = min(deadline, next_send if send is not None else now + period)
            self.poll(max(0.0, wake - time.monotonic()))


def sender_from(ns: Netns, family: Family, source: str, interface: str = "u0") -> socket.socket:
    """A UDP socket in ``ns`` sending multicast out of ``interface`` from ``source``."""
    with ns.entered():
        ifindex = socket.if_nametoindex(interface)
        if family is Family.IPV4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            ipaddress.IPv4Address(0).packed + socket.inet_aton(source)
                            + ifindex.to_bytes(4, "little"))
        else:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.bind((source, 0))
    return sock


def sending(sock: socket.socket, group: str, payload: bytes = b"data") -> Callable[[], None]:
    return lambda: sock.sendto(payload, (group, PORT))


class Querier:
    """Sends IGMP / MLD queries out of ``interface`` in ``ns`` through the project's raw sockets."""

    def __init__(self, ns: Netns, interface: str) -> None:
        with ns.entered():
            self.ifindex = socket.if_nametoindex(interface)
            self.igmp = IgmpSendSocket()
            self.mld = MldSendSocket()
        self.link_local = link_local(ns, interface)  # RFC 3810 §5.1.14; the kernel would pick a global one

    def query(self, family: Family, max_resp_interval: float, group: str | None = None,
              version: int | None = None) -> float:
        """Send a General (``group`` None) or group-specific query; returns the send time."""
        target = ipaddress.ip_address(group) if group else None
        version = version or family.newest_version
        if family is Family.IPV4:
            message = igmp.build(igmp.IgmpQuery(version, max_resp_interval, target, robustness=2,
                                                query_interval=125.0))
            at = time.monotonic()
            self.igmp.send(self.ifindex, None, target or ipaddress.IPv4Address("224.0.0.1"), message)
        else:
            message = mld.build(mld.MldQuery(version, max_resp_interval, target, robustness=2,
                                             query_interval=125.0))
            at = time.monotonic()
            self.mld.send(self.ifindex, self.link_local, target or ipaddress.IPv6Address("ff02::1"), message)
        return at

    def close(self) -> None:
        self.igmp.close()
        self.mld.close()
