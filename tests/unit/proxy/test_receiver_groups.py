"""Receiver: records for non-multicast groups never reach the engine (found by proxybench S5 fuzzing)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mcproxy_pmip.proxy.receiver import Receiver, ReportReceived
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType

G4 = ipaddress.IPv4Address("239.1.1.1")
UNICAST4 = ipaddress.IPv4Address("109.213.172.110")
LL = ipaddress.IPv6Address("fe80::2")
UNICAST6 = ipaddress.IPv6Address("127:2902:b3b8:9faa:b327:416c:31af:2a2")


@dataclass(frozen=True)
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


def _rig():
    igmp_sock, mld_sock, delivered = FakeSocket(), FakeSocket(), []
    return Receiver(igmp_sock, mld_sock, delivered.append, lambda a: False), igmp_sock, mld_sock, delivered


def test_unicast_record_is_dropped_and_the_rest_kept() -> None:
    receiver, igmp_sock, _, delivered = _rig()
    records = (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, UNICAST4), GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G4))
    igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, igmp.build(igmp.IgmpV3Report(records))))
    receiver.read_igmp()
    assert [type(d) for d in delivered] == [ReportReceived]
    assert [r.group for r in delivered[0].records] == [G4]
    assert receiver.drops["igmp_group_not_multicast"] == 1, dict(receiver.drops)


def test_reports_with_only_unicast_groups_are_dropped() -> None:
    receiver, igmp_sock, mld_sock, delivered = _rig()
    igmp_sock.queue.append(Packet(3, ipaddress.IPv4Address("10.0.0.9"), G4, igmp.build(igmp.IgmpV2Report(UNICAST4))))
    mld_sock.queue.append(Packet(3, LL, UNICAST6, mld.build(mld.MldV1Report(UNICAST6), LL, UNICAST6)))
    receiver.read_igmp()
    receiver.read_mld()
    assert delivered == []
    assert receiver.drops["igmp_group_not_multicast"] == 1, dict(receiver.drops)
    assert receiver.drops["mld_group_not_multicast"] == 1, dict(receiver.drops)
