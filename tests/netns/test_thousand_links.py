"""One daemon, one upstream, a thousand point-to-point downstreams with kernel hosts, at default sysctls.

    up (router, source) --u0/up0-- [ px: mcproxy-pmip, nftables plane ] --d0/h0----- hosts 0 (h0 .. h99)
                                                                        ...
                                                                        --d999/h999-- hosts 9 (h900 .. h999)

The proxy namespace keeps the kernel's default sysctls (``igmp_max_memberships``
20: the daemon reads reports through packet sockets and holds no IP membership
per link); only DAD is off and forwarding on, as in the other daemon tests.
Links are built with ``ip -batch`` (``packet_io_fixtures.make_links``): ten
host namespaces of a hundred links each. The daemon runs as a real process on
the nftables plane. On every link the host's kernel joins one IPv4 group
(IGMPv3) and one IPv6 group (MLDv2), each with a socket of its own joined on
that link's index (``IP_MULTICAST_ALL`` / ``IPV6_MULTICAST_ALL`` off, so a
socket reads only what arrived on its link). The source sends both groups ten
times a second; every link must have both streams within ``DEADLINE`` of the
joins (the product's target is 10 s), the daemon's peak resident memory must
stay below ``RSS_LIMIT_KB`` and it must exit cleanly within ``STOP_LIMIT`` of
SIGTERM. The measured figures are printed (``pytest -s``).
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
import time
from collections.abc import Callable, Iterator

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.control.client import ControlError
from mcproxy_pmip.dataplane.nftables import NftablesPlane
from mcproxy_pmip.errors import PlaneUnavailable
from netns_fixtures import Netns, address, netns_factory, veth
from packet_io_fixtures import Link, ip_batch, make_links
from tests.netns.proxy_harness import DAEMON, Daemon, wait_for

__all__ = ["netns_factory"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PREFIX = "kl-"
HOST_NAMESPACES = 10
LINKS_PER_HOST = 100
LINKS = HOST_NAMESPACES * LINKS_PER_HOST
PORT = 5103
GROUP = {Family.IPV4: ipaddress.ip_address("239.40.0.1"), Family.IPV6: ipaddress.ip_address("ff3e::40:1")}
SEND_INTERVAL = 0.1
DEADLINE = 60.0
STOP_LIMIT = 30.0
RSS_LIMIT_KB = 150 * 1024
IP_MULTICAST_ALL = 49  # <linux/in.h>; missing from Python's socket module
IPV6_MULTICAST_ALL = 29  # <linux/in6.h>


def link_net(index: int) -> ipaddress.IPv4Network:
    """The /30 of link ``index``: the proxy has .1, the host .2."""
    return ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.64.0.0")) + 4 * index, 30))


def config_text() -> str:
    downstreams = " ".join(f"d{index}" for index in range(LINKS))
    return f"protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> {downstreams};\n"


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_span(log: str, event: str) -> tuple[int, str, str]:
    """How many lines of the daemon's log carry ``event``, and the time stamps of the first and last."""
    stamps = [line.split()[0] for line in log.splitlines() if f": {event} " in line]
    return len(stamps), (stamps[0] if stamps else "-"), (stamps[-1] if stamps else "-")


@pytest.fixture
def topology(netns_factory: Callable[..., Netns]) -> Iterator[tuple[Netns, Netns, list[Link], float]]:
    """(source namespace, proxy namespace, the 1,000 links, seconds the setup took)."""
    start = time.monotonic()
    up, px = netns_factory(PREFIX), netns_factory(PREFIX)
    hosts = [netns_factory(PREFIX) for _ in range(HOST_NAMESPACES)]
    veth(up, "u0", px, "up0")
    address(up, "u0", "10.1.0.1/24", "fd01::1/64")
    address(px, "up0", "10.1.0.2/24", "fd01::2/64")
    up.ip("route", "add", "default", "via", "10.1.0.2")
    up.ip("-6", "route", "add", "default", "via", "fd01::2")
    px.sysctl("net.ipv4.ip_forward", 1)
    px.sysctl("net.ipv6.conf.all.forwarding", 1)
    links = make_links(px, hosts, LINKS_PER_HOST, wait_ipv6=False)
    ip_batch(px, "".join(f"address add {link_net(i)[1]}/30 dev {link.proxy_if}\n" for i, link in enumerate(links)))
    for host in hosts:
        ip_batch(host, "".join(f"address add {link_net(i)[2]}/30 dev {link.host_if}\n"
                               for i, link in enumerate(links) if link.host is host))
    wait_link_locals(px, ["up0", *(link.proxy_if for link in links)])
    wait_link_locals(up, ["u0"])
    for host in hosts:
        wait_link_locals(host, [link.host_if for link in links if link.host is host])
    yield up, px, links, time.monotonic() - start


