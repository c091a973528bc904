"""The MAG-to-MAG context channel between two real daemons (RFC 7411 §3.3, docs/plugins.md).

         up (LMA side) --u1/up0-- [ mag1 ] --d1/e0-- h1 (the MN at mag1: joins)
                       --u2/up0-- [ mag2 ] --d1/e0-- h2 (the MN at mag2: silent)
                      mag1 p0 (fd09::1) <-- TLS 7411 --> p0 (fd09::2) mag2

A kernel host joins at mag1, so mag1 holds the MN's records. The MN then
moves: predictively (``handover-prepare`` at mag1 pushes the context, mag2's
attach without context uses it) or reactively (mag1 processes the detach,
mag2's attach names ``previous_mag`` and fetches it). Either way mag2 joins
upstream although its access link stays silent. The channel runs mutual TLS
with certificates made for the test (peer_pki). Frames carry kernel receive
times (SO_TIMESTAMPNS), so ordering assertions do not depend on when they are read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.control.client import ControlError
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import wait_for
from tests.netns.two_mags import TwoMags, build_two_mags
from tests.netns.test_plugin_netns import TimedCapture, general_queries, report_records

pytestmark = pytest.mark.netns

PREFIX = "mpq-"
GROUP = {Family.IPV4: "239.1.1.1", Family.IPV6: "ff3e::8000:1"}
SOURCE = {Family.IPV4: "10.1.1.1", Family.IPV6: "fd01:1::1"}
JOIN_RECORD_TYPES = (4, 5)  # CHANGE_TO_EXCLUDE, ALLOW_NEW_SOURCES: state-change joins


@pytest.fixture
def two_mags(netns_factory, tmp_path) -> Iterator[TwoMags]:  # noqa: F811
    yield from build_two_mags(netns_factory, tmp_path, PREFIX)


def subscribe_at_mag1(topo: TwoMags, mn_id: str) -> None:
    """The MN at mag1 joins both groups; wait until mag1's context holds both families."""
    assert topo.attach("mag1", mn_id)["context"] == "none"
    mn = topo.mns["mag1"]
    sockets = [topo.harness.join(mn, family, GROUP[family], SOURCE[family] if family is Family.IPV6 else None)
               for family in Family]

    def both_families():
        return len(topo.daemons["mag1"].request("context-export", mn_id=mn_id)["context"]) == 2
    wait_for(both_families, 5, f"mag1's context of {mn_id} with an IPv4 and an IPv6 entry")
    for sock in sockets:
        sock.close()


def assert_mag2_joins_for_the_silent_mn(topo: TwoMags, upstream: TimedCapture, access: TimedCapture,
                                        sent_at: float) -> dict[Family, float]:
    """mag2's state-change join of each group upstream; nothing of the kind from the MN at mag2."""
    joined_at = {}
    for family in Family:
        joins = wait_for(lambda f=family: [r for r in report_records(upstream.drain(), f)
                                           if r[2] == GROUP[f] and r[1] in JOIN_RECORD_TYPES], 3,
                         f"mag2's {family.protocol} join of {GROUP[family]} upstream")
        joined_at[family] = joins[0][0]
        print(f"\n{family.protocol}: attach at mag2 -> upstream join {(joins[0][0] - sent_at) * 1000:.2f} ms")
    for family in Family:
        from_mn = [r for r in report_records(access.drain(), family) if r[2] == GROUP[family]]
        assert from_mn == [], f"the MN at mag2 reported {GROUP[family]}: the test proves nothing"
    return joined_at


def test_predictive_push_lets_mag2_join_before_the_mn_speaks(two_mags) -> None:
    topo = two_mags
    subscribe_at_mag1(topo, "mn1")
    prepared = topo.daemons["mag1"].request("handover-prepare", mn_id="mn1", target="mag2")
    assert prepared == {"mn_id": "mn1", "target": "mag2", "pushed": 2}
    assert topo.daemons["mag1"].request("binding", event="detach", mn_id="mn1")["removed_instance"]
    upstream = TimedCapture(topo.up, "u2")
    access = TimedCapture(topo.mags["mag2"], "d1")
    sent_at = time.time()  # the clock of the kernel's receive stamps
    reply = topo.attach("mag2", "mn1", previous_mag="mag1")
    assert (reply["context"], reply["records"]) == ("pushed", 2), reply
    assert_mag2_joins_for_the_silent_mn(topo, upstream, access, sent_at)
    assert "context-pushed mn=mn1 peer=mag1 entries=2" in topo.daemons["mag2"].log()
    upstream.close()
    access.close()


def test_reactive_fetch_after_the_general_query(two_mags) -> None:
    topo = two_mags
    subscribe_at_mag1(topo, "mn1")
    topo.daemons["mag1"].request("binding", event="detach", mn_id="mn1")
    upstream = TimedCapture(topo.up, "u2")
    access = TimedCapture(topo.mags["mag2"], "d1")
    at_mn = TimedCapture(topo.mns["mag2"], "e0")
    sent_at = time.time()  # the clock of the kernel's receive stamps
    reply = topo.attach("mag2", "mn1", previous_mag="mag1")
    assert (reply["context"], reply["records"], reply["context_records"]) == ("fetched", 2, 2), reply
    joined_at = assert_mag2_joins_for_the_silent_mn(topo, upstream, access, sent_at)
    for family in Family:
        query = wait_for(lambda f=family: general_queries(at_mn.drain(), f), 3,
                         f"mag2's {family.protocol} General Query at the MN")[0]
        assert query[0] < joined_at[family], "the General Query waited for the context fetch"
    unknown = topo.attach("mag2", "mn9", previous_mag="mag1")
    assert (unknown["context"], unknown["reason"]) == ("unavailable", "unknown-mn")
    assert sorted(b["mn_id"] for b in topo.daemons["mag2"].request("bindings")) == ["mn1", "mn9"]
    for capture in (upstream, access, at_mn):
        capture.close()


def test_channel_errors_reach_the_operator(two_mags) -> None:
    topo = two_mags
    mag1 = topo.daemons["mag1"]
    topo.attach("mag1", "mn1")
    for target, mn_id, code in (("mag9", "mn1", "unknown-peer"), ("mag2", "nobody", "unknown-mn")):
        with pytest.raises(ControlError) as info:
            mag1.request("handover-prepare", mn_id=mn_id, target=target)
        assert info.value.code == code
    assert topo.daemons["mag2"].stop() == 0
    with pytest.raises(ControlError) as info:
        mag1.request("handover-prepare", mn_id="mn1", target="mag2")
    assert info.value.code == "peer-unreachable", info.value
