"""Subscription context transfer between MAGs over the peer channel (RFC 7411 §3.3).

Glue between the binding table (bindings.py) and the TCP channel (peers.py):

- ``prepare(mn_id, target)`` (command ``handover-prepare`` on the old MAG):
  the MN's context is exported and pushed to the target MAG (predictive).
- ``handle(event)``: binding events. An attach without ``context`` first uses
  a context a peer pushed for the MN; else, when it names ``previous_mag``,
  the attach is done at once (the General Query does not wait) and the context
  is fetched from that peer and imported afterwards (reactive). A detach
  keeps the departing MN's context for the hold interval, so a new MAG asking
  after the old one processed the detach still gets it.
- ``push_received`` / ``fetch_requested``: the server side for peers.

An attach's result gains ``context`` ("given", "pushed", "fetched", "none" or
"unavailable" with a ``reason``) and ``records`` (records imported from it).
A failed transfer never undoes the attach.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from twisted.internet import defer

from mcproxy_pmip.plugin import CommandError
from mcproxy_pmip_plugins.pmipv6.bindings import (
    BindingEvent, BindingTable, MobileNodeAttached, MobileNodeDetached, parse_context,
)
from mcproxy_pmip_plugins.pmipv6.peers import ContextStore, PeerClient, PeerError

log = logging.getLogger(__name__)

UNKNOWN_PEER = "unknown-peer"
#: PeerError codes as the control API reports them; any other becomes "peer-error".
PEER_ERROR_CODES = {"unknown-peer": UNKNOWN_PEER, "unreachable": "peer-unreachable",
                    "timeout": "peer-timeout", "connection-lost": "peer-unreachable"}


def _departing(event: BindingEvent) -> bool:
    return isinstance(event, MobileNodeDetached) or getattr(event, "lifetime", None) == 0


class ContextChannel:
    """One MAG's end of the context channel: the pushed contexts, the departed ones, the client."""

    def __init__(self, table: BindingTable, clock: Any, client: PeerClient,
                 pushed: ContextStore, departed: ContextStore) -> None:
        self._table = table
        self._clock = clock
        self._client = client
        self._pushed = pushed
        self._departed = departed
        self._closed = False

    def close(self) -> None:
        """Transfers still under way end as "unavailable" without touching the table."""
        self._closed = True

    # -- the control side

    def prepare(self, mn_id: str, target: str) -> defer.Deferred:
        """Push the MN's context to ``target``; fires ``{mn_id, target, pushed}``."""
        if target not in self._client.peers:
            raise CommandError(UNKNOWN_PEER, f"no peer MAG named {target!r}")
        entries = self._table.export_context(mn_id)["context"]
        log.info("context-push mn=%s target=%s entries=%d", mn_id, target, len(entries))
        pushing = self._client.push(target, mn_id, entries)
        pushing.addCallback(lambda _reply: {"mn_id": mn_id, "target": target, "pushed": len(entries)})
        return pushing.addErrback(_command_error, f"push of {mn_id}'s context to {target}")

    def handle(self, event: BindingEvent) -> dict[str, Any] | defer.Deferred:
        """Apply a binding event with the transfers it implies (see the module docstring)."""
        if _departing(event) and event.mn_id in self._table:
            self._departed.put(event.mn_id, self._table.export_context(event.mn_id)["context"],
                               self._clock.seconds())
        if not isinstance(event, MobileNodeAttached) or event.lifetime == 0:
            return self._table.handle(event)
        if event.context:
            result = self._table.handle(event)
            return {**result, "context": "given", "records": result["context_records"]}
        pushed = self._pushed.take(event.mn_id, self._clock.seconds())
        if pushed is not None:
            return self._attach_pushed(event, pushed)
        result = self._table.handle(event)
        if event.previous_mag is None:
            return {**result, "context": "none", "records": 0}
        if event.previous_mag not in self._client.peers:
            return _unavailable(result, UNKNOWN_PEER)
        fetching = self._client.fetch(event.previous_mag, event.mn_id)
        fetching.addCallback(self._import_fetched, event, result)
        return fetching.addErrback(self._fetch_failed, event, result)

    def _attach_pushed(self, event: MobileNodeAttached, pushed: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            result = self._table.handle(dataclasses.replace(event, context=parse_context(pushed)))
        except CommandError as exc:
            if exc.code not in ("bad-argument", "bad-context"):
                raise
            log.warning("context-refused mn=%s origin=pushed error=%s", event.mn_id, exc.message)
            return _unavailable(self._table.handle(event), exc.code)
        log.info("context-used mn=%s origin=pushed records=%d", event.mn_id, result["context_records"])
        return {**result, "context": "pushed", "records": result["context_records"]}

    def _import_fetched(self, entries: list[dict[str, Any]], event: MobileNodeAttached,
                        result: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            return _unavailable(result, "stopped")
        if self._table.binding_links(event.mn_id) != (event.access_if, event.tunnel_if):
            return _unavailable(result, "binding-changed")
        try:
            records = self._table.import_context(event.mn_id, parse_context(entries))
        except CommandError as exc:
            log.warning("context-refused mn=%s origin=%s error=%s", event.mn_id, event.previous_mag, exc)
            return _unavailable(result, exc.code)
        log.info("context-used mn=%s origin=fetched peer=%s records=%d", event.mn_id,
                 event.previous_mag, records)
        return {**result, "context": "fetched", "records": records,
                "context_records": result["context_records"] + records}

    def _fetch_failed(self, failure, event: MobileNodeAttached, result: dict[str, Any]) -> dict[str, Any]:
        failure.trap(PeerError)
        log.warning("context-fetch-failed mn=%s peer=%s error=%s", event.mn_id, event.previous_mag,
                    failure.value)
        return _unavailable(result, PEER_ERROR_CODES.get(failure.value.code, failure.value.code))

    # -- the peer side

    def push_received(self, mn_id: str, context: list[dict[str, Any]]) -> None:
        log.info("context-pushed mn=%s entries=%d", mn_id, len(context))
        self._pushed.put(mn_id, context, self._clock.seconds())

    def fetch_requested(self, mn_id: str) -> list[dict[str, Any]] | None:
        """The context of a bound MN, or of one that left within the hold interval; None if neither."""
        if mn_id in self._table:
            return self._table.export_context(mn_id)["context"]
        return self._departed.take(mn_id, self._clock.seconds())


def _unavailable(result: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**result, "context": "unavailable", "records": 0, "reason": reason}


def _command_error(failure, what: str):
    failure.trap(PeerError)
    error = failure.value
    raise CommandError(PEER_ERROR_CODES.get(error.code, "peer-error"), f"{what}: {error}")
