"""PNG plot of a run: sequence number against arrival time per MN, handovers marked.

Each MN gets a row: the whole run on the left, then two zoomed panels per
handover (the first ``MAX_ZOOMS``): one spanning ``ZOOM_WINDOW`` seconds
around it, where a gap of tens of milliseconds is visible (the red band is the
layer-2 outage), and one around the attach (``ATTACH_BEFORE`` to
``ATTACH_AFTER``), where packets sent before the attach but arriving after it
(what a prepared MAG buffered and flushed) are drawn as open circles, so the
burst stands out from live forwarding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mcproxy_pmip_testbed.measure import HandoverRecord, StreamInfo
from mcproxy_pmip_testbed.payload import Arrival

MAX_PANELS = 8
MAX_ZOOMS = 3
ZOOM_WINDOW = 0.4
ATTACH_BEFORE = 0.01
ATTACH_AFTER = 0.04


def _series(axis, arrivals: Sequence[Arrival], streams: Mapping[int, StreamInfo], origin_at: float,
            start: float | None = None, end: float | None = None) -> None:
    for stream_id, info in sorted(streams.items()):
        mine = [a for a in arrivals if a.stream == stream_id
                and (start is None or start <= a.received_at - origin_at <= end)]
        if mine:
            axis.plot([a.received_at - origin_at for a in mine], [a.seq for a in mine],
                      ".", markersize=1 if start is None else 3, label=f"{info.name} {info.group}")


def _burst(axis, arrivals: Sequence[Arrival], streams: Mapping[int, StreamInfo],
           handover: HandoverRecord, origin_at: float) -> None:
    """Arrivals around the attach, in ms from it: flushed (sent before it) open, live filled."""
    start, end = handover.attach_at - ATTACH_BEFORE, handover.attach_at + ATTACH_AFTER
    for stream_id, info in sorted(streams.items()):
        mine = [a for a in arrivals if a.stream == stream_id and start <= a.received_at <= end]
        flushed = [a for a in mine if a.received_at >= handover.attach_at
                   and a.sent_at < handover.attach_at]
        live = [a for a in mine if a not in flushed]
        line = axis.plot([(a.received_at - handover.attach_at) * 1000 for a in live],
                         [a.seq for a in live], ".", markersize=3, label=info.name)
        if flushed:
            axis.plot([(a.received_at - handover.attach_at) * 1000 for a in flushed],
                      [a.seq for a in flushed], "o", markersize=4, fillstyle="none",
                      color=line[0].get_color(), label=f"{info.name} flushed ({len(flushed)})")
    axis.axvline(0.0, color="red", linewidth=0.5)
    axis.set_xlim(-ATTACH_BEFORE * 1000, ATTACH_AFTER * 1000)
    axis.set_title(f"handover {handover.index}: around the attach", fontsize=9)
    axis.set_xlabel("ms from attach")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="upper left", fontsize=6)


def _mark(axis, handover: HandoverRecord, origin_at: float, label: bool) -> None:
    axis.axvspan(handover.detach_at - origin_at, handover.attach_at - origin_at, color="red", alpha=0.3)
    axis.axvline(handover.attach_at - origin_at, color="red", linewidth=0.5)
    if label:
        axis.annotate(f"{handover.from_mag}→{handover.to_mag}", (handover.attach_at - origin_at, 0),
                      fontsize=7, xytext=(2, 2), textcoords="offset points")


def plot_run(path: Path, arrivals_by_mn: Mapping[str, Sequence[Arrival]],
             streams: Mapping[int, StreamInfo], handovers: Sequence[HandoverRecord],
             origin_at: float) -> None:
    """One row per MN (the first MAX_PANELS): overview, then zoomed handovers."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    mns = sorted(arrivals_by_mn)[:MAX_PANELS] or ["(no MN)"]
    zooms = max([min(MAX_ZOOMS, len({h.index for h in handovers if h.mn == mn})) for mn in mns] or [0])
    figure, axes = pyplot.subplots(len(mns), 1 + 2 * zooms,
                                   figsize=(6 + 7 * zooms, 3 * len(mns)), squeeze=False,
                                   gridspec_kw={"width_ratios": [2] + [1] * 2 * zooms})
    for row, mn in zip(axes, mns):
        arrivals = arrivals_by_mn.get(mn, ())
        overview = row[0]
        _series(overview, arrivals, streams, origin_at)
        mine = {h.index: h for h in handovers if h.mn == mn}
        for handover in mine.values():
            _mark(overview, handover, origin_at, label=True)
        overview.set_title(mn)
        overview.set_xlabel("arrival time (s)")
        overview.set_ylabel("sequence number")
        if arrivals:
            overview.legend(loc="upper left", fontsize=7, markerscale=8)
        for axis, burst, handover in zip(row[1::2], row[2::2], list(mine.values())[:zooms]):
            middle = (handover.detach_at + handover.attach_at) / 2 - origin_at
            start, end = middle - ZOOM_WINDOW / 2, middle + ZOOM_WINDOW / 2
            _series(axis, arrivals, streams, origin_at, start, end)
            _mark(axis, handover, origin_at, label=False)
            axis.set_xlim(start, end)
            axis.set_title(f"handover {handover.index}: {handover.from_mag}→{handover.to_mag}", fontsize=9)
            axis.set_xlabel("arrival time (s)")
            _burst(burst, arrivals, streams, handover, origin_at)
        for axis in row[1 + 2 * len(mine):]:
            axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
