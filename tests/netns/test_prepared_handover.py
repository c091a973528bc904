"""A prepared handover at one MAG (docs/handover.md): prepare, buffer, attach, flush, live.

    up (tunnel side, numbered streams) --u0/up0-- [ px: mcproxy-pmip ] --d1/e0-- h1 (the MN)

and between two MAGs (two_mags.py, one source reaching both): mag1's
``handover-prepare`` pushes the context naming the MN's LMA, mag2 prepares;
mag1's detach sends the markers; the MN's reception at mag1, then at mag2, is
one stream.

The MN's kernel joins both groups but d1 is no downstream yet; ``binding
prepare`` makes px join upstream and buffer; the attach must deliver the
buffered packets and then the live ones: every packet once, in order but
for packets that arrived during the forwarding commit (``late``,
docs/handover.md). With
``forwarded_last`` the attach delivers only what came after the named packet.
A prepare without attach is undone after ``prepare_interval``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.kernel.data_tap import DataTap
from mcproxy_pmip.wire import rfc7411
from mcproxy_pmip.wire.datagram import packet_identity
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import PLANES
from tests.netns.proxy_harness import Daemon, ProxyTopology, build_proxy_topology, wait_for
from tests.netns.stream_tools import SEQUENCE, PacedStream, Reception
from tests.netns.test_plugin_netns import TimedCapture, report_records
from tests.netns.two_mags import TwoMags, build_two_mags

pytestmark = pytest.mark.netns

GROUP = {Family.IPV4: "239.1.2.3", Family.IPV6: "ff1e::8000:7"}
CONFIG = ("protocols: [IGMPv3, MLDv2]\n"
          "plugins:\n"
          "  pmipv6:\n"
          "    prepare_interval: 1.5\n"
          "    buffer_interval: 0.4\n")


@pytest.fixture(params=PLANES)
def mag(netns_factory, tmp_path, request) -> Iterator[tuple[ProxyTopology, Daemon]]:  # noqa: F811
    for topology in build_proxy_topology(netns_factory, str(tmp_path), "mph-", request.param):
        config = tmp_path / "px.yaml"
        config.write_text(CONFIG)
        yield topology, topology.start_daemon("", "-f", str(config), name="px")


def context() -> list[dict]:
    entries = []
    for family in Family:
        record = GroupRecord(RecordType.MODE_IS_EXCLUDE, ipaddress.ip_address(GROUP[family]), ())
        code, payload = rfc7411.encode_context(family, 3 if family is Family.IPV4 else 2, [record])
        entries.append({"family": family.name.lower(), "code": code, "payload": payload.hex()})
    return entries


def prepare(daemon: Daemon) -> dict:
    return daemon.request("binding", event="prepare", mn_id="mn1", tunnel_if="up0", context=context())


def attach(daemon: Daemon, **extra) -> dict:
    return daemon.request("binding", event="attach", mn_id="mn1", access_if="d1", tunnel_if="up0", **extra)


def streams(topo: ProxyTopology) -> list[PacedStream]:
    return [PacedStream(topo.sender(family), GROUP[family]) for family in Family]


def test_attach_delivers_the_buffer_then_live_data_once_and_in_order(mag) -> None:
    topo, daemon = mag
    receptions = {f: Reception(topo.join(topo.hosts[0], f, GROUP[f])) for f in Family}
    senders = streams(topo)
    with senders[0], senders[1]:
        reply = prepare(daemon)
        assert sorted(j["group"] for j in reply["joined"]) == sorted(GROUP.values())
        time.sleep(0.3)  # the outage: the stream runs, the MN is not served
        before = {f: list(r.drain()) for f, r in receptions.items()}
        sent_at_attach = {f: s.sent for f, s in zip(Family, senders)}
        result = attach(daemon)
        time.sleep(0.3)
    for family, reception in receptions.items():
        seqs = reception.drain(quiet_interval=0.2)
        assert before[family] == [], f"{family.name}: data reached the MN before its attach"
        assert seqs, f"{family.name}: nothing reached the MN after its attach"
        faults = Reception(None, seqs).faults()
        print(f"\n{family.name}: {len(seqs)} received, first {seqs[0]}, attach at {sent_at_attach[family]}, "
              f"{faults}, buffer {result['buffer']}")
        assert faults["lost"] == 0 and faults["duplicated"] == 0, (family.name, faults, seqs[:50])
        assert faults["reordered"] <= result["buffer"]["late"], "only packets sent after the commit come late"
        assert seqs[0] < sent_at_attach[family] - 150, "the buffered packets (~300 ms) were not delivered"
        assert seqs[-1] >= sent_at_attach[family] + 200, "live forwarding did not follow the flush"
    assert result["prepared"] is True and result["context"] == "prepared"
    assert result["buffer"]["marker"] == "none" and result["buffer"]["flushed"] >= 300


def test_forwarded_last_starts_the_flush_after_the_named_packet(mag) -> None:
    topo, daemon = mag
    receptions = {f: Reception(topo.join(topo.hosts[0], f, GROUP[f])) for f in Family}
    with topo.px.entered():
        tap = DataTap("up0")
    identities: dict[tuple[Family, int], bytes] = {}
    senders = streams(topo)
    with senders[0], senders[1]:
        prepare(daemon)
        time.sleep(0.3)
        for packet in tap.read_all():
            family = Family.IPV4 if packet[0] >> 4 == 4 else Family.IPV6
            header = 20 if family is Family.IPV4 else 40
            seq = SEQUENCE.unpack_from(packet, header + 8)[0]
            identities[(family, seq)] = packet_identity(packet)
        tap.close()
        marked = {f: max(seq for fam, seq in identities if fam is f) - 100 for f in Family}
        last = [{"family": f.name.lower(), "group": GROUP[f], "id": identities[(f, marked[f])].hex()}
                for f in Family]
        result = attach(daemon, forwarded_last=last)
        time.sleep(0.2)
    assert result["buffer"]["marker"] == "given" and result["buffer"]["unmarked"] == 0, result["buffer"]
    for family, reception in receptions.items():
        seqs = reception.drain(quiet_interval=0.2)
        assert seqs and seqs[0] == marked[family] + 1, (family.name, marked[family], seqs[:5])
        faults = Reception(None, seqs).faults()
        assert faults["lost"] == 0 and faults["duplicated"] == 0, faults
        assert faults["reordered"] <= result["buffer"]["late"], (faults, result["buffer"])


def test_an_overflowing_buffer_keeps_the_newest_and_counts_the_rest(mag) -> None:
    topo, daemon = mag
    receptions = {f: Reception(topo.join(topo.hosts[0], f, GROUP[f])) for f in Family}
    senders = streams(topo)
    with senders[0], senders[1]:
        prepare(daemon)
        time.sleep(0.8)  # twice the buffer's 0.4 s
        sent_at_attach = {f: s.sent for f, s in zip(Family, senders)}
        result = attach(daemon)
        time.sleep(0.2)
    assert result["buffer"]["overflow"] > 0, result["buffer"]
    for family, reception in receptions.items():
        seqs = reception.drain(quiet_interval=0.2)
        print(f"\n{family.name}: first {seqs[0]}, attach at {sent_at_attach[family]}, {result['buffer']}")
        assert seqs[0] >= sent_at_attach[family] - 480, "nothing older than the buffer's 0.4 s came"
        assert seqs[0] > 100, "the oldest packets fell out"
        assert Reception(None, seqs).faults()["lost"] == 0


def test_a_prepare_without_attach_is_undone(mag) -> None:
    topo, daemon = mag
    upstream = TimedCapture(topo.up, "u0")
    reply = prepare(daemon)
    assert daemon.request("instances")[0]["name"] == reply["instance"]
    for family in Family:
        wait_for(lambda f=family: [r for r in report_records(upstream.drain(), f)
                                   if r[2] == GROUP[f] and r[1] == 4], 3,
                 f"the prepared {family.name} join upstream")
    wait_for(lambda: daemon.request("instances") == [], 5, "the prepared instance removed after 1.5 s")
    for family in Family:  # TO_IN({}): the group left upstream
        wait_for(lambda f=family: [r for r in report_records(upstream.drain(), f)
                                   if r[2] == GROUP[f] and r[1] == 3], 3, f"the {family.name} leave upstream")
    upstream.close()
    assert "handover-prepare-undone mn=mn1 reason=expired" in daemon.log()


LMA = "fd09::100"


@pytest.fixture
def prepared_mags(netns_factory, tmp_path) -> Iterator[TwoMags]:  # noqa: F811
    settings = {"tunnel_for_lma": f'{{"{LMA}": up0}}'}
    yield from build_two_mags(netns_factory, tmp_path, "mpr-", settings, shared_source=True)


def shared_streams(topo: TwoMags) -> list[PacedStream]:
    """One numbered stream per family from br0: the same packets reach both MAGs."""
    return [PacedStream(topo.harness.sender(family, topo.up, "br0"), GROUP[family]) for family in Family]


def test_predictive_handover_between_two_mags_loses_nothing(prepared_mags) -> None:
    """mag1 pushes the context (naming the LMA), mag2 prepares; mag1's detach sends its markers;
    the MN's reception at mag1 then at mag2 is one stream: nothing lost, at most one packet twice."""
    topo = prepared_mags
    at_mag1 = {f: Reception(topo.harness.join(topo.mns["mag1"], f, GROUP[f])) for f in Family}
    at_mag2 = {f: Reception(topo.harness.join(topo.mns["mag2"], f, GROUP[f])) for f in Family}
    topo.attach("mag1", "mn1", lma=LMA)
    senders = shared_streams(topo)
    with senders[0], senders[1]:
        wait_for(lambda: all(r.drain() for r in at_mag1.values()), 5, "both streams at the MN on mag1")
        pushed = topo.daemons["mag1"].request("handover-prepare", mn_id="mn1", target="mag2")
        assert pushed["pushed"] == 2
        wait_for(lambda: "handover-prepared mn=mn1" in topo.daemons["mag2"].log(), 3, "mag2 prepared by the push")
        time.sleep(0.1)  # data reaches mag2 through its prepared join
        detached = topo.daemons["mag1"].request("binding", event="detach", mn_id="mn1")
        assert sorted(m["group"] for m in detached["forwarded_last"]) == sorted(GROUP.values())
        wait_for(lambda: "markers-received mn=mn1 peer=mag1" in topo.daemons["mag2"].log(), 3,
                 "mag1's markers at mag2")
        time.sleep(0.05)  # the L2 outage
        attached = topo.attach("mag2", "mn1", previous_mag="mag1")
        time.sleep(0.3)
    print(f"\nattach at mag2: {attached['buffer']}")
    assert attached["context"] == "prepared" and attached["buffer"]["marker"] == "peer"
    assert attached["buffer"]["unmarked"] == 0, "both markers were found in mag2's buffer"
    for family in Family:
        seqs = at_mag1[family].drain(0.05) + at_mag2[family].drain(0.2)
        faults = Reception(None, seqs).faults()
        print(f"{family.name}: {len(at_mag1[family].seqs)} at mag1, {len(at_mag2[family].seqs)} at mag2: {faults}")
        assert faults["lost"] == 0, (family.name, faults)
        assert faults["duplicated"] <= 1, "at most the packet in flight at mag1's detach comes twice"
        assert faults["reordered"] <= attached["buffer"]["late"], (family.name, faults, attached["buffer"])
