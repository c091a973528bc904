"""Receiver validation (docs/scenarios.md items 1-2) over fake sockets: drops are counted, valid input delivered."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.proxy.receiver import QueryReceived, Receiver, ReportReceived
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.checksum import internet_checksum
from mcproxy_pmip.wire.records import GroupRecord, RecordType

G4 = ipaddress.IPv4Address("239.1.1.1")
G6 = ipaddress.IPv6Address("ff15::1")
LL = ipaddress.IPv6Address("fe80::2")
OWN = {ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Address("fe80::1")}


@dataclass
class Packet:
    ifindex: int
    src: object
    dst: object
    payload: bytes
    router_alert: bool = True
    ttl: int = 1
    hop_limit: int = 1


class FakeSocket:
    def __init__(self) -> None:
        self.queue: list[Packet] = []

    def read_packets(self) -> list[Packet]:
        queued, self.queue = self.queue, []
        return queued


@pytest.fixture
def rig():
    igmp_sock, mld_sock, delivered = FakeSocket(), FakeSocket(), []
    receiver = Receiver(igmp_sock, mld_sock, delivered.append, lambda a: a in OWN, clock=Clock())
    return receiver, igmp_sock, mld_sock, delivered


V3_REPORT = igmp.build(igmp.IgmpV3Report(records=(GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G4),)))


def test_igmpv3_report_from_unspecified_and_foreign_subnet_is_accepted(rig) -> None:
    receiver, igmp_sock, _, delivered = rig
    for source in ("0.0.0.0", "192.0.2.77"):
        igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address(source), G4, V3_REPORT))
    receiver.read_igmp()
    assert [type(d) for d in delivered] == [ReportReceived, ReportReceived]
    assert delivered[0].records[0].record_type is RecordType.CHANGE_TO_EXCLUDE
    assert delivered[0].version == 3 and delivered[0].ifindex == 3


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda p: setattr(p, "ttl", 2), "igmp_bad_ttl"),
    (lambda p: setattr(p, "payload", p.payload[:2] + b"\x00\x00" + p.payload[4:]), "igmp_bad_checksum"),
    (lambda p: setattr(p, "payload", igmp.build(igmp.IgmpQuery(version=2, max_resp_interval=1))[:8] + b"\0\0"),
     "igmp_query_length_9_to_11"),
])
def test_bad_igmp_is_counted_and_dropped(rig, mutate, reason) -> None:
    receiver, igmp_sock, _, delivered = rig
    packet = Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, V3_REPORT)
    mutate(packet)
    igmp_sock.queue.append(packet)
    receiver.read_igmp()
    assert delivered == []
    assert receiver.drops[reason] == 1, dict(receiver.drops)


def test_own_reports_are_dropped(rig) -> None:
    receiver, igmp_sock, _, delivered = rig
    igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address("10.0.0.1"), G4, V3_REPORT))
    receiver.read_igmp()
    assert delivered == [] and receiver.drops["igmp_own_report"] == 1


def test_router_alert_required_when_configured(rig) -> None:
    receiver, igmp_sock, _, delivered = rig
    receiver.require_router_alert = True
    igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, V3_REPORT, router_alert=False))
    receiver.read_igmp()
    assert delivered == [] and receiver.drops["igmp_no_router_alert"] == 1


def test_igmpv2_report_and_leave_map_to_records(rig) -> None:
    receiver, igmp_sock, _, delivered = rig
    igmp_sock.queue += [Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, igmp.build(igmp.IgmpV2Report(G4))),
                        Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, igmp.build(igmp.IgmpV2Leave(G4)))]
    receiver.read_igmp()
    assert [(d.version, d.records[0].record_type) for d in delivered] == [
        (2, RecordType.MODE_IS_EXCLUDE), (2, RecordType.CHANGE_TO_INCLUDE)]


MLD_REPORT = mld.build(mld.MldV2Report(records=(GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G6),)))


@pytest.mark.parametrize(("source", "hop_limit", "reason"), [
    ("fe80::2", 2, "mld_bad_hop_limit"),
    ("::", 1, "mld_unspecified_source"),
    ("fd00::2", 1, "mld_source_not_link_local"),
])
def test_bad_mld_is_counted_and_dropped(rig, source, hop_limit, reason) -> None:
    receiver, _, mld_sock, delivered = rig
    mld_sock.queue.append(Packet(4, ipaddress.IPv6Address(source), G6, MLD_REPORT, hop_limit=hop_limit))
    receiver.read_mld()
    assert delivered == []
    assert receiver.drops[reason] == 1, dict(receiver.drops)


def test_valid_mld_query_and_report_are_delivered(rig) -> None:
    receiver, _, mld_sock, delivered = rig
    query = mld.build(mld.MldQuery(version=2, max_resp_interval=10.0))
    mld_sock.queue += [Packet(4, LL, G6, MLD_REPORT), Packet(4, LL, G6, query)]
    receiver.read_mld()
    assert isinstance(delivered[0], ReportReceived) and delivered[0].family is Family.IPV6
    assert isinstance(delivered[1], QueryReceived) and delivered[1].query.max_resp_interval == 10.0


def test_unknown_record_types_are_counted_and_the_rest_kept(rig) -> None:
    receiver, igmp_sock, _, delivered = rig
    body = bytearray(igmp.build(igmp.IgmpV3Report(records=(
        GroupRecord(RecordType.MODE_IS_EXCLUDE, G4), GroupRecord(RecordType.MODE_IS_EXCLUDE, G4)))))
    body[8] = 9  # first record's type becomes unknown
    body[2:4] = b"\0\0"
    body[2:4] = internet_checksum(bytes(body)).to_bytes(2, "big")
    igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, bytes(body)))
    receiver.read_igmp()
    assert len(delivered) == 1 and len(delivered[0].records) == 1
    assert receiver.drops["igmp_unknown_record_type"] == 1


UNICAST4 = ipaddress.IPv4Address("109.213.172.110")
UNICAST6 = ipaddress.IPv6Address("127:2902:b3b8:9faa:b327:416c:31af:2a2")


def test_unicast_record_is_dropped_and_the_rest_kept(rig) -> None:
    """Found by proxybench's S5 fuzzing: non-multicast 'groups' must never reach the engine."""
    receiver, igmp_sock, _, delivered = rig
    records = (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, UNICAST4), GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G4))
    igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, igmp.build(igmp.IgmpV3Report(records))))
    receiver.read_igmp()
    assert [type(d) for d in delivered] == [ReportReceived]
    assert [r.group for r in delivered[0].records] == [G4]
    assert receiver.drops["igmp_group_not_multicast"] == 1, dict(receiver.drops)


def test_reports_with_only_unicast_groups_are_dropped(rig) -> None:
    receiver, igmp_sock, mld_sock, delivered = rig
    igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, igmp.build(igmp.IgmpV2Report(UNICAST4))))
    mld_sock.queue.append(Packet(3, LL, UNICAST6, mld.build(mld.MldV1Report(UNICAST6), LL, UNICAST6)))
    receiver.read_igmp()
    receiver.read_mld()
    assert delivered == []
    assert receiver.drops["igmp_group_not_multicast"] == 1, dict(receiver.drops)
    assert receiver.drops["mld_group_not_multicast"] == 1, dict(receiver.drops)
