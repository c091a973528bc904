"""The nftables data plane in a router namespace, with real kernel hosts, IPv4 and IPv6.

    source ns (S1, S2) --veth-- [up0  router ns  down0] --veth-- h1 ns
                                [           down1] --veth-- h2 ns

The plane runs in-process in the router namespace, driven by a stub
``ForwardingView``; hosts join groups any-source (``IP_ADD_MEMBERSHIP`` /
``IPV6_JOIN_GROUP``) so that what they receive is what the router forwarded.
A packet that must NOT arrive is sent first, then a marker on the same path
that must: when the marker is read, the other would have been read before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import select
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane.nftables import NftablesPlane
from mcproxy_pmip.dataplane.port import ANY_SOURCE, GroupOutputs, PlaneUnavailable, Role, SourceFilter
from mcproxy_pmip.errors import KernelError, McproxyError
from mcproxy_pmip.kernel.nft import LIBRARY
from mcproxy_pmip.wire.records import FilterMode
from tests.netns.planes import nft_text
from tests.netns.netns_fixtures import Netns, address, netns_factory, veth  # noqa: F401 (fixture)


def _library_missing() -> bool:
    try:
        ctypes.CDLL(LIBRARY)
    except OSError:
        return True
    return False


pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(_library_missing(), reason=f"needs {LIBRARY} (Debian package libnftables1; "
                                                            "scripts/bootstrap.sh installs it)")]

PREFIX = "nft-"
PORT = 5002
TABLE = "mcproxy_pmip"
WAIT = 2.0
V4, V6 = Family.IPV4, Family.IPV6
FAMILIES = pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
S1 = {V4: ipaddress.ip_address("10.1.0.2"), V6: ipaddress.ip_address("fd01::2")}
S2 = {V4: ipaddress.ip_address("10.1.0.3"), V6: ipaddress.ip_address("fd01::3")}
H1 = {V4: ipaddress.ip_address("10.2.0.2"), V6: ipaddress.ip_address("fd02::2")}
G = {V4: ipaddress.ip_address("239.1.1.1"), V6: ipaddress.ip_address("ff0e::101")}
G2 = {V4: ipaddress.ip_address("239.1.1.2"), V6: ipaddress.ip_address("ff0e::102")}
LINK_LOCAL = {V4: ipaddress.ip_address("224.0.0.99"), V6: ipaddress.ip_address("ff02::99")}


class StubView:
    """A ``ForwardingView`` whose decisions the test sets."""

    def __init__(self, upstreams: tuple[str, ...]) -> None:
        self.decisions: dict[tuple[Family, IPAddress], GroupOutputs] = {}
        self.upstreams = upstreams

    def group_outputs(self, family: Family, group: IPAddress) -> GroupOutputs:
        return self.decisions.get((family, group), GroupOutputs(family, group))

    def default_upstreams(self, family: Family) -> tuple[str, ...]:
        return self.upstreams

    def outputs(self, family: Family, source: IPAddress, group: IPAddress, iif: str) -> frozenset[str]:
        decision = self.group_outputs(family, group)
        names = {name for name, f in decision.downstreams if name != iif and f.passes(source)}
        if iif not in decision.upstreams:
            names.update(decision.upstreams)
        return frozenset(names - {iif})


def ifindex(ns: Netns, name: str) -> int:
    with ns.entered():
        return socket.if_nametoindex(name)


def receiver(ns: Netns, family: Family, group: IPAddress, interface: str = "eth0") -> socket.socket:
    """A UDP socket in ``ns`` joined any-source to ``group`` on ``interface``."""
    with ns.entered():
        index = socket.if_nametoindex(interface)
        if family is V4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(group), PORT))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            group.packed + bytes(4) + struct.pack("@i", index))
        else:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(group), PORT, 0, index))
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group.packed + struct.pack("@I", index))
    return sock


def sender(ns: Netns, source: IPAddress, interface: str = "eth0") -> socket.socket:
    """A UDP socket in ``ns`` sending multicast from ``source`` out of ``interface``, no loopback."""
    with ns.entered():
        index = socket.if_nametoindex(interface)
        if source.version == 4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((str(source), 0))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, bytes(8) + struct.pack("@i", index))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        else:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.bind((str(source), 0))
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    return sock


def send(sock: socket.socket, group: IPAddress, payload: bytes, ttl: int = 5) -> None:
    if group.version == 4:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
    sock.sendto(payload, (str(group), PORT))


def read_until(sock: socket.socket, marker: bytes, timeout: float = WAIT) -> list[bytes]:
    """Payloads read up to and including ``marker``; fails if it does not come within ``timeout``."""
    got: list[bytes] = []
    while marker not in got:
        ready, _, _ = select.select([sock], [], [], timeout)
        assert ready, f"{marker!r} not received within {timeout} s (got {got})"
        got.append(sock.recv(2048))
    return got


def pending(sock: socket.socket) -> list[bytes]:
    """What is already queued on ``sock``, without waiting."""
    got = []
    while select.select([sock], [], [], 0)[0]:
        got.append(sock.recv(2048))
    return got


def start(plane: NftablesPlane, ns: Netns) -> None:
    """Start ``plane`` in ``ns``, or skip naming what the kernel or the machine lacks."""
    with ns.entered():
        try:
            plane.start([])
        except PlaneUnavailable as exc:
            pytest.skip(str(exc))


@dataclass
class Router:
    """The router namespace, its plane and one instance ("myProxy": up0 upstream, down0/down1 downstream)."""

    ns: Netns
    source: Netns
    h1: Netns
    h2: Netns
    view: StubView
    plane: NftablesPlane
    instance: object = None
    sockets: list[socket.socket] = field(default_factory=list)

    def want(self, family: Family, group: IPAddress, *downstreams: tuple[str, SourceFilter],
             upstreams: tuple[str, ...] = ("up0",)) -> None:
        self.view.decisions[(family, group)] = GroupOutputs(family, group, tuple(downstreams), upstreams)
        with self.ns.entered():
            self.instance.groups_changed([(family, group)])

    def keep(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        return sock


def build_router(netns_factory) -> Router:  # noqa: F811
    router, source, h1, h2 = (netns_factory(prefix=PREFIX) for _ in range(4))
    veth(source, "eth0", router, "up0")
    veth(router, "down0", h1, "eth0")
    veth(router, "down1", h2, "eth0")
    address(source, "eth0", "10.1.0.2/24", "10.1.0.3/24", "fd01::2/64", "fd01::3/64")
    address(router, "up0", "10.1.0.1/24", "fd01::1/64")
    address(router, "down0", "10.2.0.1/24", "fd02::1/64")
    address(router, "down1", "10.3.0.1/24", "fd03::1/64")
    address(h1, "eth0", "10.2.0.2/24", "fd02::2/64")
    address(h2, "eth0", "10.3.0.2/24", "fd03::2/64")
    # so that an echo of the source's own data (sent back upstream) would be seen, not dropped as martian
    source.sysctl("net.ipv4.conf.eth0.accept_local", 1)
    return Router(router, source, h1, h2, StubView(("up0",)), NftablesPlane(TABLE))


def open_instance(r: Router) -> None:
    with r.ns.entered():
        r.instance = r.plane.open_instance("myProxy", frozenset(Family), None, r.view)
        r.instance.add_interface("up0", socket.if_nametoindex("up0"), Role.UPSTREAM)
        for name in ("down0", "down1"):
            r.instance.add_interface(name, socket.if_nametoindex(name), Role.DOWNSTREAM)
        r.instance.refresh()  # as the proxy does after an attach: staged downstreams go to the kernel


@contextlib.contextmanager
def started_router(netns_factory, opener: Callable[[Router], None]) -> Iterator[Router]:  # noqa: F811
    """The router with its plane started and ``opener`` run; sockets and plane closed after."""
    r = build_router(netns_factory)
    start(r.plane, r.ns)
    try:
        opener(r)
        yield r
    finally:
        for sock in r.sockets:
            sock.close()
        with r.ns.entered():
            r.plane.close()


@pytest.fixture
def router(netns_factory) -> Iterator[Router]:  # noqa: F811
    with started_router(netns_factory, open_instance) as r:
        yield r


@FAMILIES
def test_any_source_group_goes_to_the_downstream_that_wants_it_only(router, family):
    r = router
    r.want(family, G[family], ("down0", ANY_SOURCE))
    r.want(family, G2[family], ("down1", ANY_SOURCE))
    on_h1, on_h2 = r.keep(receiver(r.h1, family, G[family])), r.keep(receiver(r.h2, family, G[family]))
    marker_h2 = r.keep(receiver(r.h2, family, G2[family]))
    src = r.keep(sender(r.source, S1[family]))
    send(src, G[family], b"data")
    send(src, G2[family], b"marker")
    assert read_until(on_h1, b"data") == [b"data"]
    assert read_until(marker_h2, b"marker") == [b"marker"]
    assert pending(on_h2) == [], "a downstream that did not ask for the group got it"
    echo, marker_up = r.keep(receiver(r.source, family, G[family])), r.keep(receiver(r.source, family, G2[family]))
    send(src, G[family], b"echo?")
    assert read_until(on_h1, b"echo?") == [b"echo?"]
    send(r.keep(sender(r.h1, H1[family])), G2[family], b"marker up")
    assert read_until(marker_up, b"marker up") == [b"marker up"]
    assert pending(echo) == [], "data from the upstream went back upstream"
    with r.ns.entered():
        rows = r.instance.routes()
    group_row = next(row for row in rows if row.group == G[family] and row.source is None)
    assert (group_row.oifs, group_row.packets) == (("down0", "up0"), 2)
    source_row = next(row for row in rows if row.group == G[family] and row.source == S1[family])
    assert source_row.packets == 2 and source_row.octets > 0


@FAMILIES
def test_include_passes_the_listed_source_and_exclude_blocks_it(router, family):
    r = router
    r.want(family, G[family], ("down0", SourceFilter(FilterMode.INCLUDE, frozenset({S1[family]}))),
           ("down1", SourceFilter(FilterMode.EXCLUDE, frozenset({S1[family]}))))
    on_h1, on_h2 = r.keep(receiver(r.h1, family, G[family])), r.keep(receiver(r.h2, family, G[family]))
    from_s1, from_s2 = r.keep(sender(r.source, S1[family])), r.keep(sender(r.source, S2[family]))
    send(from_s2, G[family], b"s2")
    send(from_s1, G[family], b"s1")
    send(from_s2, G[family], b"s2 again")
    assert read_until(on_h1, b"s1") == [b"s1"]
    assert read_until(on_h2, b"s2 again") == [b"s2", b"s2 again"]


@FAMILIES
def test_data_from_a_downstream_reaches_the_upstream_and_other_downstreams_never_its_own(router, family):
    r = router
    r.want(family, G[family], ("down0", ANY_SOURCE), ("down1", ANY_SOURCE))
    on_source, on_h1, on_h2 = (r.keep(receiver(ns, family, G[family])) for ns in (r.source, r.h1, r.h2))
    send(r.keep(sender(r.h1, H1[family])), G[family], b"from h1")
    assert read_until(on_source, b"from h1") == [b"from h1"]
    assert read_until(on_h2, b"from h1") == [b"from h1"]
    send(r.keep(sender(r.source, S1[family])), G[family], b"marker")
    assert read_until(on_h1, b"marker") == [b"marker"], "data went back out of its own downstream"


@FAMILIES
def test_a_group_nobody_wants_sent_on_a_downstream_goes_upstream_only(router, family):
    r = router
    on_source, on_h2 = r.keep(receiver(r.source, family, G2[family])), r.keep(receiver(r.h2, family, G2[family]))
    send(r.keep(sender(r.h1, H1[family])), G2[family], b"unwanted")
    assert read_until(on_source, b"unwanted") == [b"unwanted"]
    assert pending(on_h2) == []


@FAMILIES
def test_ttl_1_and_link_local_scope_data_are_not_forwarded(router, family):
    r = router
    r.want(family, G[family], ("down0", ANY_SOURCE))
    r.want(family, LINK_LOCAL[family], ("down0", ANY_SOURCE))
    on_group, on_link_local = r.keep(receiver(r.h1, family, G[family])), \
        r.keep(receiver(r.h1, family, LINK_LOCAL[family]))
    src = r.keep(sender(r.source, S1[family]))
    send(src, G[family], b"ttl 1", ttl=1)
    send(src, LINK_LOCAL[family], b"link-local")
    send(src, G[family], b"marker")
    assert read_until(on_group, b"marker") == [b"marker"]
    assert pending(on_link_local) == []


def test_ipv6_link_local_scope_is_skipped_whatever_the_flag_nibble(router):
    r = router
    flagged = ipaddress.ip_address("ff12::99")
    r.want(V6, flagged, ("down0", ANY_SOURCE))
    r.want(V6, G[V6], ("down0", ANY_SOURCE))
    on_flagged, on_group = r.keep(receiver(r.h1, V6, flagged)), r.keep(receiver(r.h1, V6, G[V6]))
    src = r.keep(sender(r.source, S1[V6]))
    send(src, flagged, b"flagged link-local")
    send(src, G[V6], b"marker")
    assert read_until(on_group, b"marker") == [b"marker"]
    assert pending(on_flagged) == []


def test_a_removed_downstream_gets_nothing_and_a_recreated_one_gets_data_again(router):
    r = router
    r.want(V4, G[V4], ("down0", ANY_SOURCE), ("down1", ANY_SOURCE))
    on_h1, on_h2 = r.keep(receiver(r.h1, V4, G[V4])), r.keep(receiver(r.h2, V4, G[V4]))
    src = r.keep(sender(r.source, S1[V4]))
    with r.ns.entered():
        r.instance.remove_interface("down0")
    send(src, G[V4], b"after removal")
    assert read_until(on_h2, b"after removal") == [b"after removal"]
    assert pending(on_h1) == []
    assert '"down0"' not in nft_text(r.ns, f"list table ip {TABLE}")
    r.ns.ip("link", "del", "down1")
    veth(r.ns, "down1", r.h2, "eth0")
    address(r.h2, "eth0", "10.3.0.2/24")
    on_h2.close()
    on_h2 = r.keep(receiver(r.h2, V4, G[V4]))
    with r.ns.entered():
        r.instance.add_interface("down1", socket.if_nametoindex("down1"), Role.DOWNSTREAM)
    send(src, G[V4], b"to the new link")
    assert read_until(on_h2, b"to the new link") == [b"to the new link"]


def test_a_failed_batch_changes_nothing(router):
    r = router
    with r.ns.entered():
        r.instance.add_interface("ghost0", 999, Role.DOWNSTREAM)
        before = r.instance.counters()
    with pytest.raises(KernelError) as caught:
        r.want(V4, G[V4], ("down0", ANY_SOURCE), ("ghost0", ANY_SOURCE))
    assert "ghost0" in str(caught.value)
    listing = nft_text(r.ns, f"list table ip {TABLE}")
    assert "i1_gef010101" not in listing and "239.1.1.1" not in listing
    with r.ns.entered():
        after = r.instance.counters()
    assert after["nft_batches_failed"] == before.get("nft_batches_failed", 0) + 1
    assert after["nft_groups"] == 0


def test_two_instances_with_the_same_group_stay_isolated(netns_factory):  # noqa: F811
    router, src_a, src_b, h_a, h_b = (netns_factory(prefix=PREFIX) for _ in range(5))
    veth(src_a, "eth0", router, "upA")
    veth(src_b, "eth0", router, "upB")
    veth(router, "dA", h_a, "eth0")
    veth(router, "dB", h_b, "eth0")
    for ns, host in ((src_a, "10.1.0.2/24"), (src_b, "10.4.0.2/24"), (h_a, "10.2.0.2/24"), (h_b, "10.5.0.2/24")):
        address(ns, "eth0", host)
    group, plane, sockets = G[V4], NftablesPlane(TABLE), []
    start(plane, router)
    try:
        for name, up, down in (("pmip-tun1", "upA", "dA"), ("pmip-tun2", "upB", "dB")):
            view = StubView((up,))
            view.decisions[(V4, group)] = GroupOutputs(V4, group, ((down, ANY_SOURCE),), (up,))
            with router.entered():
                instance = plane.open_instance(name, frozenset({V4}), None, view)
                instance.add_interface(up, socket.if_nametoindex(up), Role.UPSTREAM)
                instance.add_interface(down, socket.if_nametoindex(down), Role.DOWNSTREAM)
                instance.groups_changed([(V4, group)])
        assert plane.identifiers() == {"pmip-tun1": "i1", "pmip-tun2": "i2"}
        sockets = [receiver(ns, V4, group) for ns in (h_a, h_b, src_a, src_b)]
        on_h_a, on_h_b, on_src_a, on_src_b = sockets
        sockets += [sender(ns, ipaddress.ip_address(a)) for ns, a in
                    ((src_a, "10.1.0.2"), (src_b, "10.4.0.2"), (h_a, "10.2.0.2"), (h_b, "10.5.0.2"))]
        from_src_a, from_src_b, from_h_a, from_h_b = sockets[4:]
        send(from_src_a, group, b"from A")
        send(from_src_b, group, b"from B")
        assert read_until(on_h_a, b"from A") == [b"from A"]
        assert read_until(on_h_b, b"from B") == [b"from B"], "instance A's data leaked into instance B"
        send(from_h_a, group, b"up A")
        send(from_h_b, group, b"up B")
        assert read_until(on_src_a, b"up A") == [b"up A"]
        assert read_until(on_src_b, b"up B") == [b"up B"], "instance A's downstream data reached B's upstream"
        assert pending(on_h_a) == [] and pending(on_h_b) == []
    finally:
        for sock in sockets:
            sock.close()
        with router.entered():
            plane.close()


def test_the_hosts_own_table_survives_start_and_close_and_keeps_counting(netns_factory):  # noqa: F811
    r = build_router(netns_factory)
    nft_text(r.ns, "add table inet hostfw; add chain inet hostfw pre { type filter hook prerouting priority 0; }; "
                   "add rule inet hostfw pre counter")
    start(r.plane, r.ns)
    try:
        open_instance(r)
        r.want(V4, G[V4], ("down0", ANY_SOURCE))
        on_h1 = r.keep(receiver(r.h1, V4, G[V4]))
        send(r.keep(sender(r.source, S1[V4])), G[V4], b"data")
        assert read_until(on_h1, b"data") == [b"data"]
        with r.ns.entered():
            r.instance.close()
    finally:
        for sock in r.sockets:
            sock.close()
        with r.ns.entered():
            r.plane.close()
    listing = nft_text(r.ns, "list ruleset")
    assert "table inet hostfw" in listing and "counter packets 0 bytes 0" not in listing
    assert TABLE not in listing


def test_close_of_an_instance_leaves_only_the_shared_skeleton_and_plane_close_no_table(router):
    r = router
    r.want(V4, G[V4], ("down0", ANY_SOURCE))
    r.want(V6, G[V6], ("down1", ANY_SOURCE))
    with r.ns.entered():
        r.instance.close()
    for family in ("ip", "ip6"):
        listing = nft_text(r.ns, f"list table {family} {TABLE}")
        assert "i1" not in listing and "elements" not in listing and "chain pre" in listing
    with r.ns.entered():
        r.plane.close()
    assert TABLE not in nft_text(r.ns, "list tables")


def test_start_removes_the_table_of_a_killed_run_and_refuses_a_live_owner(netns_factory):  # noqa: F811
    ns = netns_factory(prefix=PREFIX)
    code = ("import time; from mcproxy_pmip.dataplane.nftables import NftablesPlane; "
            f"NftablesPlane({TABLE!r}).start([]); print('ready', flush=True); time.sleep(60)")
    crashed = ns.python(code, stdout=subprocess.PIPE)
    assert crashed.stdout.readline().strip() == "ready"
    assert f'"mcproxy-pmip pid {crashed.pid}"' in nft_text(ns, f"list table ip {TABLE}")
    with ns.entered(), pytest.raises(McproxyError) as caught:
        NftablesPlane(TABLE).start([])
    assert f"running process {crashed.pid}" in str(caught.value)
    crashed.kill()
    crashed.wait(timeout=10)
    nft_text(ns, f"add chain ip {TABLE} stale")
    plane = NftablesPlane(TABLE)
    start(plane, ns)
    try:
        listing = nft_text(ns, f"list table ip {TABLE}")
        assert f'"mcproxy-pmip pid {os.getpid()}"' in listing and "stale" not in listing
    finally:
        with ns.entered():
            plane.close()
    assert TABLE not in nft_text(ns, "list tables")


def test_a_table_of_that_name_without_our_comment_is_not_touched(netns_factory):  # noqa: F811
    ns = netns_factory(prefix=PREFIX)
    nft_text(ns, f"add table ip {TABLE}")
    with ns.entered(), pytest.raises(McproxyError, match="not ours"):
        NftablesPlane(TABLE).start([])
    assert f"table ip {TABLE}" in nft_text(ns, "list tables")
