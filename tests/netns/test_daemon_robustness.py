"""Bad input on the wire and state limits, against the running daemon (docs/scenarios.md items 1-2).

A host namespace injects whole frames (AF_PACKET) that the kernel delivers to
the daemon's raw sockets: bad checksum, TTL 2, MLD hop limit 2, a global or
``::`` MLD source, a 10-octet IGMP query. Each is dropped with a counter in
``status`` and leaves no group; reports from 0.0.0.0 and from another subnet
are accepted. A small ``max_groups`` caps the state while forwarding goes on.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import (
    PORT,
    Capture,
    build_proxy_topology,
    igmp_frame,
    mld_frame,
    send_frame,
    send_until,
    wait_for,
)

pytestmark = pytest.mark.netns

PREFIX = "mpl-"
QUIET_WINDOW = 0.5
HOST_V4, HOST_LL = "10.2.1.2", "fe80::99"


@pytest.fixture
def topo(netns_factory, tmp_path):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX)


def igmp_report(group: str) -> bytes:
    record = GroupRecord(RecordType.CHANGE_TO_EXCLUDE, ipaddress.IPv4Address(group), ())
    return igmp.build(igmp.IgmpV3Report((record,)))


def mld_report(group: str, src: str) -> bytes:
    record = GroupRecord(RecordType.CHANGE_TO_EXCLUDE, ipaddress.IPv6Address(group), ())
    return mld.build(mld.MldV2Report((record,)), ipaddress.IPv6Address(src), ipaddress.IPv6Address("ff02::16"))


def short_igmp_query() -> bytes:
    """An IGMP query of 10 octets (RFC 3376 §7.1: 9-11 octets are invalid) with a good checksum."""
    from mcproxy_pmip.wire.checksum import internet_checksum
    body = b"\x11\x64\x00\x00" + bytes(6)
    return body[:2] + internet_checksum(body).to_bytes(2, "big") + body[4:]


def bad_checksum(message: bytes) -> bytes:
    return message[:2] + bytes([message[2] ^ 0xFF]) + message[3:]


#: name -> (frame, the counter it must raise, the group it must not create)
MALFORMED = {
    "igmp-bad-checksum": (igmp_frame(HOST_V4, bad_checksum(igmp_report("239.9.0.1"))),
                          "igmp_bad_checksum", "239.9.0.1"),
    "igmp-ttl-2": (igmp_frame(HOST_V4, igmp_report("239.9.0.2"), ttl=2), "igmp_bad_ttl", "239.9.0.2"),
    "igmp-query-10-octets": (igmp_frame(HOST_V4, short_igmp_query(), dst="224.0.0.1"),
                             "igmp_query_length_9_to_11", None),
    "mld-hop-limit-2": (mld_frame(HOST_LL, mld_report("ff15::901", HOST_LL), hop_limit=2),
                        "mld_bad_hop_limit", "ff15::901"),
    "mld-global-source": (mld_frame("fd02:1::2", mld_report("ff15::902", "fd02:1::2")),
                          "mld_source_not_link_local", "ff15::902"),
    "mld-unspecified-source": (mld_frame("::", mld_report("ff15::903", "::")),
                               "mld_unspecified_source", "ff15::903"),
}


def counters(daemon) -> dict[str, int]:
    return daemon.request("status")["counters"]


def groups_on(daemon, interface: str) -> list[str]:
    return [row["group"] for row in daemon.request("groups", interface=interface)]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_packet_is_counted_and_changes_nothing(topo, case) -> None:
    frame, counter, group = MALFORMED[case]
    daemon = topo.start_daemon("protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d2;\n")
    before = counters(daemon).get(counter, 0)
    send_frame(topo.hosts[0], "e0", frame)
    wait_for(lambda: counters(daemon).get(counter, 0) == before + 1, 5, f"counter {counter} to rise by one")
    if group is not None:
        assert group not in groups_on(daemon, "d1")
    family = Family.IPV6 if counter.startswith("mld") else Family.IPV4
    valid = "239.1.1.1" if family is Family.IPV4 else "ff15::101"
    receiver = topo.join(topo.hosts[0], family, valid)
    send_until(topo.sender(family), valid, receiver, 5, "data at the host after the bad packet")
    assert counters(daemon)[counter] == before + 1


@pytest.mark.parametrize("source", ["0.0.0.0", "192.0.2.7"], ids=["unspecified", "other-subnet"])
def test_igmp_report_from_unusual_source_is_accepted(topo, source) -> None:
    """docs/scenarios.md item 2: reports from 0.0.0.0 or outside the interface's subnet count like any other."""
    group = "239.2.0.1"
    daemon = topo.start_daemon("protocol IGMPv3;\npinstance p: up0 ==> d1 d2;\n")
    at_h1 = Capture(topo.hosts[0], "e0")
    send_frame(topo.hosts[0], "e0", igmp_frame(source, igmp_report(group)))
    wait_for(lambda: group in groups_on(daemon, "d1"), 5, f"the group reported from {source} on d1")
    sender = topo.sender(Family.IPV4)

    def data_at_h1():
        sender.sendto(b"data", (group, PORT))
        return [f for f in at_h1.drain() if f[2] == 17 and str(f[4]) == group]
    wait_for(data_at_h1, 5, "data for the group at h1", interval=0.01)


def test_max_groups_caps_the_state_and_the_daemon_goes_on(topo, tmp_path) -> None:
    config = ("protocols: [IGMPv3]\ninstances:\n  - name: p\n    upstreams: [up0]\n"
              "    downstreams: [d1, d2]\n    limits: {max_groups: 3}\n")
    daemon = topo.start_daemon(config)
    wanted = [f"239.3.0.{n}" for n in range(1, 7)]
    sockets = [topo.join(topo.hosts[0], Family.IPV4, group) for group in wanted]
    wait_for(lambda: len(groups_on(daemon, "d1")) == 3, 5, "three groups on d1")
    time.sleep(QUIET_WINDOW)
    accepted = groups_on(daemon, "d1")
    assert len(accepted) == 3 and set(accepted) <= set(wanted), accepted
    send_until(topo.sender(Family.IPV4), accepted[0], sockets[wanted.index(accepted[0])], 5,
               "data for an accepted group")
    other = topo.join(topo.hosts[1], Family.IPV4, "239.1.1.1")
    send_until(topo.sender(Family.IPV4), "239.1.1.1", other, 5, "data at the other downstream")
    assert daemon.process.poll() is None
