"""The MAG-to-MAG subscription context channel (RFC 7411 §3.3), for deployments whose
PMIPv6 signalling cannot carry the context.

Two modes: *predictive*, the old MAG pushes the MN's context to the target MAG
when told of the handover (control command ``handover-prepare``); *reactive*,
the new MAG fetches the context from the MN's previous MAG when the attach
names it (``previous_mag``). A push may name the MN's LMA (``lma``), so that the
target can prepare the handover (prepared.py); ``forwarded`` tells the target
which packet per group the MN got last from the sender (docs/handover.md).
transfer.py decides who may push and fetch what.
Both are one JSON line over mutual TLS (peer_tls.py), one request and one
reply per connection, then the server closes:

    {"op": "push", "mn_id": "mn1", "context": [{"family": "ipv6", "code": 2, "payload": "…"}],
     "lma": "2001:db8::1"}
    {"op": "fetch", "mn_id": "mn1"}
    {"op": "forwarded", "mn_id": "mn1", "last": [{"family": "ipv4", "group": "232.1.1.1", "id": "…"}]}
    reply: {"ok": true, ...} or {"ok": false, "error": "unknown-mn", "message": "…"}

The server is bounded: connections only from configured peers' addresses,
at most ``max_connections`` at once (``max_per_address`` from one address), a request must arrive whole within
``idle_interval`` of the connect and be at most ``max_request`` bytes; the
peer's identity is the configured peer its certificate names (or, with
``insecure_plaintext``, the peer configured at its source address). Every
request gets a reply, a malformed one too (bad JSON, nesting too deep,
numbers too long, wrong types, too long), and refusals are logged rate-limited
(``RateLimitedLog`` of the plugin API). The context entries are the control API's format
(docs/control.md), checked into ``ContextEntry`` tuples on arrival.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer
from twisted.internet.endpoints import (
    TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol, wrapClientTLS,
)
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory

from mcproxy_pmip.plugin import CommandError, RateLimitedLog, decode_json_line
from mcproxy_pmip_plugins.pmipv6.bindings import ContextEntry, parse_context, parse_markers
from mcproxy_pmip_plugins.pmipv6.peer_tls import PeerCredentials, peer_names

log = logging.getLogger(__name__)

DEFAULT_PEER_PORT = 7411
MAX_MESSAGE = 1 << 20
MAX_CONNECTIONS = 16
MAX_PER_ADDRESS = 4
IDLE_INTERVAL = 5.0
REQUEST_TIMEOUT = 2.0
MAX_MN_ID = 255
MAX_CONTEXT_ENTRIES = 8

Host = ipaddress.IPv4Address | ipaddress.IPv6Address
#: push handler: (peer, mn_id, entries, lma) -> None when stored, else an error code
PushHandler = Callable[[str, str, tuple[ContextEntry, ...], str | None], str | None]
#: fetch handler: (peer, mn_id) -> the entries, or an error code
FetchHandler = Callable[[str, str], tuple[ContextEntry, ...] | str]
#: (peer, mn_id, markers) -> None, or the refusal's error code
ForwardedHandler = Callable[[str, str, dict], str | None]


class PeerError(Exception):
    """A peer request that failed: ``code`` is a slug ("unknown-peer", "unknown-mn", "timeout", ...)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class BadRequest(ValueError):
    """A request the server answers with ``bad-request``."""


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where a peer MAG listens: an IP literal and a TCP port."""

    host: Host
    port: int = DEFAULT_PEER_PORT

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """``ADDR``, ``ADDR:PORT`` (IPv4) or ``[ADDR]:PORT`` / ``ADDR`` (IPv6)."""
        host, port = text, DEFAULT_PEER_PORT
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                port = int(rest.removeprefix(":"))
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        return cls(ipaddress.ip_address(host), port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.host.version == 6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """The server's bounds (docs/plugins.md, ``peer_*`` settings)."""

    max_connections: int = MAX_CONNECTIONS
    idle_interval: float = IDLE_INTERVAL
    max_request: int = MAX_MESSAGE
    max_per_address: int = MAX_PER_ADDRESS


def entries_json(entries: tuple[ContextEntry, ...]) -> list[dict[str, Any]]:
    """Context entries in the control API's form."""
    return [{"family": e.family.name.lower(), "code": e.code, "payload": e.payload.hex()} for e in entries]


def decode_line(line: bytes) -> Any:
    """JSON of one line; ``BadRequest`` for what ``decode_json_line`` refuses (too deep, NaN, ...)."""
    try:
        return decode_json_line(line)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