def wait_link_locals(ns: Netns, names: list[str], timeout: float = 30.0) -> None:
    """Every one of ``names`` has its link-local address (carrier up, IPv6 configured); bounded."""
    def ready() -> bool:
        have = {line.split()[1] for line in ns.ip("-o", "-6", "address", "show", "scope", "link").splitlines()}
        return set(names) <= have
    wait_for(ready, timeout, f"link-local addresses on {len(names)} links in {ns.name}", interval=0.05)


def start_daemon(px: Netns, tmp: str) -> Daemon:
    conf, control, log_path = (os.path.join(tmp, name) for name in ("px.conf", "px.sock", "px.log"))
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(config_text())
    with open(log_path, "w", encoding="utf-8") as log_file:
        process = px.popen([*DAEMON, "-f", conf, "-d", "--control", control, "--data-plane", "nftables"],
                           stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    daemon = Daemon(px, process, control, log_path)

    def answering():
        if process.poll() is not None:
            raise AssertionError(f"daemon exited {process.returncode}:\n{daemon.log()[-3000:]}")
        with contextlib.suppress(OSError, ControlError):
            return daemon.request("status")
        return None
    wait_for(answering, 60, "the daemon's control socket (it opens once every link is attached)", interval=0.05)
    return daemon


def member(link: Link, family: Family) -> socket.socket:
    """A socket in the link's host namespace joined to ``GROUP[family]`` on the link, reading only that link."""
    group = GROUP[family]
    with link.host.entered():
        sock = socket.socket(socket.AF_INET if family is Family.IPV4 else socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        if family is Family.IPV4:
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            sock.bind((str(group), PORT))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            struct.pack("=4s4si", group.packed, bytes(4), link.host_ifindex))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
            sock.bind((str(group), PORT, 0, 0))
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            struct.pack("=16si", group.packed, link.host_ifindex))
    except OSError:
        sock.close()
        raise
    return sock


def sources(up: Netns) -> dict[Family, socket.socket]:
    """One UDP socket per family in the source namespace, sending out of u0 with TTL / hop limit 8."""
    with up.entered():
        ifindex = socket.if_nametoindex("u0")
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
    v4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("=4s4si", bytes(4), bytes(4), ifindex))
    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    return {Family.IPV4: v4, Family.IPV6: v6}


def stream_until_received(senders: dict[Family, socket.socket], members: dict[int, tuple[int, Family]],
                          sockets: dict[int, socket.socket], since: float,
                          timeout: float) -> dict[tuple[int, Family], float]:
    """Send both groups every ``SEND_INTERVAL`` until every member socket read a datagram.

    Returns (link index, family) -> seconds from ``since`` to its first datagram;
    fails naming the links without one after ``timeout``.
    """
    poller = select.epoll()
    for fd in members:
        poller.register(fd, select.EPOLLIN)
    arrived: dict[tuple[int, Family], float] = {}
    deadline = since + timeout
    next_send = time.monotonic()
    sequence = 0
    try:
        while len(arrived) < len(members):
            now = time.monotonic()
            if now >= next_send:
                payload = sequence.to_bytes(4, "big")
                for family, sender in senders.items():
                    sender.sendto(payload, (str(GROUP[family]), PORT))
                sequence += 1
                next_send = now + SEND_INTERVAL
            if now > deadline:
                missing = sorted(set(members.values()) - set(arrived))
                raise AssertionError(f"{len(missing)} of {len(members)} (link, family) pairs had no data "
                                     f"{timeout}s after the joins, e.g. {missing[:10]}")
            for fd, _ in poller.poll(max(0.0, min(next_send, deadline) - time.monotonic())):
                with contextlib.suppress(BlockingIOError):
                    sockets[fd].recv(64)
                    arrived[members[fd]] = time.monotonic() - since
                    poller.unregister(fd)
    finally:
        poller.close()
    return arrived


