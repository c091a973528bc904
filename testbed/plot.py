"""PNG plot of a run: sequence number against arrival time per MN, handovers marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mcproxy_pmip_testbed.measure import HandoverRecord, StreamInfo
from mcproxy_pmip_testbed.payload import Arrival

MAX_PANELS = 8


def plot_run(path: Path, arrivals_by_mn: Mapping[str, Sequence[Arrival]],
             streams: Mapping[int, StreamInfo], handovers: Sequence[HandoverRecord],
             origin_at: float) -> None:
    """One panel per MN (the first MAX_PANELS), one series per stream."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    mns = sorted(arrivals_by_mn)[:MAX_PANELS] or ["(no MN)"]
    figure, axes = pyplot.subplots(len(mns), 1, figsize=(10, 3 * len(mns)), squeeze=False)
    for axis, mn in zip(axes[:, 0], mns):
        arrivals = arrivals_by_mn.get(mn, ())
        for stream_id, info in sorted(streams.items()):
            mine = [a for a in arrivals if a.stream == stream_id]
            if mine:
                axis.plot([a.received_at - origin_at for a in mine], [a.seq for a in mine],
                          ".", markersize=1, label=f"{info.name} {info.group}")
        for handover in handovers:
            if handover.mn != mn:
                continue
            axis.axvspan(handover.detach_at - origin_at, handover.attach_at - origin_at,
                         color="red", alpha=0.3)
            axis.axvline(handover.attach_at - origin_at, color="red", linewidth=0.5)
            axis.annotate(f"{handover.from_mag}→{handover.to_mag}",
                          (handover.attach_at - origin_at, 0), fontsize=7,
                          xytext=(2, 2), textcoords="offset points")
        axis.set_title(mn)
        axis.set_xlabel("arrival time (s)")
        axis.set_ylabel("sequence number")
        if arrivals:
            axis.legend(loc="upper left", fontsize=7, markerscale=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