@dataclass(frozen=True, slots=True)
class PeerRequest:
    """One checked request: ``entries`` of a push, ``lma`` it may name, ``markers`` of a forwarded."""

    op: str
    mn_id: str
    entries: tuple[ContextEntry, ...] = ()
    lma: str | None = None
    markers: tuple = ()


_FIELDS = {"push": {"op", "mn_id", "context", "lma"}, "fetch": {"op", "mn_id"},
           "forwarded": {"op", "mn_id", "last"}}


def parse_request(line: bytes) -> PeerRequest:
    """The request of a line; ``BadRequest`` says what is wrong."""
    request = decode_line(line)
    if not isinstance(request, dict):
        raise BadRequest("need a JSON object")
    op, mn_id = request.get("op"), request.get("mn_id")
    if op not in _FIELDS:
        raise BadRequest("op must be push, fetch or forwarded")
    if not isinstance(mn_id, str) or not 0 < len(mn_id) <= MAX_MN_ID or not mn_id.isprintable() \
            or any(c.isspace() for c in mn_id):
        raise BadRequest(f"mn_id must be a string of 1 to {MAX_MN_ID} printable characters, no spaces")
    if set(request) - _FIELDS[op]:
        raise BadRequest(f"unknown field(s) {str(sorted(set(request) - _FIELDS[op]))[:100]}")
    if op == "fetch":
        return PeerRequest(op, mn_id)
    if op == "forwarded":
        last = request.get("last")
        if not isinstance(last, list) or not all(isinstance(e, dict) for e in last):
            raise BadRequest("last must be a list of objects")
        try:
            return PeerRequest(op, mn_id, markers=parse_markers(last))
        except CommandError as exc:
            raise BadRequest(exc.message) from None
    lma = request.get("lma")
    if lma is not None and (not isinstance(lma, str) or _host(lma) is None):
        raise BadRequest("lma must be an IP address")
    return PeerRequest(op, mn_id, checked_context(request.get("context")), lma)


def checked_context(context: Any) -> tuple[ContextEntry, ...]:
    """A context list of the control API's form, checked; ``BadRequest`` if it is not."""
    if not isinstance(context, list) or not all(isinstance(e, dict) for e in context):
        raise BadRequest("context must be a list of objects")
    if len(context) > MAX_CONTEXT_ENTRIES:
        raise BadRequest(f"context has more than {MAX_CONTEXT_ENTRIES} entries")
    try:
        return parse_context(context)
    except CommandError as exc:
        raise BadRequest(exc.message) from None


def _reply(ok: bool, **fields: Any) -> bytes:
    return json.dumps({"ok": ok, **fields}, separators=(",", ":")).encode()


def _error(code: str, message: str) -> bytes:
    return _reply(False, error=code, message=message)


class PeerServerProtocol(LineOnlyReceiver, TimeoutMixin):
    """One peer connection: one request line within the idle interval, one reply, close."""

    delimiter = b"\n"

    def __init__(self, factory: PeerServerFactory, address: str) -> None:
        self.factory = factory
        self.address = address
        self.MAX_LENGTH = factory.limits.max_request
        self.callLater = factory.clock.callLater
        self._answered = False

    def connectionMade(self) -> None:
        self.setTimeout(self.factory.limits.idle_interval)

    def dataReceived(self, data: bytes) -> None:
        if not self._answered:
            super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if not self._answered:
            self._answer(self.factory.answer(self.transport, self.address, line))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.factory.refused("too-long", self.address, f"request over {self.MAX_LENGTH} bytes")
        self._answer(_error("too-long", f"a request is at most {self.MAX_LENGTH} bytes"))

    def _answer(self, reply: bytes) -> None:
        self._answered = True
        self._buffer = b""
        self.setTimeout(None)
        self.sendLine(reply)
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        self._answered = True
        self.factory.refused("idle-timeout", self.address,
                             f"no whole request within {self.factory.limits.idle_interval:g} s")
        self.transport.abortConnection()

    def connectionLost(self, reason=None) -> None:
        self.setTimeout(None)
        if not self._answered and reason is not None and reason.check(SSL.Error):
            self.factory.refused("tls-failed", self.address, reason.getErrorMessage()[:200])
        self.factory.connection_closed(self.address)


