"""Handover measurement from arrival logs and captured reports (pure, no IO).

For each handover and each stream the MN receives (docs/testbed.md has the
JSON schema):

* ``gap_ms``: last arrival at or before the detach to the first arrival at or
  after the attach (the multicast disruption the MN sees, RFC 6224 §4.2);
* ``lost``: sequence numbers between those two packets never received;
* ``duplicated``: arrivals in this handover's window (detach to the next
  handover of the same MN, or the end) whose sequence number had already
  arrived;
* ``attach_to_upstream_report_ms``: attach to the first IGMP/MLD report on the
  new MAG's tunnel that joins the stream's group (the new MAG joining upstream,
  RFC 4605 §4.1);
* ``attach_to_first_packet_ms``: attach to that first arrival.

Values that cannot be measured are None (null in JSON).
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


@dataclasses.dataclass(frozen=True, slots=True)
class StreamInfo:
    stream: int
    name: str
    family: str  # "ipv4" | "ipv6"
    group: str


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def measure_stream(handover: HandoverRecord, stream: StreamInfo, arrivals: Sequence[Arrival],
                   window_end_at: float, report_times: Sequence[float] | None) -> dict[str, Any]:
    """One result row; ``arrivals`` are this MN's arrivals of this stream."""
    ordered = sorted(arrivals, key=lambda a: a.received_at)
    times = [a.received_at for a in ordered]
    before = bisect.bisect_right(times, handover.detach_at)
    after = bisect.bisect_left(times, handover.attach_at)
    last_before = ordered[before - 1] if before > 0 else None
    first_after = ordered[after] if after < len(ordered) else None
    if first_after is not None and first_after.received_at >= window_end_at:
        first_after = None
    gap = lost = None
    if last_before is not None and first_after is not None:
        gap = first_after.received_at - last_before.received_at
        received = {a.seq for a in ordered}
        lost = sum(1 for seq in range(last_before.seq + 1, first_after.seq)
                   if seq not in received)
    seen: set[int] = set()
    duplicated = 0
    for arrival in ordered:
        if arrival.seq in seen and handover.detach_at <= arrival.received_at < window_end_at:
            duplicated += 1
        seen.add(arrival.seq)
    report_delay = None
    if report_times is not None:
        later = [t for t in report_times if handover.attach_at <= t < window_end_at]
        if later:
            report_delay = min(later) - handover.attach_at
    return {
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
        "lost": lost,
        "duplicated": duplicated,
        "attach_to_upstream_report_ms": _ms(report_delay),
        "attach_to_first_packet_ms": _ms(
            None if first_after is None else first_after.received_at - handover.attach_at),
    }


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
            rows.append(measure_stream(handover, stream, mine, window_end_at, report_times))
    return rows
