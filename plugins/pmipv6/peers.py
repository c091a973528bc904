"""The MAG-to-MAG subscription context channel (RFC 7411 §3.3), for deployments whose
PMIPv6 signalling cannot carry the context.

Two modes: *predictive*, the old MAG pushes the MN's context to the target MAG
when told of the handover (control command ``handover-prepare``); the target
keeps it for ``hold_interval`` and uses it on the MN's attach. *Reactive*, the
new MAG fetches the context from the MN's previous MAG when the attach names
it (``previous_mag``). Both are JSON lines over TCP, one request and one reply
per connection:

    {"op": "push", "mn_id": "mn1", "context": [{"family": "ipv6", "code": 2, "payload": "…"}]}
    {"op": "fetch", "mn_id": "mn1"}
    reply: {"ok": true, ...} or {"ok": false, "error": "unknown-mn"}

Only configured peers may connect (by source address). The context entries are
the control API's format (docs/control.md), so they pass through unchanged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

log = logging.getLogger(__name__)

DEFAULT_PEER_PORT = 7411
MAX_MESSAGE = 1 << 20
REQUEST_TIMEOUT = 2.0
HOLD_INTERVAL = 30.0


class PeerError(Exception):
    """A peer request that failed: ``code`` is a slug ("unknown-peer", "unknown-mn", "timeout", ...)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where a peer MAG listens: an IP literal and a TCP port."""

    host: ipaddress.IPv4Address | ipaddress.IPv6Address
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


class ContextStore:
    """Contexts pushed by peers, waiting for their MN's attach (at most ``hold_interval``)."""

    def __init__(self, hold_interval: float = HOLD_INTERVAL) -> None:
        self.hold_interval = hold_interval
        self._pending: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def put(self, mn_id: str, context: list[dict[str, Any]], now: float) -> None:
        self._pending[mn_id] = (now + self.hold_interval, context)

    def take(self, mn_id: str, now: float) -> list[dict[str, Any]] | None:
        """The pushed context of ``mn_id`` if one arrived and has not expired; removes it."""
        for key in [k for k, (expires_at, _) in self._pending.items() if expires_at <= now]:
            del self._pending[key]
        entry = self._pending.pop(mn_id, None)
        return None if entry is None else entry[1]

    def __len__(self) -> int:
        return len(self._pending)


def _reply(ok: bool, **fields: Any) -> bytes:
    return json.dumps({"ok": ok, **fields}, separators=(",", ":")).encode()


class PeerServerProtocol(LineOnlyReceiver):
    """Answers one peer request per line: ``push`` stores, ``fetch`` exports."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_MESSAGE

    def lineReceived(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("mn_id"), str):
                raise ValueError("need an object with a string mn_id")
            op = request.get("op")
            if op == "push":
                context = request.get("context")
                if not isinstance(context, list) or not all(isinstance(e, dict) for e in context):
                    raise ValueError("push needs a context list")
                self.factory.on_push(request["mn_id"], context)
                self.sendLine(_reply(True))
            elif op == "fetch":
                context = self.factory.on_fetch(request["mn_id"])
                if context is None:
                    self.sendLine(_reply(False, error="unknown-mn"))
                else:
                    self.sendLine(_reply(True, context=context))
            else:
                raise ValueError(f"unknown op {op!r}")
        except ValueError as exc:
            log.info("peer_request_refused peer=%s error=%s", self.transport.getPeer(), exc)
            self.sendLine(_reply(False, error="bad-request", message=str(exc)))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.loseConnection()


class PeerServerFactory(Factory):
    """Accepts connections only from ``allowed`` addresses."""

    protocol = PeerServerProtocol

    def __init__(self, allowed: set[ipaddress.IPv4Address | ipaddress.IPv6Address],
                 on_push: Callable[[str, list[dict[str, Any]]], None],
                 on_fetch: Callable[[str], list[dict[str, Any]] | None]) -> None:
        self.allowed = allowed
        self.on_push = on_push
        self.on_fetch = on_fetch

    def buildProtocol(self, addr):
        host = ipaddress.ip_address(addr.host.split("%")[0])
        if host.version == 6 and host.ipv4_mapped is not None:
            host = host.ipv4_mapped
        if host not in self.allowed:
            log.warning("peer_refused address=%s reason=not a configured peer", addr.host)
            return None
        return super().buildProtocol(addr)


class _OneRequest(LineOnlyReceiver):
    """Sends one request line and fires ``reply`` with the decoded answer."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_MESSAGE

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.reply: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.sendLine(json.dumps(self.request, separators=(",", ":")).encode())

    def lineReceived(self, line: bytes) -> None:
        if not self.reply.called:
            try:
                self.reply.callback(json.loads(line))
            except ValueError:
                self.reply.errback(PeerError("bad-reply", "the peer's reply is not JSON"))
        self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        if not self.reply.called:
            self.reply.errback(PeerError("connection-lost", "the peer closed without a reply"))


class PeerClient:
    """Requests to the peers named in ``peers`` (name → address)."""

    def __init__(self, reactor, peers: Mapping[str, PeerAddress], timeout: float = REQUEST_TIMEOUT) -> None:
        self.reactor = reactor
        self.peers = dict(peers)
        self.timeout = timeout

    def _request(self, peer: str, request: dict[str, Any]) -> defer.Deferred:
        address = self.peers.get(peer)
        if address is None:
            return defer.fail(PeerError("unknown-peer", f"no peer MAG named {peer!r}"))
        endpoint_type = TCP6ClientEndpoint if address.host.version == 6 else TCP4ClientEndpoint
        endpoint = endpoint_type(self.reactor, str(address.host), address.port, timeout=self.timeout)
        protocol = _OneRequest(request)
        connecting = connectProtocol(endpoint, protocol)
        connecting.addErrback(lambda failure: protocol.reply.called or protocol.reply.errback(
            PeerError("unreachable", f"{peer} at {address}: {failure.getErrorMessage()}")))
        reply = protocol.reply
        reply.addTimeout(self.timeout, self.reactor,
                         onTimeoutCancel=lambda *_: _timed_out(protocol, peer))
        return reply.addCallback(_checked, peer)

    def push(self, peer: str, mn_id: str, context: list[dict[str, Any]]) -> defer.Deferred:
        """Predictive transfer: hand ``context`` to ``peer`` before the MN arrives there."""
        return self._request(peer, {"op": "push", "mn_id": mn_id, "context": context})

    def fetch(self, peer: str, mn_id: str) -> defer.Deferred:
        """Reactive transfer: ask ``peer`` (the MN's previous MAG) for its context."""
        return self._request(peer, {"op": "fetch", "mn_id": mn_id}).addCallback(_context, peer)


def _timed_out(protocol: _OneRequest, peer: str):
    """The reply did not come in time: drop the connection (if any) and fail the request."""
    if protocol.transport is not None:
        protocol.transport.abortConnection()
    raise PeerError("timeout", f"{peer} did not answer")


def _context(reply: dict[str, Any], peer: str) -> list[dict[str, Any]]:
    context = reply.get("context")
    if not isinstance(context, list) or not all(isinstance(e, dict) for e in context):
        raise PeerError("bad-reply", f"{peer} sent no context list")
    return context


def _checked(reply: Any, peer: str) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise PeerError("bad-reply", f"{peer} answered {reply!r}")
    if not reply.get("ok"):
        raise PeerError(str(reply.get("error", "refused")), f"{peer}: {reply.get('message', 'refused')}")
    return reply