class _ServerProtocols(Factory):
    """The plain protocols TLS wraps (``TLSMemoryBIOFactory`` builds from a factory)."""

    def __init__(self, server: PeerServerFactory) -> None:
        self.server = server

    def buildProtocol(self, addr):
        return PeerServerProtocol(self.server, addr.host)


class PeerServerFactory(Factory):
    """The peer server: gatekeeping at connect, identity and dispatch per request.

    ``peers`` maps peer names to addresses; connections from other addresses are
    refused before TLS. ``credentials`` None means plaintext (``insecure_plaintext``).
    """

    def __init__(self, peers: Mapping[str, PeerAddress], on_push: PushHandler, on_fetch: FetchHandler,
                 clock: Any, credentials: PeerCredentials | None, limits: ChannelLimits = ChannelLimits(),
                 refusals: RateLimitedLog | None = None, on_forwarded: ForwardedHandler | None = None) -> None:
        self.peers = frozenset(peers)
        self.on_forwarded = on_forwarded or (lambda _peer, _mn, _markers: "not-prepared")
        self._by_host: dict[Host, list[str]] = {}
        for name, address in peers.items():
            self._by_host.setdefault(address.host, []).append(name)
        self.on_push = on_push
        self.on_fetch = on_fetch
        self.clock = clock
        self.credentials = credentials
        self.limits = limits
        self.refusals = refusals or RateLimitedLog(log, clock, summary="peer_refusals")
        self.connections = 0
        self._per_host: dict[Host, int] = {}
        self._tls = (None if credentials is None
                     else TLSMemoryBIOFactory(credentials.server_options(), False, _ServerProtocols(self)))

    def buildProtocol(self, addr):
        host = _host(addr.host)
        if host not in self._by_host:
            self.refused("not-a-peer", addr.host, "not a configured peer's address")
            return None
        if self.connections >= self.limits.max_connections:
            self.refused("connection-cap", addr.host, f"{self.connections} connections open")
            return None
        if self._per_host.get(host, 0) >= self.limits.max_per_address:
            self.refused("address-cap", addr.host, f"{self._per_host[host]} connections open from it")
            return None
        self.connections += 1
        self._per_host[host] = self._per_host.get(host, 0) + 1
        if self._tls is None:
            return PeerServerProtocol(self, addr.host)
        return self._tls.buildProtocol(addr)

    def connection_closed(self, address: str) -> None:
        self.connections -= 1
        host = _host(address)
        self._per_host[host] -= 1
        if not self._per_host[host]:
            del self._per_host[host]

    def refused(self, reason: str, address: str, detail: str) -> None:
        self.refusals.event(reason, "peer_refused reason=%s address=%s detail=%s", reason, address, detail)

    def identify(self, transport, address: str) -> str | None:
        """The configured peer at the other end, or None."""
        if self.credentials is None:
            names = self._by_host.get(_host(address), [])
        else:
            names = sorted(peer_names(transport.getPeerCertificate(), self.peers))
        return names[0] if len(names) == 1 else None

    def answer(self, transport, address: str, line: bytes) -> bytes:
        """The reply line to one request; never raises."""
        peer = self.identify(transport, address)
        if peer is None:
            self.refused("unknown-peer", address, "the certificate names no configured peer")
            return _error("unknown-peer", "your certificate names no configured peer")
        try:
            request = parse_request(line)
            op, mn_id = request.op, request.mn_id
            if op == "push":
                error = self.on_push(peer, mn_id, request.entries, request.lma)
                return _reply(True) if error is None else _error(error, f"push of {mn_id} refused")
            if op == "forwarded":
                error = self.on_forwarded(peer, mn_id, dict(request.markers))
                return _reply(True) if error is None else _error(error, f"markers of {mn_id} refused")
            outcome = self.on_fetch(peer, mn_id)
            if isinstance(outcome, str):
                return _error(outcome, f"fetch of {mn_id} refused")
            return _reply(True, context=entries_json(outcome))
        except BadRequest as exc:
            self.refused("bad-request", address, f"peer={peer} {str(exc)[:200]}")
            return _error("bad-request", str(exc)[:200])
        except Exception:  # the reply and the server outlive a bug in a handler; it is logged
            log.exception("peer_request_failed peer=%s address=%s", peer, address)
            return _error("internal-error", "the request failed; see the server's log")


def _host(text: str) -> Host | None:
    try:
        host = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if host.version == 6 and host.ipv4_mapped is not None:
        return host.ipv4_mapped
    return host


