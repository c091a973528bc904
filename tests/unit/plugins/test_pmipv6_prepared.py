"""Prepared handovers in the pmipv6 plugin over the real facade (MemoryProxy, task.Clock).

The packet taps need a kernel (tests/netns/test_prepared_handover.py); here
the facade's ``open_handover_buffer`` hands out a recording stand-in, and the
plugin's rules are checked: what is joined upstream and when it is left, the
expiry, the refusals, whose markers are taken, and the attach's order
(delivery, binding, commit, then release of the holding).
"""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.plugin import Arguments, CommandError
from mcproxy_pmip.wire import rfc7411
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from mcproxy_pmip_plugins.pmipv6 import Pmipv6Plugin
from tests.unit.plugins.real_facade import downstreams, upstream_reports

G4 = ipaddress.IPv4Address("239.1.1.1")
MARKER = [{"family": "ipv4", "group": str(G4), "id": "00" * 8}]


class StandInData:
    """What ``open_handover_buffer`` returns, without sockets: records the plugin's calls."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.closed = False
        self.buffer = type("Figures", (), {"buffered": 0, "overflow": 0, "__len__": lambda self: 0})()

    def deliver(self, access_if, markers, attach, commit, live=frozenset()):
        self.log.append(("deliver", access_if, markers, live))
        attach()
        self.log.append("attached")
        commit()
        self.log.append("committed")
        return {"flushed": 3, "late": 0, "skipped": 1, "overflow": 0, "unmarked": 0, "buffered": 4,
                "commit_ms": 0.1}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def plugin(facade):
    calls: list = []
    facade.open_handover_buffer = lambda *args: StandInData(calls)
    facade.open_forward_recorder = lambda *args: pytest.fail("no recording in these tests")
    plugin = Pmipv6Plugin()
    plugin.start(facade, {"prepare_interval": 2.0})
    plugin.calls = calls
    yield plugin
    plugin.stop()


def run(plugin, cmd, **arguments):
    return plugin.commands()[cmd](Arguments(arguments))


def context() -> list[dict]:
    code, payload = rfc7411.encode_context(Family.IPV4, 3, [GroupRecord(RecordType.MODE_IS_EXCLUDE, G4, ())])
    return [{"family": "ipv4", "code": code, "payload": payload.hex()}]


def prepare(plugin, **extra):
    return run(plugin, "binding", event="prepare", mn_id="mn1", tunnel_if="tun0", context=context(), **extra)


def test_prepare_joins_upstream_at_once_without_a_downstream(plugin, memory, facade) -> None:
    reply = prepare(plugin)
    assert reply == {"mn_id": "mn1", "event": "prepare", "instance": "pmip-tun0",
                     "joined": [{"family": "ipv4", "group": str(G4)}], "expires_in": 2.0}
    memory.reactor.advance(0)
    assert upstream_reports(memory, "tun0") >= 1, "the group is joined upstream at once"
    assert downstreams(memory) == {"pmip-tun0": set()}, "no access link yet"


def test_an_unattached_prepare_is_undone_and_its_instance_removed(plugin, memory) -> None:
    prepare(plugin)
    memory.reactor.advance(0)
    joined = upstream_reports(memory, "tun0")
    memory.reactor.advance(2.0)
    assert downstreams(memory) == {}, "the instance made for the prepare is gone"
    assert upstream_reports(memory, "tun0") > joined, "the group was left upstream"
    counts = {s.labels[0][1]: s.value for s in plugin.metrics()[-3].samples}
    assert counts["expired"] == 1 and counts["prepared"] == 1


def test_attach_binds_commits_then_releases_without_a_leave(plugin, memory) -> None:
    prepare(plugin)
    memory.reactor.advance(0)
    before = upstream_reports(memory, "tun0")
    result = run(plugin, "binding", event="attach", mn_id="mn1", access_if="acc1", tunnel_if="tun0",
                 forwarded_last=MARKER)
    memory.reactor.advance(1.0)
    assert result["context"] == "prepared" and result["prepared"] is True and result["records"] == 1
    assert result["buffer"]["marker"] == "given" and result["buffer"]["flushed"] == 3
    (delivered, access_if, markers, live), attached, committed = plugin.calls
    assert (delivered, access_if, attached, committed) == ("deliver", "acc1", "attached", "committed")
    assert markers == {(Family.IPV4, G4): bytes(8)} and live == frozenset()
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}
    reports_after = upstream_reports(memory, "tun0") - before
    assert reports_after <= 1, "at most the downstream's own answer: no leave and re-join"
    memory.reactor.advance(5.0)
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}, "no expiry after the attach"


def test_refusals_and_whose_markers_count(plugin) -> None:
    run(plugin, "binding", event="attach", mn_id="mn2", access_if="acc2", tunnel_if="tun0")
    with pytest.raises(CommandError) as bound:
        run(plugin, "binding", event="prepare", mn_id="mn2", tunnel_if="tun0", context=context())
    assert bound.value.code == "mn-bound"
    prepare(plugin, previous_mag="mag1")
    prepared = plugin._channel.prepared
    assert prepared.markers_received("mn1", {}, "mag3") is False, "only the named previous MAG's markers"
    assert prepared.markers_received("mn1", {}, "mag1") is True
    assert plugin._channel.markers_received("mag1", "mn9", {}) == "not-prepared"
    with pytest.raises(CommandError) as bad:
        run(plugin, "binding", event="attach", mn_id="mn1", access_if="acc1", tunnel_if="tun0",
            forwarded_last=[{"family": "ipv4", "group": "10.0.0.1", "id": "00" * 8}])
    assert bad.value.code == "bad-argument"
