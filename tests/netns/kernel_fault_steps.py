"""Interface faults played against a running daemon in the proxy topology, timed (tests and bench).

``recreated_downstream`` deletes ``d1`` (the host's ``e0`` goes with it),
creates the pair again and times, from the moment the daemon can see the new
link, the General Query on it and data at the host that joins again.
``upstream_flap`` takes ``up0`` down and up, or deletes and creates it
again, and times the proxy's report for the group on the router's link and
data at the host. ``at_once`` freezes the daemon (SIGSTOP) across the
change, so it reads the removal and the creation in one batch of link events.

Each returns ``Recovery``: seconds per family from the link's return.
"""

from __future__ import annotations

import ipaddress
import signal
import time
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from tests.netns.netns_fixtures import address
from tests.netns.proxy_harness import Capture, send_until, wait_for

GROUP = {Family.IPV4: "239.7.7.1", Family.IPV6: "ff15::771"}
FAMILIES = (Family.IPV4, Family.IPV6)
CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d2;\n"
#: generous bound on one recovery (the daemon's part is well under a second)
RECOVERY_BOUND = 10.0


@dataclass(frozen=True, slots=True)
class Recovery:
    """Seconds from the link's return to the first signal (query or report) and to data, per family."""

    signalled: dict[Family, float]
    data: dict[Family, float]

    def line(self, signal_name: str) -> str:
        return " ".join(f"{f.name} {signal_name}={self.signalled[f]:.3f}s data={self.data[f]:.3f}s"
                        for f in FAMILIES)


def general_query_seen(capture: Capture, family: Family) -> float | None:
    """When the first General Query of ``family`` was read off ``capture`` (monotonic); None: none yet."""
    for seen, fam, proto, _, _, payload in capture.drain():
        if fam is Family.IPV4 is family and proto == 2 and payload[:1] == b"\x11" and payload[4:8] == bytes(4):
            return seen
        if fam is Family.IPV6 is family and proto == 58 and payload[:1] == b"\x82" and payload[8:24] == bytes(16):
            return seen
    return None


def report_names(capture: Capture, family: Family, group: str) -> float | None:
    """When the first report naming ``group`` was read off ``capture`` (monotonic); None: none yet."""
    packed = ipaddress.ip_address(group).packed
    return next((frame[0] for frame in capture.reports(family) if packed in frame[5]), None)


def join_and_receive(topo, host_index: int = 0) -> dict:
    receivers = {}
    for family in FAMILIES:
        receivers[family] = topo.join(topo.hosts[host_index], family, GROUP[family])
        send_until(topo.sender(family), GROUP[family], receivers[family], 5, f"{family.name} data at the host")
    return receivers


def _recreate_downstream(topo) -> tuple[Capture, float]:
    """``d1`` / the host's ``e0`` again; the host side up with a capture on it, then ``d1`` up."""
    host, px = topo.hosts[0], topo.px
    px.ip("link", "add", "d1", "type", "veth", "peer", "name", "e0", "netns", host.name)
    address(px, "d1", "10.2.1.1/24", "fd02:1::1/64")
    address(host, "e0", "10.2.1.2/24", "fd02:1::2/64")
    host.ip("link", "set", "e0", "up")
    capture = Capture(host, "e0")
    started = time.monotonic()
    px.ip("link", "set", "d1", "up")
    host.ip("route", "add", "default", "via", "10.2.1.1")
    host.ip("-6", "route", "add", "default", "via", "fd02:1::1")
    return capture, started


def recreated_downstream(topo, daemon, at_once: bool) -> Recovery:
    """Delete ``d1`` and create it again; the host joins again on it."""
    for sock in join_and_receive(topo).values():
        sock.close()
    if at_once:
        daemon.process.send_signal(signal.SIGSTOP)
    topo.px.ip("link", "del", "d1")
    if not at_once:
        wait_for(lambda: "interface_lost instance=p interface=d1" in daemon.log(), 5, "the removal noticed")
    capture, started = _recreate_downstream(topo)
    if at_once:
        daemon.process.send_signal(signal.SIGCONT)
        started = time.monotonic()
    queried, flowing = {}, {}
    for family in FAMILIES:
        queried[family] = wait_for(lambda f=family: general_query_seen(capture, f), RECOVERY_BOUND,
                                   f"a {family.protocol} General Query on the new d1") - started
    for family in FAMILIES:
        receiver = topo.join(topo.hosts[0], family, GROUP[family])
        send_until(topo.sender(family), GROUP[family], receiver, RECOVERY_BOUND,
                   f"{family.name} data at the host on the new d1")
        flowing[family] = time.monotonic() - started
        receiver.close()
    capture.close()
    return Recovery(queried, flowing)


def _recreate_upstream(topo) -> Capture:
    """``up0`` / ``u0`` again; ``u0`` up with a capture on it, then ``up0`` up."""
    up, px = topo.up, topo.px
    px.ip("link", "add", "up0", "type", "veth", "peer", "name", "u0", "netns", up.name)
    address(up, "u0", "10.1.0.1/24", "fd01::1/64")
    address(px, "up0", "10.1.0.2/24", "fd01::2/64")
    up.ip("link", "set", "u0", "up")
    capture = Capture(up, "u0")
    px.ip("link", "set", "up0", "up")
    up.ip("route", "add", "default", "via", "10.1.0.2")
    up.ip("-6", "route", "add", "default", "via", "fd01::2")
    return capture


UPSTREAM_FLAPS = ("down-up", "delete-recreate", "delete-recreate-at-once")


def upstream_flap(topo, daemon, how: str) -> Recovery:
    """Flap ``up0`` (one of ``UPSTREAM_FLAPS``) while the host is a member; time report and data."""
    receivers = join_and_receive(topo)
    if how == "down-up":
        capture = Capture(topo.up, "u0")
        topo.px.ip("link", "set", "up0", "down")
        wait_for(lambda: "interface_lost instance=p interface=up0" in daemon.log(), 5, "the link loss noticed")
        capture.drain()
        capture.frames.clear()
        started = time.monotonic()
        topo.px.ip("link", "set", "up0", "up")
    elif how == "delete-recreate":
        topo.px.ip("link", "del", "up0")
        wait_for(lambda: "interface_lost instance=p interface=up0" in daemon.log(), 5, "the removal noticed")
        started = time.monotonic()
        capture = _recreate_upstream(topo)
    else:
        daemon.process.send_signal(signal.SIGSTOP)
        topo.px.ip("link", "del", "up0")
        capture = _recreate_upstream(topo)
        daemon.process.send_signal(signal.SIGCONT)
        started = time.monotonic()
    reported, flowing = {}, {}
    for family in FAMILIES:
        send_until(topo.sender(family), GROUP[family], receivers[family], RECOVERY_BOUND,
                   f"{family.name} data after the flap")
        flowing[family] = time.monotonic() - started
    for family in FAMILIES:
        reported[family] = wait_for(lambda f=family: report_names(capture, f, GROUP[f]), RECOVERY_BOUND,
                                    f"the {family.protocol} report for {GROUP[family]} on the returned "
                                    "upstream") - started
    for sock in receivers.values():
        sock.close()
    capture.close()
    return Recovery(reported, flowing)
