"""The pmipv6 context channel wired into the plugin (RFC 7411 §3.3): settings, handover-prepare,
pushed and fetched contexts at attach, the peer side over the real line protocol.

The facade is the real one (ProxyApi over a MemoryProxy, real_facade.py) on
the proxy's Clock; its reactor a MemoryReactor (the server factory is taken
from its listenTCP); peer requests go to a fake client whose Deferreds the
tests fire. transfer_roundtrip.py does the same over real TCP with mutual TLS.
The in-memory MAG runs its channel in plaintext (``insecure_plaintext``), so a
peer's identity is the peer configured at its source address.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor, StringTransport

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip.plugin import Arguments, CommandError
from mcproxy_pmip.wire import rfc7411
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from mcproxy_pmip_plugins.pmipv6 import Pmipv6Plugin, parse_settings
from mcproxy_pmip_plugins.pmipv6.bindings import parse_context
from mcproxy_pmip_plugins.pmipv6.context_store import HOLD_INTERVAL
from mcproxy_pmip_plugins.pmipv6.peers import PeerAddress, PeerError
from tests.unit.plugins.real_facade import downstreams, upstream_reports

G6 = ipaddress.IPv6Address("ff3e::8000:1")
S6 = ipaddress.IPv6Address("2001:db8::1")
G4 = ipaddress.IPv4Address("239.1.1.1")
RECORDS = {Family.IPV6: (2, (GroupRecord(RecordType.MODE_IS_INCLUDE, G6, (S6,)),)),
           Family.IPV4: (3, (GroupRecord(RecordType.MODE_IS_EXCLUDE, G4, ()),))}
SETTINGS = {"name": "mag1", "listen": "[fd09::1]:7411", "insecure_plaintext": True,
            "peers": {"mag2": "[fd09::2]:7411", "mag3": "192.0.2.3"}}


def context_entries() -> list[dict]:
    entries = []
    for family, (version, records) in RECORDS.items():
        code, payload = rfc7411.encode_context(family, version, records)
        entries.append({"family": family.name.lower(), "code": code, "payload": payload.hex()})
    return entries


class FakePeerClient:
    """Records every request; each returns a Deferred the test fires (``pending``)."""

    def __init__(self, reactor, peers, timeout=None, credentials=None) -> None:
        self.peers = dict(peers)
        self.credentials = credentials
        self.requests: list[tuple] = []
        self.pending: list[defer.Deferred] = []

    def _request(self, *request) -> defer.Deferred:
        self.requests.append(request)
        self.pending.append(defer.Deferred())
        return self.pending[-1]

    def push(self, peer, mn_id, context, lma=None):
        return self._request("push", peer, mn_id, context)

    def forwarded(self, peer, mn_id, last):
        return self._request("forwarded", peer, mn_id, last)

    def fetch(self, peer, mn_id):
        return self._request("fetch", peer, mn_id)


class FakeClientPlugin(Pmipv6Plugin):
    """The plugin with its peer requests going to a ``FakePeerClient`` (``.client``)."""

    def client_type(self, reactor, peers, timeout=None, credentials=None) -> FakePeerClient:
        self.client = FakePeerClient(reactor, peers, timeout, credentials)
        return self.client


@pytest.fixture
def mag(facade):
    facade.reactor = MemoryReactor()  # listeners and connections; the clock stays the proxy's
    plugin = FakeClientPlugin()
    plugin.start(facade, SETTINGS)
    yield plugin
    plugin.stop()


def run(plugin, cmd, **arguments):
    return plugin.commands()[cmd](Arguments(arguments))


def attach(plugin, mn_id="mn1", **extra):
    return run(plugin, "binding", event="attach", mn_id=mn_id, access_if="acc1", tunnel_if="tun0", **extra)


def client(plugin) -> FakePeerClient:
    return plugin.client


def peer_line(facade, request: dict | bytes, peer: str = "fd09::2") -> dict:
    """One request through the plugin's own server protocol, as peer ``peer`` (its address) sends it."""
    (_port, factory, _backlog, interface), = facade.reactor.tcpServers
    assert interface == "fd09::1"
    address = IPv6Address("TCP", peer, 40000)
    protocol = factory.buildProtocol(address)
    assert protocol is not None, f"{peer} refused"
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    protocol.dataReceived((request if isinstance(request, bytes) else json.dumps(request).encode()) + b"\n")
    assert transport.disconnecting, "the server closes after its one reply"
    protocol.connectionLost(None)
    return json.loads(transport.value())


