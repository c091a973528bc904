"""The MAG-to-MAG context channel's server and parsers (peers.py): addresses, identity,
one request per connection, the bounds (connection cap, idle timeout, request size), an
answer to every malformed request, rate-limited refusal logs; then a real mutual-TLS round
trip on loopback (peer_roundtrip.py, in a subprocess with its own reactor).

Protocol tests run on StringTransports and a Clock; the TLS identity tests give the
server a transport whose peer certificate is a real one made by peer_pki.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import pathlib
import subprocess
import sys

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mcproxy_pmip.addresses import Family
from mcproxy_pmip_plugins.pmipv6 import peer_pki
from mcproxy_pmip_plugins.pmipv6.bindings import ContextEntry
from mcproxy_pmip_plugins.pmipv6.peer_tls import load_credentials
from mcproxy_pmip_plugins.pmipv6.peers import (
    ChannelLimits, PeerAddress, PeerServerFactory, decode_line, parse_request,
)
from mcproxy_pmip.plugin import RateLimitedLog

CONTEXT = [{"family": "ipv4", "code": 1, "payload": "00000001"}]
ENTRIES = (ContextEntry(Family.IPV4, 1, b"\x00\x00\x00\x01"),)
PEERS = {"mag2": PeerAddress(ipaddress.ip_address("192.0.2.2")),
         "mag3": PeerAddress(ipaddress.ip_address("192.0.2.3"))}


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


class Server:
    """A PeerServerFactory on a Clock, its handlers recording what reached them."""

    def __init__(self, credentials=None, limits=ChannelLimits(), push_error=None) -> None:
        self.clock = Clock()
        self.pushed: list[tuple] = []
        self.fetched: list[tuple] = []
        self.push_error = push_error
        self.factory = PeerServerFactory(PEERS, self._push, self._fetch, self.clock, credentials, limits)

    def _push(self, peer, mn_id, entries, lma=None):
        self.pushed.append((peer, mn_id, entries))
        return self.push_error

    def _fetch(self, peer, mn_id):
        self.fetched.append((peer, mn_id))
        return ENTRIES if mn_id == "mn1" else "unknown-mn"

    def connect(self, host="192.0.2.2", transport=None):
        """A plaintext connection from ``host`` (None if refused) and its transport."""
        address = IPv4Address("TCP", host, 40000)
        protocol = self.factory.buildProtocol(address)
        transport = transport or StringTransport(peerAddress=address)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport


def replies(transport) -> list[dict]:
    return [json.loads(line) for line in transport.value().splitlines()]


def line(request) -> bytes:
    return json.dumps(request).encode() + b"\n"


def test_push_and_fetch_reach_the_handlers_with_the_peer_identity() -> None:
    server = Server()
    protocol, transport = server.connect("192.0.2.3")
    protocol.dataReceived(line({"op": "push", "mn_id": "mn1", "context": CONTEXT}))
    assert replies(transport) == [{"ok": True}]
    assert server.pushed == [("mag3", "mn1", ENTRIES)]
    protocol, transport = server.connect("192.0.2.2")
    protocol.dataReceived(line({"op": "fetch", "mn_id": "mn1"}))
    assert replies(transport) == [{"ok": True, "context": CONTEXT}]
    assert server.fetched == [("mag2", "mn1")]


def test_handler_refusals_become_error_replies() -> None:
    server = Server(push_error="store-full")
    protocol, transport = server.connect()
    protocol.dataReceived(line({"op": "push", "mn_id": "mn1", "context": CONTEXT}))
    assert replies(transport)[0]["error"] == "store-full"
    protocol, transport = server.connect()
    protocol.dataReceived(line({"op": "fetch", "mn_id": "nobody"}))
    assert replies(transport)[0] == {"ok": False, "error": "unknown-mn", "message": "fetch of nobody refused"}


def test_one_request_per_connection_then_the_server_closes() -> None:
    server = Server()
    protocol, transport = server.connect()
    protocol.dataReceived(line({"op": "fetch", "mn_id": "mn1"}) + line({"op": "fetch", "mn_id": "mn1"}))
    protocol.dataReceived(line({"op": "fetch", "mn_id": "mn1"}))
    assert len(replies(transport)) == 1 and server.fetched == [("mag2", "mn1")]
    assert transport.disconnecting


DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_NUMBER = b'{"op": "push", "mn_id": "m", "context": [{"family": "ipv4", "code": ' + b"9" * 5000 + b"}]}"


@pytest.mark.parametrize(("request_line", "fragment"), [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (DEEP, "nested too deep"),
    (b'{"op": "fetch", "mn_id": ' + DEEP + b"}", "nested too deep"),
    (HUGE_NUMBER, "not JSON"),
    (b'{"op": "fetch", "mn_id": NaN}', "NaN is not JSON"),
    (b"[]", "need a JSON object"),
    (b'{"op": "drop", "mn_id": "m"}', "op must be push, fetch or forwarded"),
    (b'{"op": "fetch", "mn_id": 7}', "mn_id must be a string"),
    (b'{"op": "fetch", "mn_id": ""}', "mn_id must be a string"),
    (b'{"op": "fetch", "mn_id": "' + b"m" * 256 + b'"}', "mn_id must be a string"),
    (b'{"op": "fetch", "mn_id": "m", "x": 1}', "unknown field(s) ['x']"),
    (b'{"op": "push", "mn_id": "m"}', "context must be a list of objects"),
    (b'{"op": "push", "mn_id": "m", "context": [1]}', "context must be a list of objects"),
    (b'{"op": "push", "mn_id": "m", "context": [' + b",".join([b"{}"] * 9) + b"]}", "more than 8 entries"),
    (b'{"op": "push", "mn_id": "m", "context": [{"family": "ipx", "code": 1}]}', "family must be ipv4 or ipv6"),
    (b'{"op": "push", "mn_id": "m", "context": [{"family": "ipv4", "code": 256}]}', "code must be at most 255"),
    (b'{"op": "push", "mn_id": "m", "context": [{"family": "ipv4", "code": 1, "payload": "zz"}]}', "not hex"),
    (b'{"op": "push", "mn_id": "m", "context": [{"family": "ipv4", "code": "1"}]}', "must be an integer"),
])
def test_every_malformed_request_gets_an_error_reply_and_a_clean_close(request_line, fragment) -> None:
    server = Server()
    protocol, transport = server.connect()
    protocol.dataReceived(request_line + b"\n")
    (reply,) = replies(transport)
    assert (reply["ok"], reply["error"]) == (False, "bad-request")
    assert fragment in reply["message"], reply
    assert transport.disconnecting and server.pushed == [] and server.fetched == []
    protocol.connectionLost(None)
    assert server.factory.connections == 0
    healthy, transport = server.connect()
    healthy.dataReceived(line({"op": "fetch", "mn_id": "mn1"}))
    assert replies(transport)[0]["ok"] is True, "the server answers the next request"


def test_parsers_raise_only_bad_request() -> None:
    for text in (DEEP, HUGE_NUMBER, b"\x80", b'"\\ud800"', b"1e999999"):
        try:
            parse_request(text)
        except ValueError as exc:
            assert type(exc).__name__ == "BadRequest", text[:20]
    assert decode_line(b'{"a": 1}') == {"a": 1}


def test_a_handler_bug_is_answered_and_logged(caplog) -> None:
    server = Server()
    server.factory.on_fetch = lambda peer, mn_id: 1 / 0
    protocol, transport = server.connect()
    with caplog.at_level(logging.ERROR):
        protocol.dataReceived(line({"op": "fetch", "mn_id": "mn1"}))
    assert replies(transport)[0]["error"] == "internal-error"
    assert "peer_request_failed peer=mag2" in caplog.text


def test_a_request_over_the_size_cap_is_answered_too_long() -> None:
    server = Server(limits=ChannelLimits(max_request=2048))
    protocol, transport = server.connect()
    protocol.dataReceived(b"{" + b" " * 4096)
    (reply,) = replies(transport)
    assert reply["error"] == "too-long" and transport.disconnecting
    protocol.dataReceived(b" " * 100_000)
    assert len(protocol._buffer) == 0, "nothing is buffered after the answer"


def test_an_idle_connection_is_aborted_after_the_idle_interval() -> None:
    server = Server(limits=ChannelLimits(idle_interval=5))
    protocol, transport = server.connect()
    protocol.dataReceived(b'{"op": "fet')
    server.clock.advance(4.9)
    assert not transport.disconnecting
    protocol.dataReceived(b'c')  # trickling does not extend the deadline
    server.clock.advance(0.1)
    assert transport.disconnecting and transport.value() == b""
    assert server.factory.refusals.counts["idle-timeout"] == 1


def test_an_answered_connection_cancels_its_idle_timer() -> None:
    server = Server(limits=ChannelLimits(idle_interval=5))
    protocol, _ = server.connect()
    protocol.dataReceived(line({"op": "fetch", "mn_id": "mn1"}))
    assert server.clock.getDelayedCalls() == [] or all(
        "_flush" in repr(call.func) for call in server.clock.getDelayedCalls())


def test_connection_cap_and_address_allow_list() -> None:
    server = Server(limits=ChannelLimits(max_connections=2))
    first, _ = server.connect()
    second, _ = server.connect("192.0.2.3")
    assert first is not None and second is not None
    assert server.connect()[0] is None, "a third connection is over the cap"
    first.connectionLost(None)
    assert server.connect()[0] is not None, "a closed connection frees its slot"
    assert server.connect("192.0.2.99")[0] is None
    assert server.factory.refusals.counts == {"connection-cap": 1, "not-a-peer": 1}


def test_one_address_cannot_take_every_connection() -> None:
    server = Server(limits=ChannelLimits(max_connections=3, max_per_address=2))
    hogs = [server.connect("192.0.2.2")[0] for _ in range(3)]
    assert hogs[2] is None and server.factory.refusals.counts == {"address-cap": 1}
    assert server.connect("192.0.2.3")[0] is not None, "another peer still gets in"
    hogs[0].connectionLost(None)
    assert server.connect("192.0.2.2")[0] is not None


def test_refusals_are_logged_once_per_interval_with_a_summary(caplog) -> None:
    server = Server()
    with caplog.at_level(logging.WARNING):
        for _ in range(1000):
            assert server.connect("192.0.2.99")[0] is None
        server.clock.advance(60)
        assert server.connect("192.0.2.99")[0] is None
        server.clock.advance(60)
        server.clock.advance(60)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("peer_refused reason=not-a-peer address=192.0.2.99")
    assert lines[1:] == ["peer_refusals_suppressed reason=not-a-peer suppressed=999 interval=60",
                         "peer_refusals_suppressed reason=not-a-peer suppressed=1 interval=60"]
    assert server.factory.refusals.counts["not-a-peer"] == 1001
    assert server.clock.getDelayedCalls() == []


def test_rate_limited_log_close_cancels_its_timers() -> None:
    clock = Clock()
    limiter = RateLimitedLog(logging.getLogger("test"), clock, interval=10)
    limiter.event("a", "x")
    limiter.event("a", "x")
    limiter.close()
    assert clock.getDelayedCalls() == [] and limiter.counts["a"] == 2


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    """A CA with mag1, mag2, mag3 and a 'mag2' of a foreign CA (``other/``)."""
    root = tmp_path_factory.mktemp("pki")
    files = peer_pki.make_domain(root / "ours", ["mag1", "mag2", "mag3", "intruder"])
    files["foreign-mag2"] = peer_pki.make_domain(root / "other", ["mag2"])["mag2"]
    return files


class CertTransport(StringTransport):
    """A StringTransport presenting ``certificate`` as the TLS peer's (verified) certificate."""

    def __init__(self, certificate, **kwargs) -> None:
        super().__init__(**kwargs)
        self.certificate = certificate

    def getPeerCertificate(self):
        return self.certificate


