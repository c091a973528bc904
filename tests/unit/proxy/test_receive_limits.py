"""The receive path's bounds on task.Clock: rate limits, per-packet caps, the per-turn budget, on-link queries."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import Limits
from mcproxy_pmip.kernel.igmp_socket import ReceivedIgmp
from mcproxy_pmip.kernel.mld_socket import ReceivedMld
from mcproxy_pmip.proxy.api import ProxyApi
from mcproxy_pmip.proxy.ratelimit import RateLimiter, TokenBucket
from mcproxy_pmip.proxy.receiver import QueryReceived, Receiver, ReportReceived, cap_records
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none

ALL_ROUTERS_V3 = ipaddress.IPv4Address("224.0.0.22")
ALL_NODES = ipaddress.IPv4Address("224.0.0.1")
LINK, OTHER_LINK = 3, 4
SUBNETS = {LINK: ipaddress.IPv4Network("10.0.3.0/24"), OTHER_LINK: ipaddress.IPv4Network("10.0.4.0/24")}


class QueueSocket:
    def __init__(self) -> None:
        self.queue: list = []
        self.reads = 0

    def read_packets(self) -> list:
        self.reads += 1
        queued, self.queue = self.queue, []
        return queued


@dataclass
class Rig:
    clock: Clock
    receiver: Receiver
    igmp: QueueSocket
    mld: QueueSocket
    delivered: list

    def report(self, group: str = "239.1.1.1", source: str = "10.0.3.9", ifindex: int = LINK,
               records: tuple[GroupRecord, ...] | None = None) -> None:
        records = records or (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, ipaddress.IPv4Address(group)),)
        self.igmp.queue.append(ReceivedIgmp(ifindex, ipaddress.IPv4Address(source), ALL_ROUTERS_V3, 1, True,
                                            igmp.build(igmp.IgmpV3Report(records))))

    def query(self, source: str, ifindex: int = LINK) -> None:
        payload = igmp.build(igmp.IgmpQuery(3, 1.0, robustness=2, query_interval=125.0))
        self.igmp.queue.append(ReceivedIgmp(ifindex, ipaddress.IPv4Address(source), ALL_NODES, 1, True, payload))

    def reports(self) -> list[ReportReceived]:
        return [d for d in self.delivered if isinstance(d, ReportReceived)]


class TurnClock(Clock):
    """A ``Clock`` whose ``advance`` runs only the calls due when it starts, as one reactor iteration does.

    (``Clock.advance`` also runs zero-delay calls scheduled by the calls it runs.)
    """

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        due = sorted((c for c in self.calls if c.getTime() <= self.seconds()), key=lambda c: c.getTime())
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


def make_rig(limits: Limits = Limits(), **kwargs) -> Rig:
    clock, igmp_sock, mld_sock, delivered = TurnClock(), QueueSocket(), QueueSocket(), []
    receiver = Receiver(igmp_sock, mld_sock, delivered.append, lambda address: False, clock=clock,
                        limits_for=lambda ifindex: limits,
                        is_on_link=lambda ifindex, address: address.is_link_local if address.version == 6
                        else address in SUBNETS.get(ifindex, ()), **kwargs)
    return Rig(clock, receiver, igmp_sock, mld_sock, delivered)


def drain(rig: Rig) -> None:
    """Every turn the reactor would run until nothing is queued."""
    rig.receiver.read_igmp()
    while any(call.getTime() <= rig.clock.seconds() for call in rig.clock.getDelayedCalls()):
        rig.clock.advance(0)


# -- rate limits -------------------------------------------------------------------------


def test_one_host_over_its_rate_is_dropped_and_counted_and_refills_with_time() -> None:
    rig = make_rig(Limits(host_report_rate=10.0, host_report_burst=5, report_rate=100.0, report_burst=100))
    for _ in range(8):
        rig.report()
    drain(rig)
    assert len(rig.reports()) == 5, "the host's burst passes, the rest is dropped"
    assert rig.receiver.drops["igmp_rate_limited_host"] == 3
    rig.clock.advance(0.1)  # one token at 10/s
    rig.report()
    rig.report()
    drain(rig)
    assert len(rig.reports()) == 6
    assert rig.receiver.drops["igmp_rate_limited_host"] == 4


def test_many_hosts_on_one_link_share_the_link_bucket_and_another_link_is_unaffected() -> None:
    rig = make_rig(Limits(host_report_rate=10.0, host_report_burst=5, report_rate=10.0, report_burst=20))
    for index in range(50):
        rig.report(source=f"10.0.3.{index + 10}")
    rig.report(source="10.0.4.9", ifindex=OTHER_LINK)
    drain(rig)
    by_link = [r.ifindex for r in rig.reports()]
    assert by_link.count(LINK) == 20 and by_link.count(OTHER_LINK) == 1
    assert rig.receiver.drops["igmp_rate_limited_link"] == 30


def test_a_host_over_its_rate_does_not_drain_the_link_bucket() -> None:
    rig = make_rig(Limits(host_report_rate=1.0, host_report_burst=2, report_rate=1.0, report_burst=4))
    for _ in range(10):
        rig.report(source="10.0.3.66")
    rig.report(source="10.0.3.7")
    drain(rig)
    assert [str(r.source) for r in rig.reports()] == ["10.0.3.66", "10.0.3.66", "10.0.3.7"]


def test_spoofed_sources_keep_the_host_table_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, max_hosts=64)
    for index in range(10_000):
        limiter.admit_report(LINK, ipaddress.IPv4Address(0x0A000000 + index), Limits())
        clock.advance(0.001)
    assert limiter.tracked_hosts(LINK, 4) == 64
    assert limiter.hosts_evicted == 10_000 - 64


def test_the_link_table_is_bounded_too() -> None:
    limiter = RateLimiter(Clock(), max_links=8)
    for ifindex in range(100):
        assert limiter.admit_query(ifindex, 4, Limits()) is None
    assert limiter.tracked_links() == 8


def test_token_bucket_never_exceeds_its_burst_and_follows_new_limits() -> None:
    bucket = TokenBucket(4, now=0.0)
    assert bucket.refill(100.0, 2.0, 4) == 4.0
    bucket.tokens = 0.0
    assert bucket.refill(101.0, 2.0, 4) == 2.0
    assert bucket.refill(101.0, 2.0, 1) == 1.0, "a reload's smaller burst applies at once"


def test_queries_do_not_use_the_report_buckets_but_have_their_own() -> None:
    rig = make_rig(Limits(host_report_rate=1.0, host_report_burst=1, report_rate=1.0, report_burst=3))
    for _ in range(5):
        rig.report(source="10.0.3.1")
    for _ in range(5):
        rig.query("10.0.3.1")
    drain(rig)
    assert len(rig.reports()) == 1
    queries = [d for d in rig.delivered if isinstance(d, QueryReceived)]
    assert len(queries) == 3, "as many queries as the link's report burst"
    assert rig.receiver.drops["igmp_rate_limited_query"] == 2


def test_limits_come_from_the_links_instance() -> None:
    config = ("instances:\n"
              "  - {name: a, upstreams: [up0], downstreams: [d1], limits: {host_report_burst: 2}}\n"
              "  - {name: b, upstreams: [up1], downstreams: [d2], limits: {host_report_burst: 7}}\n")
    run = MemoryProxy("protocols: [IGMPv3]\n" + config, ["up0", "up1", "d1", "d2"])
    try:
        for link in ("d1", "d2"):
            for index in range(10):
                run.igmp_report(link, [exclude_none(f"239.1.1.{index + 1}")])
        assert ProxyApi(run.proxy).status()["counters"]["igmp_rate_limited_host"] == 8 + 3, "status shows it"
        assert len(run.plane.instances["a"].groups) == 2 and len(run.plane.instances["b"].groups) == 7
    finally:
        run.stop()


# -- on-link queries ---------------------------------------------------------------------


def test_a_query_from_off_link_is_ignored_and_counted() -> None:
    rig = make_rig()
    rig.query("192.0.2.1")
    rig.query("0.0.0.0")
    rig.query("10.0.4.1")  # on the other link's subnet
    rig.query("10.0.3.1")
    drain(rig)
    assert [str(d.source) for d in rig.delivered] == ["10.0.3.1"]
    assert rig.receiver.drops["igmp_query_not_on_link"] == 3


def test_an_mld_query_must_come_from_a_link_local_source() -> None:
    rig = make_rig()
    for source in ("2001:db8::1", "fe80::1"):
        src = ipaddress.IPv6Address(source)
        dst = ipaddress.IPv6Address("ff02::1")
        payload = mld.build(mld.MldQuery(2, 1.0, robustness=2, query_interval=125.0), src, dst)
        rig.mld.queue.append(ReceivedMld(LINK, src, dst, 1, True, payload))
    rig.receiver.read_mld()
    assert [str(d.source) for d in rig.delivered] == ["fe80::1"]
    assert rig.receiver.drops["mld_source_not_link_local"] == 1


def test_on_link_of_the_interface_monitor() -> None:
    from mcproxy_pmip.kernel.interfaces import InterfaceInfo
    from mcproxy_pmip.kernel.netmon import on_link
    numbered = InterfaceInfo("d1", 5, True, 1500, (ipaddress.IPv4Interface("10.2.1.1/24"),),
                             ipaddress.IPv6Address("fe80::1"), (ipaddress.IPv6Interface("fd02:1::1/64"),))
    assert on_link(numbered, ipaddress.IPv4Address("10.2.1.77"))
    assert not on_link(numbered, ipaddress.IPv4Address("10.2.2.77"))
    assert not on_link(numbered, ipaddress.IPv4Address("0.0.0.0"))
    assert on_link(numbered, ipaddress.IPv6Address("fe80::99"))
    assert on_link(numbered, ipaddress.IPv6Address("fd02:1::5"))
    assert not on_link(numbered, ipaddress.IPv6Address("fd02:2::5"))
    peer = InterfaceInfo("tun0", 6, True, 1400, (ipaddress.IPv4Interface("10.9.0.1/32"),))
    assert on_link(peer, ipaddress.IPv4Address("192.0.2.1")), "point-to-point: the peer may be anywhere"
    assert on_link(InterfaceInfo("tun1", 7, True, 1400), ipaddress.IPv4Address("192.0.2.1"))


# -- per-packet caps ---------------------------------------------------------------------


def _record(kind: RecordType, group: int, sources: int) -> GroupRecord:
    return GroupRecord(kind, ipaddress.IPv4Address(0xEF010000 + group),
                       tuple(ipaddress.IPv4Address(0x0A000000 + s) for s in range(sources)))


def test_cap_records_takes_whole_records_until_a_cap() -> None:
    records = [_record(RecordType.MODE_IS_INCLUDE, n, 3) for n in range(10)]
    capped = cap_records(records, 4, 100)
    assert capped.records == tuple(records[:4])
    assert (capped.records_dropped, capped.sources_dropped) == (6, 18)


def test_cap_records_drops_an_include_record_that_does_not_fit_and_truncates_an_exclude_one() -> None:
    records = [_record(RecordType.ALLOW_NEW_SOURCES, 1, 4), _record(RecordType.MODE_IS_INCLUDE, 2, 4),
               _record(RecordType.CHANGE_TO_EXCLUDE, 3, 4), _record(RecordType.BLOCK_OLD_SOURCES, 4, 1),
               _record(RecordType.CHANGE_TO_EXCLUDE, 5, 0)]
    capped = cap_records(records, 10, 6)
    assert [(r.record_type, len(r.sources)) for r in capped.records] == [
        (RecordType.ALLOW_NEW_SOURCES, 4), (RecordType.CHANGE_TO_EXCLUDE, 2), (RecordType.CHANGE_TO_EXCLUDE, 0)]
    assert capped.records[1].sources == records[2].sources[:2]
    assert (capped.records_dropped, capped.sources_dropped) == (2, 4 + 2 + 1)


def test_a_report_over_the_caps_reaches_the_engine_capped_and_the_rest_is_counted() -> None:
    rig = make_rig(Limits(max_records_per_packet=5, max_sources_per_packet=8))
    rig.report(records=tuple(_record(RecordType.MODE_IS_INCLUDE, n, 2) for n in range(7)))
    drain(rig)
    (report,) = rig.reports()
    assert len(report.records) == 4 and sum(len(r.sources) for r in report.records) == 8
    assert rig.receiver.drops["igmp_records_over_cap"] == 3
    assert rig.receiver.drops["igmp_sources_over_cap"] == 6


def test_a_report_left_with_no_record_is_not_delivered() -> None:
    rig = make_rig(Limits(max_sources_per_packet=2))
    rig.report(records=(_record(RecordType.MODE_IS_INCLUDE, 1, 3),))
    drain(rig)
    assert rig.delivered == []
    assert rig.receiver.drops["igmp_records_over_cap"] == 1


# -- per-turn work budget ----------------------------------------------------------------


def test_one_turn_handles_at_most_turn_packets_and_the_rest_follows_on_the_next_turns() -> None:
    rig = make_rig(Limits(host_report_burst=1000, report_burst=1000), turn_packets=16)
    for index in range(40):
        rig.report(group=f"239.2.0.{index + 1}")
    rig.receiver.read_igmp()
    assert len(rig.delivered) == 16 and rig.receiver.pending(Family.IPV4) == 24
    assert len(rig.clock.getDelayedCalls()) == 1, "the rest is scheduled for the next turn"
    rig.clock.advance(0)
    assert len(rig.delivered) == 32
    rig.clock.advance(0)
    assert len(rig.delivered) == 40 and rig.receiver.pending(Family.IPV4) == 0
    assert rig.clock.getDelayedCalls() == []
    assert [str(r.records[0].group) for r in rig.reports()] == [f"239.2.0.{n + 1}" for n in range(40)]
    assert rig.igmp.reads == 2, "queued packets first; the socket is read again once the queue is empty"
    assert rig.receiver.received["igmp_turns_deferred"] == 2


def test_the_turn_budget_counts_records_and_sources() -> None:
    rig = make_rig(Limits(host_report_burst=1000, report_burst=1000), turn_work=250)
    for index in range(6):
        rig.report(records=tuple(_record(RecordType.MODE_IS_INCLUDE, 10 * index + n, 4) for n in range(10)))
    rig.receiver.read_igmp()
    assert len(rig.delivered) == 5, "51 units each: the fifth packet crosses 250"
    rig.clock.advance(0)
    assert len(rig.delivered) == 6


def test_a_turn_with_an_empty_queue_reads_the_socket_once() -> None:
    rig = make_rig()
    rig.receiver.read_igmp()
    rig.report()
    rig.receiver.read_igmp()
    assert rig.igmp.reads == 2 and len(rig.delivered) == 1
    assert rig.clock.getDelayedCalls() == []


def test_close_forgets_queued_packets_and_the_next_turn() -> None:
    rig = make_rig(Limits(host_report_burst=1000, report_burst=1000), turn_packets=1)
    rig.report()
    rig.report()
    rig.receiver.read_igmp()
    rig.receiver.close()
    assert rig.clock.getDelayedCalls() == [] and rig.receiver.pending(Family.IPV4) == 0


@pytest.mark.parametrize("bad", [0, -1])
def test_a_turn_admits_at_least_one_packet(bad: int) -> None:
    with pytest.raises(ValueError):
        make_rig(turn_packets=bad)


def test_igmp_and_mld_on_one_link_have_separate_buckets() -> None:
    rig = make_rig(Limits(host_report_rate=1.0, host_report_burst=50, report_rate=1.0, report_burst=5))
    for index in range(10):
        rig.report(source=f"10.0.3.{index + 10}")
    src, dst = ipaddress.IPv6Address("fe80::9"), ipaddress.IPv6Address("ff02::16")
    record = GroupRecord(RecordType.CHANGE_TO_EXCLUDE, ipaddress.IPv6Address("ff3e::1"))
    rig.mld.queue.append(ReceivedMld(LINK, src, dst, 1, True, mld.build(mld.MldV2Report((record,)), src, dst)))
    drain(rig)
    rig.receiver.read_mld()
    assert [r.family for r in rig.reports()] == [Family.IPV4] * 5 + [Family.IPV6]
    assert rig.receiver.drops["igmp_rate_limited_link"] == 5 and rig.receiver.drops["mld_rate_limited_link"] == 0