def imported(facade) -> dict:
    """The records held on acc1 per family, as (version, records)."""
    return {family: (version, records) for family, version, records in facade.export_records("pmip-tun0", "acc1")}


def result_of(d: defer.Deferred):
    outcome = []
    d.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    return outcome[0]


# -- settings


def test_channel_settings_are_parsed() -> None:
    settings = parse_settings(SETTINGS)
    assert settings.name == "mag1"
    assert settings.listen == PeerAddress(ipaddress.ip_address("fd09::1"), 7411)
    assert settings.peers == {"mag2": PeerAddress(ipaddress.ip_address("fd09::2")),
                              "mag3": PeerAddress(ipaddress.ip_address("192.0.2.3"))}
    assert parse_settings({}).listen is None and parse_settings({}).peers == {}


def test_every_channel_setting_problem_is_listed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"name": "mag1", "listen": "0.0.0.0:99999",
                        "peers": {"mag1": "192.0.2.1", "mag2": "mag2.example", "mag3": 7}})
    messages = [p.message for p in info.value.problems]
    assert any(m.startswith("listen '0.0.0.0:99999'") for m in messages), messages
    assert any(m.startswith("peers.mag2 'mag2.example'") for m in messages), messages
    assert any(m.startswith("peers.mag3 must be") for m in messages), messages
    assert "peers lists this MAG's own name 'mag1'" in messages
    assert all(p.file == "plugin pmipv6" for p in info.value.problems)


@pytest.mark.parametrize(("settings", "message"), [
    ({"listen": "192.0.2.1"}, "listen without peers: only configured peers may connect"),
    ({"peers": ["192.0.2.1"]}, "peers must map peer MAG names to addresses"),
    ({"name": ""}, "name must be this MAG's name"),
])
def test_channel_setting_shapes_are_checked(settings, message) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(settings)
    assert [p.message for p in info.value.problems] == [message]


def test_a_listen_address_in_use_is_a_config_error(facade) -> None:
    class BusyReactor(MemoryReactor):
        def listenTCP(self, port, factory, backlog=50, interface=""):
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))

    facade.reactor = BusyReactor()
    with pytest.raises(ConfigError, match=r"listen \[fd09::1\]:7411: .*Address already in use"):
        FakeClientPlugin().start(facade, SETTINGS)


def test_no_listen_no_server(facade) -> None:
    facade.reactor = MemoryReactor()
    plugin = FakeClientPlugin()
    plugin.start(facade, {"peers": {"mag2": "192.0.2.2"}, "insecure_plaintext": True})
    assert facade.reactor.tcpServers == []
    assert plugin.stop() is None


# -- handover-prepare (old MAG)


def test_handover_prepare_pushes_the_exported_context(mag, facade) -> None:
    attach(mag, context=context_entries())
    replying = run(mag, "handover-prepare", mn_id="mn1", target="mag2")
    (request,) = client(mag).requests
    assert request[:3] == ("push", "mag2", "mn1")
    assert sorted(e["code"] for e in request[3]) == [rfc7411.IGMPV3_PAYLOAD, rfc7411.MLDV2_PAYLOAD]
    client(mag).pending[0].callback({"ok": True})
    assert result_of(replying) == {"mn_id": "mn1", "target": "mag2", "pushed": 2}


