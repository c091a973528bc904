"""Handover measurement from arrival logs and captured reports (pure, no IO).

For each handover and each stream the MN receives (docs/testbed.md has the
JSON schema and the exact definitions):

* ``gap_ms``: last arrival at or before the detach to the first arrival at or
  after the attach (the multicast disruption the MN sees, RFC 6224 §4.2);
* ``lost``: sequence numbers above the last packet before the detach and below
  the highest one received in this handover's window (detach to the next
  handover of the same MN, or the end) never received;
* ``duplicated``: arrivals in the window whose sequence number had already
  arrived;
* ``reordered``: arrivals in the window, duplicates excluded, whose sequence
  number is below the highest one already received in the stream;
* ``attach_to_upstream_report_ms``: attach to the first IGMP/MLD report on the
  new MAG's tunnel that joins the stream's group (the new MAG joining upstream,
  RFC 4605 §4.1);
* ``attach_to_first_packet_ms``: attach to that first arrival;
* ``binding_attach_to_first_packet_ms`` / ``binding_attach_to_last_buffered_packet_ms``:
  the same two, counted from the moment the driver sent the new MAG its
  binding attach (the ``attach_sent`` event; the daemon cannot act before);
* ``attach_to_last_buffered_packet_ms``: attach to the last arrival after the
  attach of a packet sent before it (what a prepared MAG buffered and flushed,
  RFC 5949 §3 buffering applied to multicast as in RFC 7411).

Values that cannot be measured are None (null in JSON). ``fault_totals`` sums
the three fault counts per handover and per family.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mcproxy_pmip_testbed.payload import Arrival


@dataclasses.dataclass(frozen=True, slots=True)
class HandoverRecord:
    """What the driver did for one handover (epoch seconds)."""

    index: int
    mn: str
    from_mag: str
    to_mag: str
    mode: str
    detach_at: float
    attach_at: float
    events: tuple[tuple[str, float], ...] = ()  # (event, epoch seconds) in the driver's order
    buffer: Mapping[str, Any] | None = None  # the new MAG's attach reply's "buffer", if any

    def timeline(self) -> dict[str, Any]:
        """The handover's entry of results.json ``timeline``."""
        return {"handover": self.index, "mn": self.mn, "from_mag": self.from_mag,
                "to_mag": self.to_mag, "events": dict(self.events),
                "buffer": None if self.buffer is None else dict(self.buffer)}


@dataclasses.dataclass(frozen=True, slots=True)
class StreamInfo:
    stream: int
    name: str
    family: str  # "ipv4" | "ipv6"
    group: str


@dataclasses.dataclass(frozen=True, slots=True)
class Faults:
    """Lost, duplicated and reordered packets of one stream in one handover's window."""

    lost: int | None
    duplicated: int
    reordered: int


FAULT_KEYS = ("lost", "duplicated", "reordered")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def stream_faults(ordered: Sequence[Arrival], window_start_at: float, window_end_at: float,
                  last_before: Arrival | None) -> Faults:
    """Faults of one stream in ``[window_start_at, window_end_at)``; ``ordered`` by arrival.

    Lost is None when nothing arrived before the window or nothing in it.
    """
    seen: set[int] = set()
    highest = -1
    duplicated = reordered = 0
    highest_in_window = None
    for arrival in ordered:
        if arrival.received_at >= window_end_at:
            break
        inside = arrival.received_at >= window_start_at
        if arrival.seq in seen:
            duplicated += inside
            continue
        if inside:
            reordered += arrival.seq < highest
            if highest_in_window is None or arrival.seq > highest_in_window:
                highest_in_window = arrival.seq
        seen.add(arrival.seq)
        highest = max(highest, arrival.seq)
    lost = None
    if last_before is not None and highest_in_window is not None:
        lost = sum(1 for seq in range(last_before.seq + 1, highest_in_window) if seq not in seen)
    return Faults(lost, duplicated, reordered)


