"""Upstream reports through the whole IO layer on task.Clock (receiver -> engine -> Sender):
a burst of joins leaves as few packets as the MTU allows, its retransmission is one
merged report, and the answer to an upstream General Query is packed and spread."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.kernel.igmp_socket import ReceivedIgmp
from mcproxy_pmip.wire import igmp
from mcproxy_pmip.wire.records import RecordType
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none

CONFIG = """\
protocols: [IGMPv3]
instances:
  - name: p
    upstreams: [up0]
    downstreams: [d1]
    timers: {unsolicited_report_interval: 1}
    limits: {max_groups: 1024, max_instance_groups: 4096, max_records_per_packet: 1024,
             report_rate: 1000.0, report_burst: 1000, host_report_rate: 1000.0, host_report_burst: 1000}
"""


@pytest.fixture
def run():
    proxy = MemoryProxy(CONFIG, ["up0", "d1"])
    proxy.reactor.advance(5.0)  # start-up: the upstream's first (empty) current-state report is due
    assert proxy.sent_reports(Family.IPV4, "up0") == []
    yield proxy
    proxy.stop()


def joins(first: int, count: int) -> list:
    return [exclude_none(str(ipaddress.IPv4Address("239.3.0.0") + first + i)) for i in range(count)]


def upstream(run: MemoryProxy) -> list:
    return run.sent_reports(Family.IPV4, "up0")


def test_183_joins_in_one_report_leave_in_one_packet_and_retransmit_in_one(run: MemoryProxy) -> None:
    run.igmp_report("d1", joins(0, 183))
    sent = upstream(run)
    assert [len(r.records) for r in sent] == [183], "one 1,500-octet report for 183 changes"
    assert {r.record_type for r in sent[0].records} == {RecordType.CHANGE_TO_EXCLUDE}
    run.reactor.advance(1.0)
    assert [len(r.records) for r in upstream(run)] == [183, 183], "one merged retransmission"
    run.reactor.advance(5.0)
    assert len(upstream(run)) == 2, "robustness 2: nothing after the retransmission"


def test_upstream_general_query_answer_is_packed_and_spread_over_max_resp(run: MemoryProxy) -> None:
    for first in range(0, 600, 150):
        run.igmp_report("d1", joins(first, 150))
    run.reactor.advance(2.0)
    before = len(upstream(run))
    assert before == 4 + 4, "four change reports, then one merged retransmission in four packets"
    up0 = run.host.links["up0"]
    payload = igmp.build(igmp.IgmpQuery(3, 10.0, robustness=2, query_interval=125.0))
    run.sockets[Family.IPV4].inject(ReceivedIgmp(up0.ifindex, ipaddress.IPv4Address("10.0.10.254"),
                                                 ipaddress.IPv4Address("224.0.0.1"), 1, True, payload))
    run.deliver()
    per_turn = []
    for _ in range(100):
        run.reactor.advance(0.1)
        new = upstream(run)[before + sum(per_turn):]
        if new:
            assert all(r.records[0].record_type is RecordType.MODE_IS_EXCLUDE for r in new)
            per_turn.append(len(new))
    answer = upstream(run)[before:]
    assert sorted(str(rec.group) for r in answer for rec in r.records) == sorted(
        str(ipaddress.IPv4Address("239.3.0.0") + i) for i in range(600))
    assert max(per_turn) == 1 and len(per_turn) == 4, \
        f"600 records: 4 reports in 4 separate turns over Max Resp Time, got {per_turn}"