def test_handover_prepare_refuses_unknown_peer_and_mn_before_pushing(mag) -> None:
    attach(mag)
    for target, mn_id, code in (("mag9", "mn1", "unknown-peer"), ("mag2", "nobody", "unknown-mn")):
        with pytest.raises(CommandError) as info:
            run(mag, "handover-prepare", mn_id=mn_id, target=target)
        assert info.value.code == code
    assert client(mag).requests == []


@pytest.mark.parametrize(("peer_code", "code"), [
    ("unreachable", "peer-unreachable"), ("timeout", "peer-timeout"),
    ("connection-lost", "peer-unreachable"), ("bad-request", "peer-error"),
])
def test_handover_prepare_failures_name_the_peer_problem(mag, peer_code, code) -> None:
    attach(mag)
    replying = run(mag, "handover-prepare", mn_id="mn1", target="mag2")
    client(mag).pending[0].errback(PeerError(peer_code, "mag2"))
    failure = result_of(replying)
    assert isinstance(failure.value, CommandError) and failure.value.code == code


# -- attach at the new MAG


def test_a_pushed_context_is_imported_at_attach(mag, memory, facade) -> None:
    assert peer_line(facade, {"op": "push", "mn_id": "mn1", "context": context_entries()}) == {"ok": True}
    result = attach(mag, previous_mag="mag2")
    assert (result["context"], result["records"], result["context_records"]) == ("pushed", 2, 2)
    assert client(mag).requests == [], "a context its previous MAG pushed is not fetched again"
    assert imported(facade) == RECORDS
    assert upstream_reports(memory, "tun0") == 2, "one report per family leaves at once"
    again = run(mag, "binding", event="attach", mn_id="mn2", access_if="acc2", tunnel_if="tun0")
    assert again["context"] == "none", "a pushed context is used once, by its own MN"


def test_a_pushed_context_expires_after_the_hold_interval(mag, memory, facade) -> None:
    peer_line(facade, {"op": "push", "mn_id": "mn1", "context": context_entries()})
    assert len(mag._channel._pushed) == 1
    facade.clock.advance(HOLD_INTERVAL)
    assert len(mag._channel._pushed) == 0, "expired on the clock, without anyone asking"
    assert attach(mag)["context"] == "none"
    assert imported(facade) == {} and upstream_reports(memory, "tun0") == 0


def test_a_bad_pushed_context_does_not_stop_the_attach(mag, memory, facade) -> None:
    peer_line(facade, {"op": "push", "mn_id": "mn1",
                       "context": [{"family": "ipv4", "code": 9, "payload": "00"}]})
    result = attach(mag, previous_mag="mag2")
    assert (result["context"], result["reason"], result["changed"]) == ("unavailable", "bad-context", True)
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}


def test_a_context_given_with_the_event_wins(mag, facade) -> None:
    peer_line(facade, {"op": "push", "mn_id": "mn1", "context": []})
    result = attach(mag, context=context_entries(), previous_mag="mag2")
    assert (result["context"], result["records"]) == ("given", 2)
    assert client(mag).requests == [] and imported(facade) == RECORDS


def test_reactive_fetch_runs_after_the_attach_and_imports_the_context(mag, memory, facade) -> None:
    replying = attach(mag, previous_mag="mag2")
    assert client(mag).requests == [("fetch", "mag2", "mn1")]
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}, "the attach waited for the fetch"
    assert len(memory.sent_queries(Family.IPV6, "acc1")) == 1, "the General Query must not wait for the fetch"
    assert not replying.called
    client(mag).pending[0].callback(parse_context(context_entries()))
    result = result_of(replying)
    assert (result["context"], result["records"], result["context_records"]) == ("fetched", 2, 2)
    assert imported(facade) == RECORDS


@pytest.mark.parametrize(("peer_code", "reason"), [
    ("unreachable", "peer-unreachable"), ("timeout", "peer-timeout"), ("unknown-mn", "unknown-mn"),
])
def test_a_failed_fetch_keeps_the_binding(mag, memory, peer_code, reason) -> None:
    replying = attach(mag, previous_mag="mag2")
    client(mag).pending[0].errback(PeerError(peer_code, "mag2"))
    result = result_of(replying)
    assert (result["context"], result["reason"], result["records"]) == ("unavailable", reason, 0)
    assert [b["mn_id"] for b in run(mag, "bindings")] == ["mn1"]
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}