def test_tls_identity_is_the_configured_peer_the_certificate_names(domain) -> None:
    mag1 = load_credentials(*domain["mag1"].values())
    server = Server(credentials=mag1)
    for name, expected in (("mag3", {"ok": True, "context": CONTEXT}), ("intruder", None)):
        presented = load_credentials(*domain[name].values()).own.original
        address = IPv4Address("TCP", "192.0.2.2", 40000)
        protocol = server.factory._tls.wrappedFactory.buildProtocol(address)
        transport = CertTransport(presented, peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(line({"op": "fetch", "mn_id": "mn1"}))
        (reply,) = replies(transport)
        if expected is None:
            assert reply["error"] == "unknown-peer"
        else:
            assert reply == expected
    assert server.fetched == [("mag3", "mn1")], "identity by certificate, not by source address"


def test_credentials_are_checked_when_loaded(domain, tmp_path) -> None:
    ours, foreign = domain["mag1"], domain["foreign-mag2"]
    assert load_credentials(*ours.values()).names == {"mag1"}
    with pytest.raises(ValueError, match="is not issued by the CA"):
        load_credentials(ours["tls_ca"], foreign["tls_cert"], foreign["tls_key"])
    with pytest.raises(ValueError, match="does not match tls_cert"):
        load_credentials(ours["tls_ca"], ours["tls_cert"], domain["mag2"]["tls_key"])
    with pytest.raises(ValueError, match="tls_key .*No such file"):
        load_credentials(ours["tls_ca"], ours["tls_cert"], str(tmp_path / "absent.key"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(ValueError, match="tls_ca .*not a PEM certificate"):
        load_credentials(str(garbage), ours["tls_cert"], ours["tls_key"])
    assert (pathlib.Path(ours["tls_key"]).stat().st_mode & 0o777) == 0o600


def test_real_mutual_tls_round_trip(tmp_path) -> None:
    script = pathlib.Path(__file__).with_name("peer_roundtrip.py")
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["stored"] == [["mag1", "mn1", [{"family": "ipv6", "code": 2, "payload": "00000001"}]]]
    assert seen["fetched"] == [{"family": "ipv6", "code": 2, "payload": "00000001"}]
    assert seen["fetched_by"] == "mag1"
    assert (seen["unknown_mn"], seen["unreachable"], seen["unknown_peer"]) == (
        "unknown-mn", "unreachable", "unknown-peer")
    assert seen["foreign_ca"] in ("tls-failed", "connection-lost"), seen
    assert seen["wrong_name_at_server"] == "unknown-peer", seen
    assert seen["wrong_server_name"] == "tls-failed", seen
    assert seen["plaintext_to_tls"] in ("connection-lost", "bad-reply", "timeout"), seen
    assert seen["refusals"].get("tls-failed", 0) >= 1, seen
    assert seen["connections_left"] == 0


OPENSSL_STEPS = """
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 825 -subj "/CN=PMIPv6 domain peer CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
name=mag1
openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
printf 'subjectAltName=DNS:%s\\nbasicConstraints=critical,CA:FALSE\\nextendedKeyUsage=serverAuth,clientAuth\\n' \
  "$name" > "$name.ext"
openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
  -extfile "$name.ext" -out "$name.pem"
"""


def test_certificates_made_with_the_documented_openssl_commands_load(tmp_path) -> None:
    if subprocess.run(["sh", "-c", "command -v openssl"], capture_output=True).returncode != 0:
        pytest.skip("no openssl command on this machine")
    doc = (pathlib.Path(__file__).parents[3] / "docs" / "peer-tls.md").read_text()
    assert "-addext \"keyUsage=critical,keyCertSign,cRLSign\" -out ca.pem" in doc
    subprocess.run(["sh", "-e", "-c", OPENSSL_STEPS], cwd=tmp_path, check=True, capture_output=True)
    credentials = load_credentials(str(tmp_path / "ca.pem"), str(tmp_path / "mag1.pem"), str(tmp_path / "mag1.key"))
    assert credentials.names == {"mag1"}
    assert credentials.server_options().getContext() is not None
