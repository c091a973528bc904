"""Sender: engine actions become the right messages and destinations (scapy dissects what we send)."""

from __future__ import annotations

import errno
import ipaddress
import logging

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.interfaces import InterfaceInfo
from mcproxy_pmip.membership.actions import SendQuery, SendReport
from mcproxy_pmip.proxy.sender import MAX_RETRIES, RETRY_INTERVAL, Sender
from mcproxy_pmip.ratelog import LOG_INTERVAL
from mcproxy_pmip.wire.records import GroupRecord, RecordType

G4 = ipaddress.IPv4Address("239.1.1.1")
G6 = ipaddress.IPv6Address("ff15::1")
INFO = InterfaceInfo(name="d1", ifindex=7, up=True, mtu=1500,
                     ipv4_addresses=(ipaddress.IPv4Interface("10.0.0.1/24"),),
                     ipv6_link_local=ipaddress.IPv6Address("fe80::1"))


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, ifindex, source, destination, payload) -> None:
        self.sent.append((ifindex, source, destination, payload))


@pytest.fixture
def rig():
    v4, v6 = RecordingSocket(), RecordingSocket()
    return Sender(v4, v6, lambda name: INFO if name == "d1" else None), v4, v6


def query(family, version, group=None, sources=()):
    return SendQuery("d1", family, version, group, tuple(sources), 10.0, False, 2, 125.0)


def test_general_query_v3_goes_to_all_systems_from_the_interface_address(rig) -> None:
    from scapy.layers.igmp import IGMPv3_MQ
    sender, v4, _ = rig
    sender.send_query(query(Family.IPV4, 3))
    (ifindex, source, destination, payload), = v4.sent
    assert (ifindex, str(source), str(destination)) == (7, "10.0.0.1", "224.0.0.1")
    dissected = IGMPv3_MQ(payload)
    assert dissected.type == 0x11 and dissected.qqic == 125 and dissected.qrv == 2


def test_group_and_source_query_is_split_to_the_mtu(rig) -> None:
    sender, v4, _ = rig
    sources = [ipaddress.IPv4Address(0x0A000000 + i) for i in range(400)]
    sender.send_query(query(Family.IPV4, 3, G4, sources))
    assert [str(d) for _, _, d, _ in v4.sent] == ["239.1.1.1", "239.1.1.1"]
    assert sum((len(p) - 12) // 4 for *_, p in v4.sent) == 400


def test_igmpv1_general_query_has_no_group_and_code_zero(rig) -> None:
    sender, v4, _ = rig
    sender.send_query(query(Family.IPV4, 1))
    payload = v4.sent[0][3]
    assert len(payload) == 8 and payload[0] == 0x11 and payload[1] == 0


def test_mld_query_uses_link_local_source(rig) -> None:
    from scapy.layers.inet6 import ICMPv6MLQuery2
    sender, _, v6 = rig
    sender.send_query(query(Family.IPV6, 2, G6))
    ifindex, source, destination, payload = v6.sent[0]
    assert (str(source), str(destination)) == ("fe80::1", "ff15::1")
    assert ICMPv6MLQuery2(payload).mladdr == "ff15::1"


def test_v3_report_goes_to_224_0_0_22(rig) -> None:
    from scapy.layers.igmp import IGMPv3_MR
    sender, v4, _ = rig
    record = GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G4)
    sender.send_report(SendReport("d1", Family.IPV4, 3, (record,)))
    _, _, destination, payload = v4.sent[0]
    assert str(destination) == "224.0.0.22"
    dissected = IGMPv3_MR(payload)
    assert dissected.type == 0x22 and dissected.records[0].maddr == "239.1.1.1"
    assert dissected.records[0].rtype == RecordType.CHANGE_TO_EXCLUDE


@pytest.mark.parametrize(("family", "version", "group", "report_dst", "leave_dst"), [
    (Family.IPV4, 2, G4, "239.1.1.1", "224.0.0.2"),
    (Family.IPV6, 1, G6, "ff15::1", "ff02::2"),
])
def test_old_version_reports_and_leaves(rig, family, version, group, report_dst, leave_dst) -> None:
    sender, v4, v6 = rig
    records = (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, group), GroupRecord(RecordType.CHANGE_TO_INCLUDE, group))
    sender.send_report(SendReport("d1", family, version, records))
    sent = v4.sent if family is Family.IPV4 else v6.sent
    assert [str(d) for _, _, d, _ in sent] == [report_dst, leave_dst]


