"""A proxy in a namespace between an upstream router and Linux hosts, for daemon tests.

    up (router, source) --u0/up0-- [ px: mcproxy-pmip ] --d1/e0-- h1
                                                        --d2/e0-- h2

The daemon runs as a real process (``mcproxy-pmip -f CONF -d --control SOCK
--data-plane PLANE``; the ``proxy_topology`` fixture runs each test once per data
plane the kernel offers, ``tests.netns.planes``)
and is stopped with SIGTERM at teardown (its exit status is checked). Hosts
join with the kernel's own IGMP/MLD host stack; a packet socket on the
upstream router sees the proxy's reports on the wire; a UDP source sends data.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.control.client import ControlClient, ControlError
from tests.netns.netns_fixtures import Netns, address, veth
from tests.netns.planes import PLANES

DAEMON = [sys.executable, "-m", "mcproxy_pmip"]
PORT = 5101
UP_SOURCE = {Family.IPV4: ipaddress.ip_address("10.1.0.1"), Family.IPV6: ipaddress.ip_address("fd01::1")}
ETH_P_ALL = 0x0003


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.005):
    """Poll ``condition`` until it returns a true value; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Daemon:
    ns: Netns
    process: subprocess.Popen
    control: str
    log_path: str

    def request(self, cmd: str, **args):
        return ControlClient(self.control, timeout=5).request(cmd, **args)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
                raise AssertionError(f"daemon ignored signal {sig}; log:\n{self.log()[-3000:]}")
        return self.process.returncode


class Capture:
    """An AF_PACKET socket on one interface: every frame, parsed to (time, family, proto, src, dst, payload)."""

    def __init__(self, ns: Netns, interface: str) -> None:
        with ns.entered():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((interface, 0))
        self.sock.setblocking(False)
        self.frames: list[tuple] = []

    def drain(self) -> list[tuple]:
        while True:
            try:
                frame, meta = self.sock.recvfrom(65535)
            except BlockingIOError:
                return self.frames
            if meta[2] == socket.PACKET_OUTGOING:
                continue
            parsed = parse_frame(frame)
            if parsed is not None:
                self.frames.append((time.monotonic(), *parsed))

    def reports(self, family: Family) -> list[tuple]:
        """IGMP (proto 2) or MLD (ICMPv6 types 131/132/143) frames seen so far."""
        found = []
        for frame in self.drain():
            _, fam, proto, _, _, payload = frame
            if fam is not family:
                continue
            if family is Family.IPV4 and proto == 2 and payload[:1] in (b"\x12", b"\x16", b"\x17", b"\x22"):
                found.append(frame)
            if family is Family.IPV6 and proto == 58 and payload[:1] in (b"\x83", b"\x84", b"\x8f"):
                found.append(frame)
        return found

    def close(self) -> None:
        self.sock.close()


def parse_frame(frame: bytes):
    ethertype = struct.unpack("!H", frame[12:14])[0]
    packet = frame[14:]
    if ethertype == 0x0800:
        ihl = (packet[0] & 0x0F) * 4
        return (Family.IPV4, packet[9], ipaddress.IPv4Address(packet[12:16]),
                ipaddress.IPv4Address(packet[16:20]), packet[ihl:])
    if ethertype == 0x86DD:
        nxt, offset = packet[6], 40
        while nxt == 0:  # hop-by-hop options
            nxt, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        return (Family.IPV6, nxt, ipaddress.IPv6Address(packet[8:24]),
                ipaddress.IPv6Address(packet[24:40]), packet[offset:])
    return None


