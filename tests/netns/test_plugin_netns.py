"""The pmipv6 plugin in a real daemon: binding events drive downstreams (docs/scenarios.md items 18-20).

    up (LMA side, source) --u0/up0-- [ px: mcproxy-pmip --plugin pmipv6 ] --d1/e0-- h1 (MN)
                                                                          --d2/e0-- h2 (MN)

The daemon starts from a configuration with only ``protocol`` lines; the
plugin creates the instance for tunnel ``up0`` on the first attach. Frames
are timed by the kernel (SO_TIMESTAMPNS) so the printed delays do not depend
on when the test reads them; no assertion is timed.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.control.client import ControlError
from mcproxy_pmip.wire import rfc7411
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.netns.planes import PLANES, nft_text
from tests.netns.netns_fixtures import Netns, netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import (ETH_P_ALL, UP_SOURCE, Daemon, ProxyTopology,
                                       build_proxy_topology, parse_frame, send_until, wait_for)

pytestmark = pytest.mark.netns

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\n"
GROUP = {Family.IPV4: "239.1.1.1", Family.IPV6: "ff3e::8000:1"}
INSTANCE = "pmip-up0"
SO_TIMESTAMPNS = 35
CTL = [sys.executable, "-m", "mcproxy_pmip.control.ctl"]


class TimedCapture:
    """Incoming frames on one interface with their kernel receive time (epoch seconds)."""

    def __init__(self, ns: Netns, interface: str) -> None:
        with ns.entered():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((interface, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.frames: list[tuple] = []

    def drain(self) -> list[tuple]:
        """(at, family, proto, src, dst, payload) of every frame received so far."""
        while True:
            try:
                frame, ancillary, _flags, meta = self.sock.recvmsg(65535, 64)
            except BlockingIOError:
                return self.frames
            if meta[2] == socket.PACKET_OUTGOING:
                continue
            stamps = [data for level, kind, data in ancillary
                      if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS]
            assert stamps, "the kernel gave no receive timestamp"
            seconds, nanoseconds = struct.unpack("@qq", stamps[0][:16])
            parsed = parse_frame(frame)
            if parsed is not None:
                self.frames.append((seconds + nanoseconds / 1e9, *parsed))

    def close(self) -> None:
        self.sock.close()


def general_queries(frames: list[tuple], family: Family) -> list[tuple]:
    """IGMP (type 0x11) / MLD (type 130) queries with group 0 (General Queries)."""
    found = []
    for frame in frames:
        _, fam, proto, _, _, payload = frame
        if fam is not family:
            continue
        if family is Family.IPV4 and proto == 2 and payload[:1] == b"\x11" and payload[4:8] == bytes(4):
            found.append(frame)
        if family is Family.IPV6 and proto == 58 and payload[:1] == b"\x82" and payload[8:24] == bytes(16):
            found.append(frame)
    return found


def report_records(frames: list[tuple], family: Family, src=None) -> list[tuple[float, int, str]]:
    """(at, record type, group) of every IGMPv3 / MLDv2 report record in ``frames``."""
    found = []
    size = 4 if family is Family.IPV4 else 16
    for at, fam, proto, source, _, payload in frames:
        if fam is not family or (src is not None and source != src):
            continue
        if not ((family is Family.IPV4 and proto == 2 and payload[:1] == b"\x22")
                or (family is Family.IPV6 and proto == 58 and payload[:1] == b"\x8f")):
            continue
        count, offset = struct.unpack_from("!H", payload, 6)[0], 8
        for _ in range(count):
            kind, aux, sources = struct.unpack_from("!BBH", payload, offset)
            group = ipaddress.ip_address(payload[offset + 4:offset + 4 + size])
            found.append((at, kind, str(group)))
            offset += 4 + size + sources * size + aux * 4
    return found


@pytest.fixture(params=PLANES)
def plugin_topology(netns_factory, tmp_path, request) -> Iterator[tuple[ProxyTopology, Daemon]]:  # noqa: F811
    for topology in build_proxy_topology(netns_factory, str(tmp_path), "mpg-", request.param):
        daemon = topology.start_daemon(CONFIG, "--plugin", "pmipv6")
        yield topology, daemon


def attach(daemon: Daemon, mn_id: str, access_if: str, **extra):
    return daemon.request("binding", event="attach", mn_id=mn_id, access_if=access_if,
                          tunnel_if="up0", **extra)


def error_code(daemon: Daemon, cmd: str, **args) -> str:
    with pytest.raises(ControlError) as info:
        daemon.request(cmd, **args)
    return info.value.code


def test_attach_creates_instance_and_queries_access_link(plugin_topology) -> None:
    topo, daemon = plugin_topology
    assert daemon.request("instances") == [], "the configuration holds only protocol lines"
    capture = TimedCapture(topo.hosts[0], "e0")
    reply = attach(daemon, "mn1", "d1", lifetime=60)
    replied_at = time.time()
    assert (reply["instance"], reply["changed"], reply["access_if"]) == (INSTANCE, True, "d1")
    for family in (Family.IPV4, Family.IPV6):
        query = wait_for(lambda f=family: general_queries(capture.drain(), f), 3,
                         f"the {family.protocol} General Query on d1")[0]
        print(f"\n{family.protocol}: attach reply -> General Query on the wire: "
              f"{(query[0] - replied_at) * 1000:+.2f} ms (negative: it left before the reply)")
    rows = daemon.request("instances")
    assert [(r["name"], r["upstreams"], r["downstreams"]) for r in rows] == [(INSTANCE, ["up0"], ["d1"])]
    assert [b["mn_id"] for b in daemon.request("bindings")] == ["mn1"]
    again = attach(daemon, "mn1", "d1", lifetime=60)
    assert again["changed"] is False, "a repeated attach changes nothing"
    capture.close()


def test_context_attach_joins_upstream_before_the_silent_mn(plugin_topology) -> None:
    topo, daemon = plugin_topology
    upstream = TimedCapture(topo.up, "u0")
    access = TimedCapture(topo.px, "d1")  # what h1 (which joined nothing) sends
    source = {f: str(UP_SOURCE[f]) for f in Family}
    context = []
    for family, record in ((Family.IPV4, GroupRecord(RecordType.MODE_IS_EXCLUDE,
                                                     ipaddress.ip_address(GROUP[Family.IPV4]), ())),
                           (Family.IPV6, GroupRecord(RecordType.MODE_IS_INCLUDE,
                                                     ipaddress.ip_address(GROUP[Family.IPV6]),
                                                     (UP_SOURCE[Family.IPV6],)))):
        code, payload = rfc7411.encode_context(family, 3 if family is Family.IPV4 else 2, [record])
        context.append({"family": family.name.lower(), "code": code, "payload": payload.hex()})
    sent_at = time.time()
    reply = attach(daemon, "mn1", "d1", context=context)
    assert reply["context_records"] == 2
    for family in (Family.IPV4, Family.IPV6):
        joins = wait_for(lambda f=family: [r for r in report_records(upstream.drain(), f)
                                           if r[2] == GROUP[f] and r[1] in (4, 5)], 3,
                         f"the proxy's {family.protocol} join of {GROUP[family]} upstream")
        print(f"\n{family.protocol}: attach request -> upstream report: "
              f"{(joins[0][0] - sent_at) * 1000:.2f} ms")
        from_mn = [r for r in report_records(access.drain(), family) if r[2] == GROUP[family]]
        assert from_mn == [], f"the MN reported {GROUP[family]}, so the test proves nothing"
    for family in (Family.IPV4, Family.IPV6):  # the transferred state forwards data at once
        sender = topo.sender(family)

        def forwarded(f=family, s=sender):
            s.sendto(b"data", (GROUP[f], 5101))
            return [r for r in daemon.request("routes")
                    if r["group"] == GROUP[f] and r["source"] == source[f] and r["oifs"] == ["d1"]]
        wait_for(forwarded, 3, f"an MFC entry for {GROUP[family]} with output d1", interval=0.02)
        sender.close()
    exported = daemon.request("context-export", mn_id="mn1")["context"]
    assert sorted(e["code"] for e in exported) == [rfc7411.IGMPV3_PAYLOAD, rfc7411.MLDV2_PAYLOAD]
    upstream.close()
    access.close()


def kernel_forwarding(topo: ProxyTopology, table: str) -> str:
    """The kernel's IPv4 forwarding state on the topology's plane: the MRT table, or our nft table."""
    if topo.data_plane == "nftables":
        return nft_text(topo.px, "list table ip mcproxy_pmip")
    return topo.px.ip("mroute", "show", "table", table)


def test_detach_removes_vif_and_outputs_and_leaves_upstream(plugin_topology) -> None:
    topo, daemon = plugin_topology
    family, group = Family.IPV4, GROUP[Family.IPV4]
    attach(daemon, "mn1", "d1")
    attach(daemon, "mn2", "d2")
    receiver = topo.join(topo.hosts[0], family, group)
    send_until(topo.sender(family), group, receiver, 5, "data at mn1 through d1")
    assert "d1" in daemon.request("routes")[0]["oifs"]
    table = str(daemon.request("instances")[0]["table"])
    assert "d1" in kernel_forwarding(topo, table), "the kernel entry lacks d1"
    upstream = TimedCapture(topo.up, "u0")
    reply = daemon.request("binding", event="detach", mn_id="mn1")
    assert (reply["removed_downstream"], reply["removed_instance"]) == (True, False)
    assert [r["downstreams"] for r in daemon.request("instances")] == [["d2"]]
    routes = daemon.request("routes")
    assert routes and all("d1" not in r["oifs"] for r in routes), routes
    kernel = kernel_forwarding(topo, table)
    assert "up0" in kernel and "d1" not in kernel, f"kernel table {table}:\n{kernel}"
    leave = wait_for(lambda: [r for r in report_records(upstream.drain(), family)
                              if r[2] == group and r[1] == 3], 3,
                     f"the upstream TO_IN({{}}) for {group} after the detach")
    print(f"\ndetach -> upstream leave of {group}: {len(leave)} record(s)")
    last = daemon.request("binding", event="detach", mn_id="mn2")
    assert last["removed_instance"] is True
    assert daemon.request("instances") == []
    receiver.close()
    upstream.close()


def test_errors_leave_state_unchanged(plugin_topology) -> None:
    _topo, daemon = plugin_topology
    assert error_code(daemon, "binding", event="detach", mn_id="nobody") == "unknown-mn"
    assert error_code(daemon, "binding", event="refresh", mn_id="nobody", lifetime=5) == "unknown-mn"
    assert error_code(daemon, "context-export", mn_id="nobody") == "unknown-mn"
    assert error_code(daemon, "binding", event="attach", mn_id="mn1", access_if="d1") == "bad-argument"
    assert error_code(daemon, "binding", event="jump", mn_id="mn1") == "bad-argument"
    assert error_code(daemon, "binding", event="attach", mn_id="mn1", access_if="d1",
                      tunnel_if="up0", surprise=1) == "bad-argument"
    assert error_code(daemon, "binding", event="attach", mn_id="mn1", access_if="d1", tunnel_if="up0",
                      context=[{"family": "ipv4", "code": 1, "payload": "zz"}]) == "bad-argument"
    assert error_code(daemon, "binding", event="attach", mn_id="mn1", access_if="d1", tunnel_if="up0",
                      context=[{"family": "ipv4", "code": 9, "payload": "00000000"}]) == "bad-context"
    assert error_code(daemon, "binding", event="attach", mn_id="mn1", access_if="d1", tunnel_if="up0",
                      context=[{"family": "ipv6", "code": 1, "payload": "00000000"}]) == "bad-context"
    assert daemon.request("bindings") == [] and daemon.request("instances") == []


def test_ctl_drives_the_plugin(plugin_topology) -> None:
    _topo, daemon = plugin_topology

    def ctl(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CTL, "--socket", daemon.control, *argv], capture_output=True,
                              text=True, timeout=20, cwd=Path(__file__).parents[2])

    done = ctl("binding", "attach", "--mn-id", "mn1", "--access-if", "d1", "--tunnel-if", "up0",
               "--hnp", "2001:db8:1::/64", "--lifetime", "60")
    assert done.returncode == 0, done.stderr
    listed = ctl("--json", "bindings")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["mn_id"], r["access_if"], r["instance"], r["hnp"]) for r in rows] == [
        ("mn1", "d1", INSTANCE, ["2001:db8:1::/64"])]
    refused = ctl("binding", "detach", "--mn-id", "nobody")
    assert refused.returncode == 1 and "unknown-mn" in refused.stderr, refused
    gone = ctl("binding", "detach", "--mn-id", "mn1")
    assert gone.returncode == 0 and "removed_instance" in gone.stdout, gone
    assert daemon.request("instances") == []