def test_igmpv1_has_no_leave(rig) -> None:
    sender, v4, _ = rig
    sender.send_report(SendReport("d1", Family.IPV4, 1, (GroupRecord(RecordType.CHANGE_TO_INCLUDE, G4),)))
    assert v4.sent == []


def test_unknown_interface_is_counted_not_raised(rig) -> None:
    sender, v4, _ = rig
    sender.send_query(SendQuery("gone0", Family.IPV4, 3, None, (), 10.0, False, 2, 125.0))
    assert v4.sent == [] and sender.failures["interface_gone"] == 1


class FlakySocket(RecordingSocket):
    """Refuses the first ``failures`` sends with ``code`` (a tentative source address)."""

    def __init__(self, failures: int, code: int) -> None:
        super().__init__()
        self.failures = failures
        self.code = code

    def send(self, ifindex, source, destination, payload) -> None:
        if self.failures:
            self.failures -= 1
            raise KernelError("sendmsg(ICMPv6)", self.code)
        super().send(ifindex, source, destination, payload)


def test_a_source_not_ready_yet_is_retried_until_it_works() -> None:
    clock = Clock()
    v6 = FlakySocket(3, errno.EINVAL)
    sender = Sender(RecordingSocket(), v6, lambda name: INFO, clock.callLater)
    sender.send_query(query(Family.IPV6, 2))
    assert v6.sent == []
    clock.pump([RETRY_INTERVAL] * 3)
    assert len(v6.sent) == 1 and sender.sent["mld_query"] == 1
    assert sender.failures["mld_query_retried"] == 3 and sender.failures["mld_query"] == 0


def test_retries_give_up_and_other_errors_are_not_retried() -> None:
    clock = Clock()
    v6 = FlakySocket(MAX_RETRIES + 5, errno.EINVAL)
    sender = Sender(RecordingSocket(), v6, lambda name: INFO, clock.callLater)
    sender.send_query(query(Family.IPV6, 2))
    clock.pump([RETRY_INTERVAL] * (MAX_RETRIES + 5))
    assert v6.sent == [] and sender.failures["mld_query"] == 1
    sender.close()
    assert clock.getDelayedCalls() == []
    unreachable = FlakySocket(1, errno.ENETUNREACH)
    sender = Sender(RecordingSocket(), unreachable, lambda name: INFO, clock.callLater)
    sender.send_query(query(Family.IPV6, 2))
    sender.close()
    assert sender.failures["mld_query"] == 1 and clock.getDelayedCalls() == []


def test_repeated_send_failures_are_logged_once_a_minute_with_a_count(caplog) -> None:
    clock = Clock()
    unreachable = FlakySocket(100, errno.ENETUNREACH)
    sender = Sender(RecordingSocket(), unreachable, lambda name: INFO, clock.callLater)
    with caplog.at_level(logging.WARNING, logger="mcproxy_pmip.proxy.sender"):
        for _ in range(50):
            sender.send_query(query(Family.IPV6, 2))
        clock.advance(LOG_INTERVAL)
    assert sender.failures["mld_query"] == 50
    assert caplog.text.count("send_failed ") == 1
    assert "send_failures_suppressed reason=d1/IPV6/query suppressed=49" in caplog.text
    sender.close()


def test_mld_waits_for_a_link_local_address_instead_of_sending_without_one() -> None:
    """RFC 3810 §5: MLD leaves from a link-local source; none yet (DAD) means wait, not drop."""
    clock = Clock()
    v6 = RecordingSocket()
    infos = {"d1": InterfaceInfo(name="d1", ifindex=7, up=True, mtu=1500)}
    sender = Sender(RecordingSocket(), v6, infos.get, clock.callLater)
    sender.send_report(SendReport("d1", Family.IPV6, 2, (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G6),)))
    clock.pump([RETRY_INTERVAL] * 5)
    assert v6.sent == [] and sender.failures["mld_report_retried"] == 6
    infos["d1"] = INFO
    clock.advance(RETRY_INTERVAL)
    assert [str(source) for _, source, _, _ in v6.sent] == ["fe80::1"]