@dataclass
class ProxyTopology:
    up: Netns
    px: Netns
    hosts: list[Netns]
    tmp: str
    data_plane: str = "auto"
    daemons: list[Daemon] = field(default_factory=list)

    def start_daemon(self, config: str, *extra: str, name: str = "px", ns: Netns | None = None,
                     ready: bool = True) -> Daemon:
        ns = ns or self.px
        conf = os.path.join(self.tmp, f"{name}.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(config)
        control = os.path.join(self.tmp, f"{name}.sock")
        log_path = os.path.join(self.tmp, f"{name}.log")
        log_file = open(log_path, "w", encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        plane = () if "--data-plane" in extra else ("--data-plane", self.data_plane)
        process = ns.popen([*DAEMON, "-f", conf, "-d", "--control", control, "--seed", "1", *plane, *extra],
                           stdout=log_file, stderr=subprocess.STDOUT, env=env)
        log_file.close()
        daemon = Daemon(ns, process, control, log_path)
        self.daemons.append(daemon)
        if ready:
            def answering():
                if process.poll() is not None:
                    raise AssertionError(f"daemon exited {process.returncode}:\n{daemon.log()[-3000:]}")
                with contextlib.suppress(OSError, ControlError):
                    return daemon.request("status")
                return None
            wait_for(answering, 15, "the daemon's control socket")
        return daemon

    def join(self, host: Netns, family: Family, group: str, source: str | None = None,
             interface: str = "e0") -> socket.socket:
        """A UDP socket in ``host`` joined to ``group`` (source-specific with ``source``)."""
        with host.entered():
            ifindex = socket.if_nametoindex(interface)
            if family is Family.IPV4:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((group, PORT))
                if source is None:
                    mreq = struct.pack("4s4si", socket.inet_aton(group), bytes(4), ifindex)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, 39, struct.pack(  # IP_ADD_SOURCE_MEMBERSHIP
                        "4s4s4s", socket.inet_aton(group), bytes(4), socket.inet_aton(source)))
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((group, PORT, 0, ifindex))
                if source is None:
                    mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, 46, group_source_req(ifindex, group, source))
        sock.setblocking(False)
        return sock

    def sender(self, family: Family, ns: Netns | None = None, interface: str = "u0") -> socket.socket:
        ns = ns or self.up
        with ns.entered():
            ifindex = socket.if_nametoindex(interface)
            if family is Family.IPV4:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                struct.pack("4s4si", bytes(4), bytes(4), ifindex))
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        return sock