def nftables_missing(ns: Netns) -> str | None:
    """Why the nftables plane cannot run in ``ns`` (its start names the kernel option), None if it can.

    The plane starts and closes exactly as the daemon's would, under a table name of its own.
    """
    with ns.entered():
        plane = NftablesPlane(table_name="kl_probe")
        try:
            plane.start(())
        except PlaneUnavailable as exc:
            return str(exc)
        plane.close()
    return None


def stop(daemon: Daemon, timeout: float) -> tuple[int, float]:
    """SIGTERM the daemon; (exit status, seconds it took). Killed, and the test failed, after ``timeout``."""
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    try:
        code = daemon.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait(timeout=5)
        raise AssertionError(f"the daemon took more than {timeout}s to stop after SIGTERM; log:\n"
                             f"{daemon.log()[-3000:]}") from None
    return code, time.monotonic() - started


def test_thousand_downstreams_get_both_streams(topology, tmp_path) -> None:
    up, px, links, setup_seconds = topology
    assert px.read_sysctl("net.ipv4.igmp_max_memberships") == "20", "the kernel's default, left alone"
    missing = nftables_missing(px)
    if missing is not None:
        pytest.skip(missing)

    started = time.monotonic()
    daemon = start_daemon(px, str(tmp_path))
    start_seconds = time.monotonic() - started
    pid = daemon.process.pid
    sockets: dict[int, socket.socket] = {}
    stopped = False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            assert b"mcproxy_pmip" in handle.read(), "the pid is the daemon's own (ip netns exec execs it)"
        idle = status_kb(pid)

        joins_start = time.monotonic()
        members: dict[int, tuple[int, Family]] = {}
        for index, link in enumerate(links):
            for family in Family:
                sock = member(link, family)
                sockets[sock.fileno()] = sock
                members[sock.fileno()] = (index, family)
        joins_seconds = time.monotonic() - joins_start
        senders = sources(up)
        try:
            arrived = stream_until_received(senders, members, sockets, joins_start, DEADLINE)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; daemon {status_kb(pid)} kB, {cpu_seconds(pid):.1f} s CPU") from None
        finally:
            for sender in senders.values():
                sender.close()
        memory, cpu = status_kb(pid), cpu_seconds(pid)
        counters = daemon.request("status")["counters"]
        worst = {family: max(t for (_, f), t in arrived.items() if f is family) for family in Family}
        median = {family: sorted(t for (_, f), t in arrived.items() if f is family)[LINKS // 2] for family in Family}
        attached = log_span(daemon.log(), "interface_attached")
        print(f"\nthousand_links setup={setup_seconds:.1f}s daemon_start={start_seconds:.1f}s "
              f"(interface_attached x{attached[0]} from {attached[1]} to {attached[2]}) joins={joins_seconds:.2f}s")
        for family in Family:
            print(f"thousand_links {family.name} every_link={worst[family]:.2f}s median={median[family]:.2f}s "
                  "after the joins started")
        print(f"thousand_links daemon VmRSS idle={idle['VmRSS']}kB after={memory['VmRSS']}kB "
              f"VmHWM={memory['VmHWM']}kB cpu={cpu:.1f}s counters: "
              + " ".join(f"{k}={v}" for k, v in counters.items()
                         if k.startswith(("nft_", "igmp_socket", "mld_socket"))))

        stopped = True
        exit_code, stop_seconds = stop(daemon, STOP_LIMIT)
        print(f"thousand_links daemon stop={stop_seconds:.1f}s exit={exit_code}")
    finally:
        for sock in sockets.values():
            sock.close()
        if not stopped:
            daemon.stop()

    assert exit_code == 0, f"the daemon's exit status after SIGTERM:\n{daemon.log()[-3000:]}"
    assert attached[0] == LINKS + 1, f"every link attached once: {attached}"
    assert max(worst.values()) < DEADLINE
    assert memory["VmHWM"] < RSS_LIMIT_KB, f"daemon peak RSS {memory['VmHWM']} kB"