def _joins(family, count):
    base = ipaddress.ip_address("239.2.0.0" if family is Family.IPV4 else "ff15::2:0")
    return tuple(GroupRecord(RecordType.CHANGE_TO_EXCLUDE, base + i + 1) for i in range(count))


@pytest.mark.parametrize(("mtu", "per_packet"), [(1500, [183]), (0, [183]), (9000, [183]), (576, [68, 68, 47])])
def test_v3_report_packs_as_many_records_as_the_interface_mtu_allows(mtu, per_packet) -> None:
    """An MTU of 0 (the kernel gave none) counts as 1,500."""
    from mcproxy_pmip.wire import igmp
    v4 = RecordingSocket()
    info = InterfaceInfo(name="up0", ifindex=3, up=True, mtu=mtu,
                         ipv4_addresses=(ipaddress.IPv4Interface("10.0.0.1/24"),))
    sender = Sender(v4, RecordingSocket(), lambda name: info)
    sender.send_report(SendReport("up0", Family.IPV4, 3, _joins(Family.IPV4, 183)))
    assert [len(igmp.parse(p).records) for *_, p in v4.sent] == per_packet
    assert all(len(p) + 24 <= (mtu or 1500) for *_, p in v4.sent), "IP header and Router Alert included"


def test_mldv2_report_of_150_records_is_three_packets(rig) -> None:
    _, _, v6 = rig
    sender = rig[0]
    sender.send_report(SendReport("d1", Family.IPV6, 2, _joins(Family.IPV6, 150)))
    assert [len(p) for *_, p in v6.sent] == [8 + 72 * 20, 8 + 72 * 20, 8 + 6 * 20]


def test_older_version_reports_are_paced_in_order() -> None:
    from mcproxy_pmip.proxy.sender import OLD_VERSION_BURST, OLD_VERSION_INTERVAL
    clock = Clock()
    v4 = RecordingSocket()
    sender = Sender(v4, RecordingSocket(), lambda name: INFO, clock.callLater)
    records = _joins(Family.IPV4, 183)
    sender.send_report(SendReport("d1", Family.IPV4, 2, records[:100]))
    sender.send_report(SendReport("d1", Family.IPV4, 2, records[100:]))
    assert len(v4.sent) == OLD_VERSION_BURST, "one burst at once"
    counts = [len(v4.sent)]
    while len(v4.sent) < len(records):
        clock.advance(OLD_VERSION_INTERVAL)
        counts.append(len(v4.sent))
        assert len(counts) < 20, "the backlog does not drain"
    assert counts == [min(len(records), OLD_VERSION_BURST * n) for n in range(1, len(counts) + 1)]
    assert [str(d) for _, _, d, _ in v4.sent] == [str(r.group) for r in records], "in order"
    clock.advance(OLD_VERSION_INTERVAL)
    clock.advance(OLD_VERSION_INTERVAL)
    assert clock.getDelayedCalls() == [], "pacing ends when idle"
    sender.send_report(SendReport("d1", Family.IPV4, 2, records[:1]))
    assert len(v4.sent) == len(records) + 1, "an idle link sends at once again"


def test_paced_backlog_of_a_vanished_interface_is_dropped_and_counted() -> None:
    from mcproxy_pmip.proxy.sender import OLD_VERSION_BURST, OLD_VERSION_INTERVAL
    clock = Clock()
    v6 = RecordingSocket()
    infos = {"d1": INFO}
    sender = Sender(RecordingSocket(), v6, infos.get, clock.callLater)
    sender.send_report(SendReport("d1", Family.IPV6, 1, _joins(Family.IPV6, OLD_VERSION_BURST + 5)))
    del infos["d1"]
    clock.advance(OLD_VERSION_INTERVAL)
    assert len(v6.sent) == OLD_VERSION_BURST
    assert sender.failures["report_dropped_interface_gone"] == 5
    assert clock.getDelayedCalls() == []
