"""Subscription context transfer between MAGs over the peer channel (RFC 7411 §3.3).

Glue between the binding table (bindings.py) and the channel (peers.py), and
the channel's authorisation rules:

- ``prepare(mn_id, target)`` (command ``handover-prepare`` on the old MAG):
  the MN's context is exported and pushed to the target MAG (predictive); the
  target is remembered as the MN's next MAG.
- ``handle(event)``: binding events. An attach without ``context`` that names
  ``previous_mag`` first uses a context *that* peer pushed for the MN; else
  the attach is done at once (the General Query does not wait) and the context
  is fetched from that peer and imported afterwards (reactive). Contexts other
  peers pushed for the MN, and every pushed context of an attach that names
  no previous MAG, are dropped unused (``context-refused``). A detach keeps
  the departing MN's context for the hold interval, tagged with its next MAG:
  the detach's ``next_mag``, else the target of the last ``handover-prepare``.
- ``push_received`` / ``fetch_requested``: the server side, for an
  authenticated peer. A push is held per (MN, pushing peer). A fetch is
  answered only for a departed MN (one still bound here has not moved), and
  only to its next MAG when one is known, which consumes it; with none known,
  every configured peer may fetch it until it expires (nobody can take it
  away from the MAG the MN really went to).

Prepared handovers (prepared.py, docs/handover.md): a ``prepare`` event, or a
push naming an LMA that ``tunnel_for_lma`` maps to a tunnel here, prepares the
MN; its attach then flushes the buffer (context "prepared"). On the previous
MAG, ``handover-prepare`` also starts recording what is sent to the MN; its
detach takes the markers and sends them (``forwarded``) to the next MAG.

An attach's result gains ``context`` ("given", "pushed", "fetched",
"prepared", "none" or "unavailable" with a ``reason``) and ``records``
(records imported from it). A failed transfer never undoes the attach.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from twisted.internet import defer

from mcproxy_pmip.plugin import CommandError, RateLimitedLog
from mcproxy_pmip_plugins.pmipv6.bindings import (
    BindingEvent, BindingTable, ContextEntry, MobileNodeAttached, MobileNodeDetached, MobileNodePrepared,
    markers_json, parse_context,
)
from mcproxy_pmip_plugins.pmipv6.context_store import ContextStore
from mcproxy_pmip_plugins.pmipv6.peers import PeerClient, PeerError
from mcproxy_pmip_plugins.pmipv6.prepared import Markers, PreparedHandovers

log = logging.getLogger(__name__)

UNKNOWN_PEER = "unknown-peer"
#: PeerError codes as the control API reports them; any other becomes "peer-error".
PEER_ERROR_CODES = {"unknown-peer": UNKNOWN_PEER, "unreachable": "peer-unreachable",
                    "timeout": "peer-timeout", "connection-lost": "peer-unreachable",
                    "tls-failed": "peer-tls-failed"}
#: refusals a peer gets for its request
STORE_FULL = "store-full"
STILL_BOUND = "mn-still-bound"
NOT_NEXT_MAG = "not-next-mag"


def _departing(event: BindingEvent) -> bool:
    return isinstance(event, MobileNodeDetached) or getattr(event, "lifetime", None) == 0


class ContextChannel:
    """One MAG's end of the context channel: the pushed contexts, the departed ones, the client."""

    def __init__(self, table: BindingTable, clock: Any, client: PeerClient,
                 pushed: ContextStore, departed: ContextStore, refusals: RateLimitedLog | None = None,
                 prepared: PreparedHandovers | None = None, tunnel_for_lma: dict[str, str] | None = None) -> None:
        self._table = table
        self.prepared = prepared
        self._tunnel_for_lma = dict(tunnel_for_lma or {})
        self._clock = clock
        self._client = client
        self._pushed = pushed
        self._departed = departed
        self._refusals = refusals or RateLimitedLog(log, clock, summary="peer_refusals")
        self._next_mag: dict[str, str] = {}
        self._closed = False

    def close(self) -> None:
        """Transfers still under way end as "unavailable" without touching the table; held
        contexts are dropped."""
        self._closed = True
        if self.prepared is not None:
            self.prepared.close()
        self._pushed.close()
        self._departed.close()

    # -- the control side

    def prepare(self, mn_id: str, target: str) -> defer.Deferred:
        """Push the MN's context to ``target``; fires ``{mn_id, target, pushed}``."""
        if target not in self._client.peers:
            raise CommandError(UNKNOWN_PEER, f"no peer MAG named {target!r}")
        entries = self._table.export_context(mn_id)["context"]
        log.info("context-push mn=%s target=%s entries=%d", mn_id, target, len(entries))
        if self.prepared is not None:
            self.prepared.record(mn_id)
        pushing = self._client.push(target, mn_id, entries, self._table.get(mn_id).lma)
        pushing.addCallback(self._pushed_to, mn_id, target, len(entries))
        return pushing.addErrback(_command_error, f"push of {mn_id}'s context to {target}")

    def _pushed_to(self, _reply: Any, mn_id: str, target: str, count: int) -> dict[str, Any]:
        """A successful push names the MN's next MAG (while it is still bound here)."""
        if mn_id in self._table:
            self._next_mag = {m: t for m, t in self._next_mag.items() if m in self._table}
            self._next_mag[mn_id] = target
        return {"mn_id": mn_id, "target": target, "pushed": count}

    def handle(self, event: BindingEvent) -> dict[str, Any] | defer.Deferred:
        """Apply a binding event with the transfers it implies (see the module docstring)."""
        if isinstance(event, MobileNodePrepared):
            return self._running_prepared().prepare(event)
        next_mag = getattr(event, "next_mag", None)
        if next_mag is not None and next_mag not in self._client.peers:
            raise CommandError(UNKNOWN_PEER, f"next_mag: no peer MAG named {next_mag!r}")
        if _departing(event):
            remembered = self._next_mag.pop(event.mn_id, None)
            next_mag = next_mag or remembered
            if event.mn_id in self._table:
                self._keep_departed(event.mn_id, next_mag)
                return self._detach(event, next_mag)
        if not isinstance(event, MobileNodeAttached) or event.lifetime == 0:
            return self._table.handle(event)
        if self.prepared is not None and event.mn_id in self.prepared:
            self._take_pushed(event)
            result = self.prepared.attach(event, lambda attach: self._table.handle(attach, commit=False))
            return {**result, "context": "prepared", "records": result["context_records"]}
        pushed = self._take_pushed(event)
        if event.context:
            result = self._table.handle(event)
            return {**result, "context": "given", "records": result["context_records"]}
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

    def _running_prepared(self) -> PreparedHandovers:
        if self.prepared is None:
            raise CommandError("not-supported", "prepared handovers are not available here")
        return self.prepared

    def _detach(self, event: BindingEvent, next_mag: str | None) -> dict[str, Any]:
        """The departing MN's binding ends; markers recorded for it go to its next MAG."""
        if self.prepared is None:
            return self._table.handle(event)
        result, markers = self.prepared.detach(event.mn_id, lambda: self._table.handle(event))
        if markers is not None and next_mag is not None:
            self._send_markers(next_mag, event.mn_id, markers)
        return result

    def _send_markers(self, peer: str, mn_id: str, markers: Markers) -> None:
        sending = self._client.forwarded(peer, mn_id, markers_json(markers))
        sending.addCallbacks(
            lambda _reply: log.info("markers-sent mn=%s peer=%s groups=%d", mn_id, peer, len(markers)),
            lambda failure: self._refusals.event("markers-not-sent", "markers-not-sent mn=%s peer=%s error=%s",
                                                 mn_id, peer, failure.getErrorMessage()))

    def _keep_departed(self, mn_id: str, next_mag: str | None) -> None:
        entries = parse_context(self._table.export_context(mn_id)["context"])
        if not self._departed.put(mn_id, entries, tag=next_mag):
            self._refusals.event("departed-store-full", "context-not-kept mn=%s reason=store-full bytes=%d",
                                 mn_id, self._departed.bytes)

    def _take_pushed(self, event: MobileNodeAttached) -> tuple[ContextEntry, ...] | None:
        """The context the attach's previous MAG pushed for the MN; every push for it is removed."""
        pushes = self._pushed.pop_matching(lambda key: key[0] == event.mn_id)
        chosen = pushes.pop((event.mn_id, event.previous_mag), None)
        for (_mn, peer) in pushes:
            reason = "no-previous-mag" if event.previous_mag is None else "not-previous-mag"
            self._refusals.event(f"push-{reason}", "context-refused mn=%s origin=pushed peer=%s reason=%s",
                                 event.mn_id, peer, reason)
        return None if chosen is None else chosen.entries

    def _attach_pushed(self, event: MobileNodeAttached, pushed: tuple[ContextEntry, ...]) -> dict[str, Any]:
        try:
            result = self._table.handle(dataclasses.replace(event, context=pushed))
        except CommandError as exc:
            if exc.code not in ("bad-argument", "bad-context"):
                raise
            self._refusals.event(f"pushed-{exc.code}", "context-refused mn=%s origin=pushed error=%s",
                                 event.mn_id, exc.message)
            return _unavailable(self._table.handle(event), exc.code)
        log.info("context-used mn=%s origin=pushed peer=%s records=%d", event.mn_id, event.previous_mag,
                 result["context_records"])
        return {**result, "context": "pushed", "records": result["context_records"]}

    def _import_fetched(self, entries: tuple[ContextEntry, ...], event: MobileNodeAttached,
                        result: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            return _unavailable(result, "stopped")
        if self._table.binding_links(event.mn_id) != (event.access_if, event.tunnel_if):
            return _unavailable(result, "binding-changed")
        try:
            records = self._table.import_context(event.mn_id, entries)
        except CommandError as exc:
            self._refusals.event(f"fetched-{exc.code}", "context-refused mn=%s origin=%s error=%s",
                                 event.mn_id, event.previous_mag, exc)
            return _unavailable(result, exc.code)
        log.info("context-used mn=%s origin=fetched peer=%s records=%d", event.mn_id,
                 event.previous_mag, records)
        return {**result, "context": "fetched", "records": records,
                "context_records": result["context_records"] + records}

    def _fetch_failed(self, failure, event: MobileNodeAttached, result: dict[str, Any]) -> dict[str, Any]:
        failure.trap(PeerError)
        self._refusals.event(f"fetch-failed-{failure.value.code}", "context-fetch-failed mn=%s peer=%s error=%s",
                             event.mn_id, event.previous_mag, failure.value)
        return _unavailable(result, PEER_ERROR_CODES.get(failure.value.code, failure.value.code))

    # -- the peer side (``peer`` is authenticated)

    def push_received(self, peer: str, mn_id: str, entries: tuple[ContextEntry, ...],
                      lma: str | None = None) -> str | None:
        """Hold a pushed context for the MN's attach, and prepare the handover when ``lma`` names
        a tunnel here; an error code when it is refused."""
        if not self._pushed.put((mn_id, peer), entries):
            self._refusals.event("pushed-store-full", "context-refused mn=%s origin=pushed peer=%s "
                                 "reason=store-full bytes=%d", mn_id, peer, self._pushed.bytes)
            return STORE_FULL
        log.info("context-pushed mn=%s peer=%s entries=%d", mn_id, peer, len(entries))
        tunnel = self._tunnel_for_lma.get(lma) if lma is not None else None
        if tunnel is not None and self.prepared is not None and mn_id not in self._table:
            try:
                self.prepared.prepare(MobileNodePrepared(mn_id, tunnel, entries, lma=lma, previous_mag=peer))
            except CommandError as exc:
                self._refusals.event(f"prepare-{exc.code}", "handover-not-prepared mn=%s peer=%s error=%s",
                                     mn_id, peer, exc.message)
        return None

    def markers_received(self, peer: str, mn_id: str, markers: Markers) -> str | None:
        """What ``peer`` forwarded last to a prepared MN; "not-prepared" when nothing waits for it."""
        if self.prepared is None or not self.prepared.markers_received(mn_id, markers, peer):
            self._refusals.event("markers-unused", "markers-refused mn=%s peer=%s reason=not-prepared", mn_id, peer)
            return "not-prepared"
        log.info("markers-received mn=%s peer=%s groups=%d", mn_id, peer, len(markers))
        return None

    def fetch_requested(self, peer: str, mn_id: str) -> tuple[ContextEntry, ...] | str:
        """The context of an MN that left here, for its next MAG; else an error code."""
        if mn_id in self._table:
            self._refusals.event("fetch-still-bound", "context-fetch-refused mn=%s peer=%s reason=%s",
                                 mn_id, peer, STILL_BOUND)
            return STILL_BOUND
        held = self._departed.get(mn_id)
        if held is None:
            return "unknown-mn"
        if held.tag is None:
            log.info("context-fetched mn=%s peer=%s next_mag=-", mn_id, peer)
            return held.entries
        if held.tag != peer:
            self._refusals.event("fetch-not-next-mag", "context-fetch-refused mn=%s peer=%s reason=%s "
                                 "next_mag=%s", mn_id, peer, NOT_NEXT_MAG, held.tag)
            return NOT_NEXT_MAG
        self._departed.pop(mn_id)
        log.info("context-fetched mn=%s peer=%s next_mag=%s", mn_id, peer, peer)
        return held.entries


def _unavailable(result: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**result, "context": "unavailable", "records": 0, "reason": reason}


def _command_error(failure, what: str):
    failure.trap(PeerError)
    error = failure.value
    raise CommandError(PEER_ERROR_CODES.get(error.code, "peer-error"), f"{what}: {error}")
