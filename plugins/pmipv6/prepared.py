"""Prepared handovers (docs/handover.md): the next MAG buffers, the previous MAG marks.

RFC 5949 (PFMIPv6) prepares the new MAG before the MN's link switch and
buffers its unicast there; RFC 7411 §3.3 moves the multicast subscription
context the same way. Here, both for multicast:

- ``prepare(event)`` (next MAG; the control command ``binding`` with
  ``event: prepare``, or a context pushed by the MN's previous MAG over the
  peer channel when ``tunnel_for_lma`` names the tunnel): the tunnel's
  instance is found or created and kept, the MN's groups are joined upstream
  at once (held, forwarded nowhere) and their data is buffered. Without an
  attach within ``prepare_interval`` it is undone: left upstream, buffer
  dropped, counted in ``expired``.
- ``attach(event, do_attach)``: what the MN missed leaves at once; the
  ordinary attach (with the prepared context) makes the link a downstream,
  its forwarding held back until the MN got what came meanwhile too, then
  committed at once; then the held groups are
  released (the downstream now wants them: upstream unchanged). Groups the
  access link gets already (a shared link where another MN listens) are
  not delivered from the buffer: the MN has them live since its link came
  up, and old copies would reach the others twice.
  The markers (what the previous MAG forwarded last) come from the attach's
  ``forwarded_last`` or, earlier, from the previous MAG over the channel.
- ``record(mn_id)`` / ``detach(mn_id, do_detach)`` (previous MAG): from a
  ``handover-prepare`` on (for ``prepare_interval`` at most), the last packet
  per group sent to the MN is recorded; at the detach the markers are taken
  and returned. Before the
  removal and, when the MN had its link to itself, after it too (the kernel
  forwarded to it until the removal; on a shared link others keep the
  group, so only what was sent before counts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mcproxy_pmip.plugin import CommandError, Family, McproxyError, MetricSample, PluginMetric, ProxyFacade
from mcproxy_pmip_plugins.pmipv6.bindings import (
    BindingTable, ContextEntry, MobileNodeAttached, MobileNodePrepared, markers_json,
)

log = logging.getLogger(__name__)

PREPARE_INTERVAL = 10.0
BUFFER_INTERVAL = 0.5
BUFFER_BYTES = 4 * 1024 * 1024
#: at most this many MNs prepared at once (each holds a tap and a buffer)
MAX_PREPARED = 256

Markers = dict[tuple[Family, Any], bytes]
_PACKET_FIGURES = ("flushed", "late", "skipped", "overflow")


@dataclass(frozen=True, slots=True)
class PrepareSettings:
    """``prepare_interval``, ``buffer_interval``, ``buffer_bytes`` of the plugin's settings."""

    prepare_interval: float = PREPARE_INTERVAL
    buffer_interval: float = BUFFER_INTERVAL
    buffer_bytes: int = BUFFER_BYTES


@dataclass(slots=True)
class _Prepared:
    event: MobileNodePrepared
    instance: str
    data: Any
    expiry: Any
    markers: Markers | None = None
    marker_origin: str = "none"
    joined: list[dict[str, str]] = field(default_factory=list)


def _key(mn_id: str) -> str:
    return f"prepared:{mn_id}"