def _measure(handover: HandoverRecord, stream: StreamInfo, arrivals: Sequence[Arrival],
             window_end_at: float, report_times: Sequence[float] | None,
             ) -> tuple[dict[str, Any], Faults, float | None]:
    """The shared row, the stream's faults and attach -> last buffered packet (seconds)."""
    ordered = sorted(arrivals, key=lambda a: a.received_at)
    times = [a.received_at for a in ordered]
    before = bisect.bisect_right(times, handover.detach_at)
    after = bisect.bisect_left(times, handover.attach_at)
    last_before = ordered[before - 1] if before > 0 else None
    first_after = ordered[after] if after < len(ordered) else None
    if first_after is not None and first_after.received_at >= window_end_at:
        first_after = None
    gap = None
    if last_before is not None and first_after is not None:
        gap = first_after.received_at - last_before.received_at
    faults = stream_faults(ordered, handover.detach_at, window_end_at,
                           last_before if first_after is not None else None)
    flushed = [a.received_at for a in ordered[after:]
               if a.received_at < window_end_at and a.sent_at < handover.attach_at]
    report_delay = None
    if report_times is not None:
        later = [t for t in report_times if handover.attach_at <= t < window_end_at]
        if later:
            report_delay = min(later) - handover.attach_at
    row = {
        "handover": handover.index,
        "mn": handover.mn,
        "from_mag": handover.from_mag,
        "to_mag": handover.to_mag,
        "mode": handover.mode,
        "stream": stream.name,
        "family": stream.family,
        "group": stream.group,
        "detach_at": handover.detach_at,
        "attach_at": handover.attach_at,
        "l2_outage_ms": _ms(handover.attach_at - handover.detach_at),
        "gap_ms": _ms(gap),
        "lost": faults.lost,
        "duplicated": faults.duplicated,
        "attach_to_upstream_report_ms": _ms(report_delay),
        "attach_to_first_packet_ms": _ms(
            None if first_after is None else first_after.received_at - handover.attach_at),
    }
    return row, faults, max(flushed) - handover.attach_at if flushed else None


def measure_stream(handover: HandoverRecord, stream: StreamInfo, arrivals: Sequence[Arrival],
                   window_end_at: float, report_times: Sequence[float] | None) -> dict[str, Any]:
    """One row of the shared schema (``results.HANDOVER_KEYS``); ``arrivals`` are this MN's
    arrivals of this stream."""
    return _measure(handover, stream, arrivals, window_end_at, report_times)[0]


def measure_stream_extended(handover: HandoverRecord, stream: StreamInfo,
                            arrivals: Sequence[Arrival], window_end_at: float,
                            report_times: Sequence[float] | None) -> dict[str, Any]:
    """``measure_stream``'s row with the testbed's extra keys (``results.OPTIONAL_HANDOVER_KEYS``):
    ``reordered`` and ``attach_to_last_buffered_packet_ms``."""
    row, faults, last_buffered = _measure(handover, stream, arrivals, window_end_at, report_times)
    binding_attach = dict(handover.events).get("attach_sent")
    first, last = row["attach_to_first_packet_ms"], _ms(last_buffered)
    since_binding = None if binding_attach is None else (binding_attach - handover.attach_at) * 1000
    return {**row, "reordered": faults.reordered,
            "attach_to_last_buffered_packet_ms": last,
            "binding_attach_to_first_packet_ms": _since(first, since_binding),
            "binding_attach_to_last_buffered_packet_ms": _since(last, since_binding)}


def _since(after_radio_ms: float | None, binding_after_radio_ms: float | None) -> float | None:
    """A delay after the radio attach, counted from the binding attach instead."""
    if after_radio_ms is None or binding_after_radio_ms is None:
        return None
    return round(after_radio_ms - binding_after_radio_ms, 3)


def fault_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``per_handover`` (each with ``families``) and ``per_family`` sums of FAULT_KEYS.

    A sum is None when no row of it measured the count (``lost`` may be None).
    """
    def total(group: Sequence[Mapping[str, Any]]) -> dict[str, int | None]:
        sums: dict[str, int | None] = {}
        for key in FAULT_KEYS:
            values = [row[key] for row in group if row.get(key) is not None]
            sums[key] = sum(values) if values else None
        return sums

    def by_family(group: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int | None]]:
        families = sorted({row["family"] for row in group})
        return {family: total([r for r in group if r["family"] == family]) for family in families}

    handovers = sorted({row["handover"] for row in rows})
    per_handover = []
    for index in handovers:
        mine = [row for row in rows if row["handover"] == index]
        per_handover.append({"handover": index, **total(mine), "families": by_family(mine)})
    return {"per_handover": per_handover, "per_family": by_family(rows)}


def measure(handovers: Sequence[HandoverRecord], streams: Mapping[int, StreamInfo],
            subscriptions: Mapping[str, Iterable[int]],
            arrivals_by_mn: Mapping[str, Sequence[Arrival]], end_at: float,
            reports: Mapping[tuple[str, str], Sequence[float]] | None = None,
            ) -> list[dict[str, Any]]:
    """Rows for every handover and every stream its MN subscribes to.

    ``reports`` maps (to_mag, group) to the times of joining reports captured
    on that MAG's tunnel toward the MN's LMA; None when nothing was captured.
    """
    rows = []
    for handover in handovers:
        later = [h.detach_at for h in handovers
                 if h.mn == handover.mn and h.detach_at > handover.detach_at]
        window_end_at = min(later, default=end_at)
        for stream_id in subscriptions.get(handover.mn, ()):
            stream = streams[stream_id]
            mine = [a for a in arrivals_by_mn.get(handover.mn, ()) if a.stream == stream_id]
            report_times = None if reports is None else reports.get(
                (handover.to_mag, stream.group), [])
            rows.append(measure_stream_extended(handover, stream, mine, window_end_at,
                                                report_times))
    return rows