def test_an_unknown_previous_mag_attaches_without_context(mag, memory) -> None:
    result = attach(mag, previous_mag="mag9")
    assert (result["context"], result["reason"]) == ("unavailable", "unknown-peer")
    assert client(mag).requests == [] and downstreams(memory) == {"pmip-tun0": {"acc1"}}


def test_a_fetch_answered_after_the_mn_left_imports_nothing(mag, memory) -> None:
    replying = attach(mag, previous_mag="mag2")
    run(mag, "binding", event="detach", mn_id="mn1")
    client(mag).pending[0].callback(parse_context(context_entries()))
    assert result_of(replying)["reason"] == "binding-changed"
    assert memory.proxy.instances == {} and upstream_reports(memory, "tun0") == 0


def test_a_fetch_answered_after_stop_imports_nothing(memory, facade) -> None:
    facade.reactor = MemoryReactor()
    plugin = FakeClientPlugin()
    plugin.start(facade, SETTINGS)
    replying = attach(plugin, previous_mag="mag2")
    plugin.stop()
    client(plugin).pending[0].callback(parse_context(context_entries()))
    assert result_of(replying)["reason"] == "stopped"
    assert imported(facade) == {} and upstream_reports(memory, "tun0") == 0


# -- serving peers (old MAG)


def test_fetch_serves_departed_mns_only(mag, facade) -> None:
    attach(mag, context=context_entries())
    assert peer_line(facade, {"op": "fetch", "mn_id": "nobody"})["error"] == "unknown-mn"
    assert peer_line(facade, {"op": "fetch", "mn_id": "mn1"})["error"] == "mn-still-bound"
    exported = run(mag, "context-export", mn_id="mn1")["context"]
    run(mag, "binding", event="detach", mn_id="mn1")
    assert peer_line(facade, {"op": "fetch", "mn_id": "mn1"})["context"] == exported
    assert peer_line(facade, {"op": "fetch", "mn_id": "mn1"}, peer="::ffff:192.0.2.3")["context"] == exported, \
        "with no next MAG known, the first asker does not take the context from the others"


def test_a_departed_context_is_kept_only_for_the_hold_interval(mag, facade) -> None:
    attach(mag, context=context_entries())
    run(mag, "binding", event="refresh", mn_id="mn1", lifetime=0)
    facade.clock.advance(HOLD_INTERVAL)
    assert peer_line(facade, {"op": "fetch", "mn_id": "mn1"})["error"] == "unknown-mn"


def test_only_configured_peers_may_connect(mag, facade) -> None:
    (_port, factory, _backlog, _interface), = facade.reactor.tcpServers
    assert factory.buildProtocol(IPv6Address("TCP", "fd09::2", 1)) is not None
    assert factory.buildProtocol(IPv6Address("TCP", "::ffff:192.0.2.3", 1)) is not None
    assert factory.buildProtocol(IPv6Address("TCP", "fd09::99", 1)) is None


def test_two_plugins_over_real_mutual_tls(tmp_path) -> None:
    completed = subprocess.run([sys.executable, "-m", "tests.unit.plugins.transfer_roundtrip", str(tmp_path)],
                               capture_output=True, text=True, timeout=30, check=False,
                               cwd=Path(__file__).parents[3])
    assert completed.returncode == 0, completed.stderr[-3000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["prepare"] == {"mn_id": "mn1", "target": "mag2", "pushed": 2}
    assert (seen["predictive"]["context"], seen["predictive"]["records"]) == ("pushed", 2)
    assert (seen["reactive"]["context"], seen["reactive"]["records"]) == ("fetched", 2)
    assert seen["unreachable"] == "peer-unreachable"
    assert seen["imports_at_mag2"] == 4
    assert seen["stopped"] is True