def group_source_req(ifindex: int, group: str, source: str) -> bytes:
    """struct group_source_req for IPv6 (interface, sockaddr_storage group, sockaddr_storage source)."""
    def storage(address: str) -> bytes:
        sin6 = struct.pack("@H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + \
            socket.inet_pton(socket.AF_INET6, address) + struct.pack("@I", 0)
        return sin6 + bytes(128 - len(sin6))
    return struct.pack("@I", ifindex) + bytes(4) + storage(group) + storage(source)


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram queued on ``sock`` now."""
    data = []
    while True:
        try:
            data.append(sock.recv(2048))
        except BlockingIOError:
            return data


def send_until(sender: socket.socket, group: str, receiver: socket.socket, timeout: float, what: str,
               payload: bytes = b"data") -> float:
    """Send to ``group`` every 5 ms until ``receiver`` gets a datagram; returns seconds taken."""
    start = time.monotonic()

    def arrived():
        sender.sendto(payload, (group, PORT))
        readable, _, _ = select.select([receiver], [], [], 0.005)
        return bool(readable) and bool(received(receiver))
    wait_for(arrived, timeout, what, interval=0)
    return time.monotonic() - start


@pytest.fixture(params=PLANES)
def proxy_topology(netns_factory, tmp_path, request) -> Iterator[ProxyTopology]:  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), "mpd-", request.param)


def build_proxy_topology(netns_factory, tmp: str, prefix: str,
                         data_plane: str = "auto") -> Iterator[ProxyTopology]:
    """The fixture's body with its namespace ``prefix``: yields the topology, stops daemons after."""
    up, px = netns_factory(prefix), netns_factory(prefix)
    hosts = [netns_factory(prefix), netns_factory(prefix)]
    veth(up, "u0", px, "up0")
    address(up, "u0", "10.1.0.1/24", "fd01::1/64")
    address(px, "up0", "10.1.0.2/24", "fd01::2/64")
    for index, host in enumerate(hosts, start=1):
        veth(px, f"d{index}", host, "e0")
        address(px, f"d{index}", f"10.2.{index}.1/24", f"fd02:{index}::1/64")
        address(host, "e0", f"10.2.{index}.2/24", f"fd02:{index}::2/64")
        host.ip("route", "add", "default", "via", f"10.2.{index}.1")
        host.ip("-6", "route", "add", "default", "via", f"fd02:{index}::1")
    px.sysctl("net.ipv6.conf.all.forwarding", 1)
    px.sysctl("net.ipv4.ip_forward", 1)
    for ns in (up, px, *hosts):
        ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
    up.ip("route", "add", "default", "via", "10.1.0.2")
    up.ip("-6", "route", "add", "default", "via", "fd01::2")
    for ns, names in ((px, ("up0", "d1", "d2")), (up, ("u0",)), (hosts[0], ("e0",)), (hosts[1], ("e0",))):
        for name in names:
            wait_for(lambda: "fe80::" in ns.ip("-6", "addr", "show", "dev", name), 5,
                     f"a link-local address on {name}")
    topology = ProxyTopology(up, px, hosts, tmp, data_plane)
    yield topology
    for daemon in topology.daemons:
        daemon.stop()


def add_upstream_router(topology: ProxyTopology, netns_factory, prefix: str, index: int = 1) -> Netns:
    """A second router namespace on the proxy's ``up{index}`` (10.{index+2}.0.0/24, fd0{index+2}::/64).

    The router's side is ``u0`` at ``.1`` / ``::1`` with a default route to the proxy.
    """
    router, px = netns_factory(prefix), topology.px
    net = index + 2
    veth(router, "u0", px, f"up{index}")
    address(router, "u0", f"10.{net}.0.1/24", f"fd0{net}::1/64")
    address(px, f"up{index}", f"10.{net}.0.2/24", f"fd0{net}::2/64")
    router.ip("route", "add", "default", "via", f"10.{net}.0.2")
    router.ip("-6", "route", "add", "default", "via", f"fd0{net}::2")
    for ns, name in ((router, "u0"), (px, f"up{index}")):
        wait_for(lambda ns=ns, name=name: "fe80::" in ns.ip("-6", "addr", "show", "dev", name), 5,
                 f"a link-local address on {name}")
    return router


def send_frame(ns: Netns, interface: str, frame: bytes) -> None:
    """Put one whole Ethernet ``frame`` on the wire of ``interface`` in ``ns`` (AF_PACKET)."""
    with ns.entered():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind((interface, 0))
    with sock:
        sent = sock.send(frame)
    assert sent == len(frame), f"sent {sent} of {len(frame)} octets on {interface}"


def _multicast_mac(group: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    if group.version == 4:
        return b"\x01\x00\x5e" + (int(group) & 0x7FFFFF).to_bytes(3, "big")
    return b"\x33\x33" + group.packed[-4:]


def igmp_frame(src: str, payload: bytes, dst: str = "224.0.0.22", ttl: int = 1,
               router_alert: bool = True) -> bytes:
    """An Ethernet frame with an IPv4 header (Router Alert option) around IGMP ``payload`` as given."""
    from mcproxy_pmip.wire.checksum import internet_checksum
    source, destination = ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst)
    options = b"\x94\x04\x00\x00" if router_alert else b""
    header_length = 20 + len(options)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | header_length // 4, 0xC0, header_length + len(payload),
                         0, 0, ttl, 2, 0, source.packed, destination.packed) + options
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    return _multicast_mac(destination) + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + header + payload


def mld_frame(src: str, payload: bytes, dst: str = "ff02::16", hop_limit: int = 1) -> bytes:
    """An Ethernet frame: IPv6, Hop-by-Hop Router Alert, then ICMPv6 ``payload`` as given (checksum included)."""
    source, destination = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    hop_by_hop = b"\x3a\x00\x05\x02\x00\x00\x01\x00"
    header = struct.pack("!IHBB16s16s", 0x60000000, len(hop_by_hop) + len(payload), 0, hop_limit,
                         source.packed, destination.packed)
    return _multicast_mac(destination) + b"\x02\x00\x00\x00\x00\x01" + b"\x86\xdd" + header + hop_by_hop + payload
