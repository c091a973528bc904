"""The netns testbed itself: build/teardown, the RFC 2473 tunnel, the radio handover."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcproxy_pmip_testbed import nsutil
from mcproxy_pmip_testbed.build import Testbed
from mcproxy_pmip_testbed.driver import HandoverDriver
from mcproxy_pmip_testbed.plan import make_plan
from mcproxy_pmip_testbed.receiver import JoinSpec, open_joined
from mcproxy_pmip_testbed.scenario import Handover, default_scenario

pytestmark = pytest.mark.netns
ETH_P_ALL = 0x0003


@pytest.fixture
def testbed(tmp_path: Path) -> Iterator[Testbed]:
    plan = make_plan(default_scenario().topology)
    bed = Testbed(plan, tmp_path)
    try:
        bed.build()
        yield bed
    finally:
        bed.teardown()


def _sniffer(ns: str, ifname: str) -> socket.socket:
    with nsutil.inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((ifname, 0))
    sock.settimeout(0.2)
    return sock


def _await_encapsulated(sniffer: socket.socket, next_header: int, inner_dst: str,
                        interval: float = 3.0, outer_src: bytes | None = None) -> bytes:
    """The first frame carrying IPv6 with ``next_header`` whose inner packet goes to inner_dst
    (and whose outer source is ``outer_src``, when given: the sniffer sees both directions)."""
    deadline_at = time.monotonic() + interval
    while time.monotonic() < deadline_at:
        try:
            frame = sniffer.recv(4096)
        except TimeoutError:
            continue
        if frame[12:14] != b"\x86\xdd" or frame[14 + 6] != next_header:
            continue
        if outer_src is not None and frame[14 + 8:14 + 24] != outer_src:
            continue
        inner = frame[14 + 40:]
        if next_header == 41 and str(ipaddress.IPv6Address(inner[24:40])) == inner_dst:
            return frame
        if next_header == 4 and str(ipaddress.IPv4Address(inner[16:20])) == inner_dst:
            return frame
    raise AssertionError(f"no frame with next header {next_header} to {inner_dst} "
                         f"on the underlay within {interval}s")


def _receive_payload(sock: socket.socket, expected: bytes, send, interval: float = 3.0) -> None:
    deadline_at = time.monotonic() + interval
    while time.monotonic() < deadline_at:
        send()
        with contextlib.suppress(BlockingIOError):
            time.sleep(0.05)
            if sock.recv(2048) == expected:
                return
    raise AssertionError(f"multicast {expected!r} not received through the tunnel in {interval}s")


def test_build_and_teardown_leave_nothing(tmp_path: Path) -> None:
    plan = make_plan(default_scenario().topology)
    with Testbed(plan, tmp_path) as bed:
        assert set(plan.namespaces) <= set(nsutil.list_namespaces(f"mptb{plan.run_id}"))
        assert bed.tunnel_kind == "tun-relay"
        pids = [p.pid for p in bed.processes.running.values()]
        assert len(pids) == 3  # one relay per LMA and per MAG namespace
        in_lma = nsutil.namespace_pids(plan.ns("lma1"))
        assert in_lma, "the LMA relay runs inside the LMA namespace"
    assert nsutil.list_namespaces(f"mptb{plan.run_id}") == []
    for pid in pids + in_lma:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    leaked = {name for _, name in socket.if_nameindex()} & {"tun1", "t1", "t2"}
    assert not leaked, f"TUN devices leaked into the root namespace: {leaked}"


def test_tunnel_carries_multicast_both_ways_encapsulated(testbed: Testbed) -> None:
    plan = testbed.plan
    tunnel = plan.tunnel("lma1", "mag1")
    with contextlib.ExitStack() as closing:
        sniffer = closing.enter_context(_sniffer(plan.ns("lma1"), tunnel.lma_underlay_if))
        with nsutil.inside(plan.ns("mag1")):
            mag_v6 = closing.enter_context(open_joined(
                JoinSpec(0, ipaddress.ip_address("ff0e::1234"), 7001), tunnel.mag_tunnel_if))
            mag_v4 = closing.enter_context(open_joined(
                JoinSpec(1, ipaddress.ip_address("239.9.9.9"), 7002), tunnel.mag_tunnel_if))
        # the joins make the MAG's host stack report through the tunnel (MAG -> LMA)
        # (the LMA's own host stack reports on its tunnel end too: only the MAG's count here)
        _await_encapsulated(sniffer, 41, "ff02::16", outer_src=tunnel.mag_underlay.ip.packed)
        _await_encapsulated(sniffer, 4, "224.0.0.22", outer_src=tunnel.mag_underlay.ip.packed)
        with nsutil.inside(plan.ns("lma1")):
            lma_v6 = closing.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
            lma_v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                              socket.if_nametoindex(tunnel.lma_tunnel_if))
            lma_v4 = closing.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            lma_v4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                              struct.pack("4s4si", bytes(4), bytes(4),
                                          socket.if_nametoindex(tunnel.lma_tunnel_if)))
        # data LMA -> MAG, each family with its own Next Header on the underlay
        _receive_payload(mag_v6, b"six", lambda: lma_v6.sendto(b"six", ("ff0e::1234", 7001)))
        _await_encapsulated(sniffer, 41, "ff0e::1234")
        _receive_payload(mag_v4, b"four", lambda: lma_v4.sendto(b"four", ("239.9.9.9", 7002)))
        _await_encapsulated(sniffer, 4, "239.9.9.9")


def _link(bed: Testbed, node: str, ifname: str) -> dict:
    ipr = bed.ipr[bed.plan.ns(node)]
    return ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]


def _lma_route_oif(bed: Testbed) -> int:
    ipr = bed.ipr[bed.plan.ns("lma1")]
    routes = ipr.route("get", dst=str(bed.plan.mn("mn1").home_v6.ip), family=socket.AF_INET6)
    return routes[0].get_attr("RTA_OIF")


@pytest.mark.parametrize("mn_sees_link_change", [False, True])
def test_driver_moves_the_radio_link(tmp_path: Path, mn_sees_link_change: bool) -> None:
    plan = make_plan(default_scenario().topology)
    with Testbed(plan, tmp_path, mn_sees_link_change=mn_sees_link_change) as bed:
        assert bed.radio_port_up("mn1", "mag1") and not bed.radio_port_up("mn1", "mag2")
        assert _link(bed, "mag1", "a1").get_attr("IFLA_CARRIER") == 1
        assert _link(bed, "mag2", "a1").get_attr("IFLA_CARRIER") == 0
        changes_before = _link(bed, "mn1", "wlan0").get_attr("IFLA_CARRIER_CHANGES")
        t2 = bed.ipr[plan.ns("lma1")].link_lookup(ifname="t2")[0]
        assert _lma_route_oif(bed) != t2
        driver = HandoverDriver(bed, "static", {}, lifetime=3600)
        record = driver.handover(Handover(at=0.0, mn="mn1", to="mag2", l2_outage_interval=0.03))
        assert record.attach_at - record.detach_at >= 0.03
        assert (record.from_mag, record.to_mag) == ("mag1", "mag2")
        assert not bed.radio_port_up("mn1", "mag1") and bed.radio_port_up("mn1", "mag2")
        deadline_at = time.monotonic() + 2.0
        while _link(bed, "mag2", "a1").get_attr("IFLA_CARRIER") != 1:
            assert time.monotonic() < deadline_at, "new MAG's access link never got carrier"
            time.sleep(0.01)
        assert _link(bed, "mag1", "a1").get_attr("IFLA_CARRIER") == 0
        assert _lma_route_oif(bed) == t2
        changes_after = _link(bed, "mn1", "wlan0").get_attr("IFLA_CARRIER_CHANGES")
        if mn_sees_link_change:
            assert changes_after > changes_before
        else:
            assert changes_after == changes_before, "the MN saw carrier loss"