class PreparedHandovers:
    """One MAG's prepared MNs (as the next MAG) and recorded MNs (as the previous one)."""

    def __init__(self, facade: ProxyFacade, table: BindingTable, settings: PrepareSettings = PrepareSettings()) -> None:
        self._facade = facade
        self._table = table
        self.settings = settings
        self._prepared: dict[str, _Prepared] = {}
        self._recorders: dict[str, Any] = {}
        self._recording_ends: dict[str, Any] = {}
        self.counts = {"prepared": 0, "attached": 0, "expired": 0, "replaced": 0, "stopped": 0}
        #: packets of attached prepared MNs: flushed, late, skipped, overflow
        self.packets = dict.fromkeys(_PACKET_FIGURES, 0)

    def __contains__(self, mn_id: str) -> bool:
        return mn_id in self._prepared

    def previous_mag(self, mn_id: str) -> str | None:
        prepared = self._prepared.get(mn_id)
        return None if prepared is None else prepared.event.previous_mag

    # -- the next MAG

    def prepare(self, event: MobileNodePrepared) -> dict[str, Any]:
        """Join the MN's groups upstream and buffer them until its attach."""
        if event.mn_id in self._table:
            raise CommandError("mn-bound", f"{event.mn_id} is bound at this MAG; nothing to prepare")
        records = self._table.decode_context(event.context)
        if event.mn_id in self._prepared:
            self._undo(event.mn_id, "replaced")
        elif len(self._prepared) >= MAX_PREPARED:
            raise CommandError("limit", f"{MAX_PREPARED} handovers are prepared already")
        key = _key(event.mn_id)
        instance = self._table.reserve_instance(key, event.tunnel_if)
        data = None
        try:
            for family, _version, family_records in records:
                self._facade.hold_records(instance, key, family, family_records)
            data = self._facade.open_handover_buffer(instance, records, self.settings.buffer_interval,
                                                     self.settings.buffer_bytes)
        except McproxyError as exc:
            self._release(instance, key, data)
            raise CommandError("proxy-error", f"prepare of {event.mn_id} failed: {exc}") from exc
        expiry = self._facade.clock.callLater(self.settings.prepare_interval, self._undo, event.mn_id, "expired")
        joined = [{"family": family.name.lower(), "group": str(record.group)}
                  for family, _version, family_records in records for record in family_records]
        self._prepared[event.mn_id] = _Prepared(event, instance, data, expiry, joined=joined)
        self.counts["prepared"] += 1
        log.info("handover-prepared mn=%s instance=%s groups=%d previous_mag=%s", event.mn_id, instance,
                 len(joined), event.previous_mag or "-")
        return {"mn_id": event.mn_id, "event": "prepare", "instance": instance, "joined": joined,
                "expires_in": self.settings.prepare_interval}

    def markers_received(self, mn_id: str, markers: Markers, origin: str) -> bool:
        """The previous MAG's markers for a prepared MN; False when they are not taken."""
        prepared = self._prepared.get(mn_id)
        if prepared is None or prepared.event.previous_mag not in (None, origin):
            return False
        prepared.markers, prepared.marker_origin = dict(markers), "peer"
        return True

    def context(self, mn_id: str) -> tuple[ContextEntry, ...]:
        return self._prepared[mn_id].event.context

    def attach(self, event: MobileNodeAttached,
               do_attach: Callable[[MobileNodeAttached], dict[str, Any]]) -> dict[str, Any]:
        """The prepared MN arrives: flush, ``do_attach`` (the binding), catch up, commit, release."""
        prepared = self._prepared.pop(event.mn_id)
        if prepared.expiry.active():
            prepared.expiry.cancel()
        markers, origin = prepared.markers, prepared.marker_origin
        if event.forwarded_last is not None:
            markers, origin = dict(event.forwarded_last), "given"
        attach = event if event.context else replace(event, context=prepared.event.context)
        result: dict[str, Any] = {}
        key = _key(event.mn_id)
        try:
            figures = prepared.data.deliver(event.access_if, markers, lambda: result.update(do_attach(attach)),
                                            lambda: self._facade.commit_forwarding(result["instance"]),
                                            self._live_groups(event))
        finally:
            self._release(prepared.instance, key, prepared.data)
        self.counts["attached"] += 1
        for name in _PACKET_FIGURES:
            self.packets[name] += figures[name]
        return {**result, "prepared": True, "buffer": {**figures, "marker": origin}}

    def _live_groups(self, event: MobileNodeAttached) -> frozenset[tuple[Family, Any]]:
        """Groups the MN's access link gets already: other MNs bound on it subscribe to them."""
        if not self._table.link_in_use(event.tunnel_if, event.access_if):
            return frozenset()
        instance = self._table.get_instance(event.tunnel_if)
        return frozenset((family, record.group) for family, _version, records
                         in self._facade.export_records(instance, event.access_if) for record in records)

    def _undo(self, mn_id: str, reason: str) -> None:
        prepared = self._prepared.pop(mn_id, None)
        if prepared is None:
            return
        if prepared.expiry.active():
            prepared.expiry.cancel()
        self.counts[reason] += 1
        try:
            self._release(prepared.instance, _key(mn_id), prepared.data)
        except McproxyError:
            log.exception("handover-prepare-undo-failed mn=%s", mn_id)
        log.info("handover-prepare-undone mn=%s reason=%s buffered=%d overflow=%d", mn_id, reason,
                 prepared.data.buffer.buffered, prepared.data.buffer.overflow)

    def _release(self, instance: str, key: str, data: Any) -> None:
        if data is not None:
            data.close()
        try:
            self._facade.release_records(instance, key)
        except McproxyError:
            log.warning("handover-release-skipped instance=%s key=%s reason=instance-gone", instance, key)
        self._table.unreserve_instance(key)

    # -- the previous MAG

    def record(self, mn_id: str) -> None:
        """Start recording what is sent to the bound MN (a handover of it is being prepared)."""
        links = self._table.binding_links(mn_id)
        if links is None or mn_id in self._recorders:
            return
        instance = self._table.get(mn_id).instance
        groups = [(family, record.group) for family, _version, records
                  in self._facade.export_records(instance, links[0]) for record in records]
        try:
            self._recorders[mn_id] = self._facade.open_forward_recorder(links[0], groups)
        except CommandError as exc:
            log.warning("handover-record-failed mn=%s access_if=%s error=%s: the next MAG gets no markers",
                        mn_id, links[0], exc.message)
            return
        self._recording_ends[mn_id] = self._facade.clock.callLater(
            self.settings.prepare_interval, self.forget_recording, mn_id)

    def detach(self, mn_id: str, do_detach: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], Markers | None]:
        """``do_detach()`` with the markers of a recorded MN taken around it (module docstring)."""
        recorder = self._recorders.pop(mn_id, None)
        self._cancel_recording_end(mn_id)
        if recorder is None:
            return do_detach(), None
        try:
            markers = recorder.markers()
            result = do_detach()
            if result.get("removed_downstream"):
                markers = recorder.markers()
        finally:
            recorder.close()
        return {**result, "forwarded_last": markers_json(markers)}, markers

    def forget_recording(self, mn_id: str) -> None:
        """Stop recording for the MN (no detach came within ``prepare_interval``, or stopping)."""
        self._cancel_recording_end(mn_id)
        recorder = self._recorders.pop(mn_id, None)
        if recorder is not None:
            recorder.close()

    def _cancel_recording_end(self, mn_id: str) -> None:
        ending = self._recording_ends.pop(mn_id, None)
        if ending is not None and ending.active():
            ending.cancel()

    def rows(self) -> list[dict[str, Any]]:
        now = self._facade.clock.seconds()
        return [{"mn_id": mn_id, "instance": p.instance, "buffered": len(p.data.buffer),
                 "overflow": p.data.buffer.overflow, "marker": p.marker_origin,
                 "expires_in": round(p.expiry.getTime() - now, 3)}
                for mn_id, p in sorted(self._prepared.items())]

    def metrics(self) -> list[PluginMetric]:
        return [
            PluginMetric("prepared_handovers_total", "counter",
                         "Prepared handovers, by outcome (docs/handover.md).",
                         tuple(MetricSample((("result", k),), v) for k, v in sorted(self.counts.items()))),
            PluginMetric("prepared_handovers_active", "gauge", "Mobile nodes prepared, not attached yet.",
                         (MetricSample(value=len(self._prepared)),)),
            PluginMetric("handover_buffer_packets_total", "counter",
                         "Buffered packets of attached prepared MNs, by what became of them.",
                         tuple(MetricSample((("kind", k),), v) for k, v in sorted(self.packets.items()))),
        ]

    def close(self) -> None:
        for mn_id in list(self._prepared):
            self._undo(mn_id, "stopped")
        for mn_id in list(self._recorders):
            self.forget_recording(mn_id)
