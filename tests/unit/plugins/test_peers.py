"""The MAG-to-MAG context channel: addresses, the pending store, the line protocol, a real TCP round trip."""

from __future__ import annotations

import ipaddress
import json
import pathlib
import subprocess
import sys

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mcproxy_pmip_plugins.pmipv6.peers import ContextStore, PeerAddress, PeerServerFactory

CONTEXT = [{"family": "ipv4", "code": 1, "payload": "00000001"}]


@pytest.mark.parametrize(("text", "host", "port"), [
    ("192.0.2.7", "192.0.2.7", 7411), ("192.0.2.7:9000", "192.0.2.7", 9000),
    ("fd00::2", "fd00::2", 7411), ("[fd00::2]:9000", "fd00::2", 9000),
])
def test_peer_address_forms(text, host, port) -> None:
    address = PeerAddress.parse(text)
    assert (str(address.host), address.port) == (host, port)


@pytest.mark.parametrize("text", ["mag2", "192.0.2.7:0", "[fd00::2]:70000"])
def test_bad_peer_addresses_are_refused(text) -> None:
    with pytest.raises(ValueError):
        PeerAddress.parse(text)


def test_store_hands_out_a_context_once_and_forgets_it_after_the_hold_interval() -> None:
    store = ContextStore(hold_interval=10)
    store.put("mn1", CONTEXT, now=0)
    store.put("mn2", CONTEXT, now=0)
    assert store.take("mn1", now=5) == CONTEXT
    assert store.take("mn1", now=5) is None
    assert store.take("mn2", now=10) is None
    assert len(store) == 0


def serve(allowed=("192.0.2.1",)):
    stored: dict = {}
    factory = PeerServerFactory({ipaddress.ip_address(a) for a in allowed}, stored.__setitem__, stored.get)
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
    if protocol is not None:
        protocol.makeConnection(transport)
    return factory, protocol, transport, stored


def replies(transport) -> list[dict]:
    return [json.loads(line) for line in transport.value().splitlines()]


def test_push_then_fetch_over_the_line_protocol() -> None:
    _, protocol, transport, stored = serve()
    protocol.dataReceived(json.dumps({"op": "push", "mn_id": "mn1", "context": CONTEXT}).encode() + b"\n")
    protocol.dataReceived(b'{"op": "fetch", "mn_id": "mn1"}\n{"op": "fetch", "mn_id": "mn9"}\n')
    assert stored == {"mn1": CONTEXT}
    assert replies(transport) == [{"ok": True}, {"ok": True, "context": CONTEXT},
                                  {"ok": False, "error": "unknown-mn"}]


@pytest.mark.parametrize("line", [b"not json", b"[]", b'{"op": "push", "mn_id": "m"}', b'{"op": "x", "mn_id": "m"}'])
def test_bad_requests_get_an_error_reply(line) -> None:
    _, protocol, transport, stored = serve()
    protocol.dataReceived(line + b"\n")
    (reply,) = replies(transport)
    assert reply["ok"] is False and reply["error"] == "bad-request"
    assert stored == {}


def test_connections_from_unconfigured_addresses_are_refused() -> None:
    _, protocol, _, _ = serve(allowed=("192.0.2.99",))
    assert protocol is None


def test_real_tcp_round_trip() -> None:
    script = pathlib.Path(__file__).with_name("peer_roundtrip.py")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["stored"] == {"mn1": [{"family": "ipv6", "code": 2, "payload": "00000001"}]}
    assert seen["fetched"] == seen["stored"]["mn1"]
    assert (seen["unknown_mn"], seen["unreachable"], seen["unknown_peer"]) == (
        "unknown-mn", "unreachable", "unknown-peer")
