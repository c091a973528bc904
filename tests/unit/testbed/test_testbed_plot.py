"""The run plot: an overview and one zoomed panel per handover, written as a PNG."""

from __future__ import annotations

import struct

from mcproxy_pmip_testbed.measure import HandoverRecord, StreamInfo
from mcproxy_pmip_testbed.payload import Arrival
from mcproxy_pmip_testbed.plot import plot_run


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack("!II", data[16:24])


def test_overview_and_zoomed_handovers(tmp_path) -> None:
    origin = 1000.0
    arrivals = [Arrival(0, seq, origin + seq / 1000, origin + seq / 1000 + 0.001)
                for seq in range(3000) if not 1000 <= seq < 1070 and not 2000 <= seq < 2060]
    handovers = [HandoverRecord(0, "mn1", "mag1", "mag2", "context", origin + 1.0, origin + 1.05),
                 HandoverRecord(1, "mn1", "mag2", "mag1", "context", origin + 2.0, origin + 2.05)]
    streams = {0: StreamInfo(0, "v6", "ipv6", "ff3e::1")}
    plot_run(tmp_path / "one.png", {"mn1": arrivals}, streams, handovers[:1], origin)
    plot_run(tmp_path / "two.png", {"mn1": arrivals}, streams, handovers, origin)
    width_one, height_one = png_size(tmp_path / "one.png")
    width_two, height_two = png_size(tmp_path / "two.png")
    assert height_one == height_two
    assert width_two > width_one, "each handover adds a zoomed panel"


def test_no_arrivals_still_writes_a_plot(tmp_path) -> None:
    plot_run(tmp_path / "empty.png", {}, {}, [], 0.0)
    assert png_size(tmp_path / "empty.png")[0] > 0