class _OneRequest(LineOnlyReceiver):
    """Sends one request line and fires ``reply`` with the decoded answer."""

    delimiter = b"\n"
    MAX_LENGTH = 2 * MAX_MESSAGE

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.reply: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.sendLine(json.dumps(self.request, separators=(",", ":")).encode())

    def lineReceived(self, line: bytes) -> None:
        if not self.reply.called:
            try:
                self.reply.callback(decode_line(line))
            except BadRequest as exc:
                self.reply.errback(PeerError("bad-reply", f"the peer's reply is {exc}"))
        self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        if not self.reply.called:
            self.reply.errback(PeerError("bad-reply", f"the peer's reply is over {self.MAX_LENGTH} bytes"))
        self.transport.abortConnection()

    def connectionLost(self, reason=None) -> None:
        if self.reply.called:
            return
        if reason is not None and reason.check(SSL.Error, VerificationError):
            self.reply.errback(PeerError("tls-failed", f"TLS: {reason.getErrorMessage()[:200]}"))
        else:
            self.reply.errback(PeerError("connection-lost", "the peer closed without a reply "
                                         f"({reason.type.__name__ if reason is not None else '-'})"))


class PeerClient:
    """Requests to the peers named in ``peers`` (name → address), over TLS with ``credentials``."""

    def __init__(self, reactor, peers: Mapping[str, PeerAddress], timeout: float = REQUEST_TIMEOUT,
                 credentials: PeerCredentials | None = None) -> None:
        self.reactor = reactor
        self.peers = dict(peers)
        self.timeout = timeout
        self.credentials = credentials

    def _request(self, peer: str, request: dict[str, Any]) -> defer.Deferred:
        address = self.peers.get(peer)
        if address is None:
            return defer.fail(PeerError("unknown-peer", f"no peer MAG named {peer!r}"))
        endpoint_type = TCP6ClientEndpoint if address.host.version == 6 else TCP4ClientEndpoint
        endpoint = endpoint_type(self.reactor, str(address.host), address.port, timeout=self.timeout)
        if self.credentials is not None:
            endpoint = wrapClientTLS(self.credentials.client_options(peer), endpoint)
        protocol = _OneRequest(request)
        connecting = connectProtocol(endpoint, protocol)
        connecting.addErrback(lambda failure: protocol.reply.called or protocol.reply.errback(
            PeerError("unreachable", f"{peer} at {address}: {failure.getErrorMessage()}")))
        reply = protocol.reply
        reply.addTimeout(self.timeout, self.reactor,
                         onTimeoutCancel=lambda *_: _timed_out(protocol, peer))
        return reply.addCallback(_checked, peer)

    def push(self, peer: str, mn_id: str, context: list[dict[str, Any]], lma: str | None = None) -> defer.Deferred:
        """Predictive transfer: hand ``context`` to ``peer`` before the MN arrives there; ``lma``
        (the MN's LMA) lets the peer prepare the handover."""
        request = {"op": "push", "mn_id": mn_id, "context": context}
        if lma is not None:
            request["lma"] = lma
        return self._request(peer, request)

    def forwarded(self, peer: str, mn_id: str, last: list[dict[str, str]]) -> defer.Deferred:
        """Tell ``peer`` (the MN's next MAG) the last packet per group sent to the MN here."""
        return self._request(peer, {"op": "forwarded", "mn_id": mn_id, "last": last})

    def fetch(self, peer: str, mn_id: str) -> defer.Deferred:
        """Reactive transfer: ask ``peer`` (the MN's previous MAG) for its context; fires the
        checked ``ContextEntry`` tuple."""
        return self._request(peer, {"op": "fetch", "mn_id": mn_id}).addCallback(_context, peer)


def _timed_out(protocol: _OneRequest, peer: str):
    """The reply did not come in time: drop the connection (if any) and fail the request."""
    if protocol.transport is not None:
        protocol.transport.abortConnection()
    raise PeerError("timeout", f"{peer} did not answer")


def _context(reply: dict[str, Any], peer: str) -> tuple[ContextEntry, ...]:
    try:
        return checked_context(reply.get("context"))
    except BadRequest as exc:
        raise PeerError("bad-reply", f"{peer} sent no valid context: {exc}") from None


def _checked(reply: Any, peer: str) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise PeerError("bad-reply", f"{peer} answered {str(reply)[:100]}")
    if reply.get("ok") is not True:
        raise PeerError(str(reply.get("error", "refused"))[:64], f"{peer}: {str(reply.get('message', 'refused'))[:200]}")
    return reply
