"""Handover measurement on synthetic arrival logs: gaps, loss, duplicates, nulls."""

from __future__ import annotations

import pytest

from mcproxy_pmip_testbed.measure import HandoverRecord, StreamInfo, measure, measure_stream
from mcproxy_pmip_testbed.payload import Arrival, format_arrival, parse_arrivals

STREAM = StreamInfo(0, "v6", "ipv6", "ff3e::8000:1")


def handover(detach_at: float = 10.0, attach_at: float = 10.05, mn: str = "mn1",
             index: int = 0) -> HandoverRecord:
    return HandoverRecord(index=index, mn=mn, from_mag="mag1", to_mag="mag2", mode="context",
                          detach_at=detach_at, attach_at=attach_at)


def steady(first_seq: int, last_seq: int, origin: float = 0.0, period: float = 0.001,
           delay: float = 0.0002) -> list[Arrival]:
    """Packets sent every ``period`` from ``origin`` (seq 0), arriving ``delay`` later."""
    return [Arrival(0, seq, origin + seq * period, origin + seq * period + delay)
            for seq in range(first_seq, last_seq + 1)]


def test_gap_and_loss_across_an_outage() -> None:
    # packets 0..9999 arrive until t=10.0; 10000..10119 lost; from 10120 on arrive again
    arrivals = steady(0, 9999) + steady(10120, 12000)
    row = measure_stream(handover(), STREAM, arrivals, window_end_at=20.0,
                         report_times=[10.0604, 10.07])
    assert row["gap_ms"] == pytest.approx(121.0, abs=0.01)
    assert row["lost"] == 120
    assert row["duplicated"] == 0
    assert row["l2_outage_ms"] == pytest.approx(50.0)
    assert row["attach_to_upstream_report_ms"] == pytest.approx(10.4, abs=0.01)
    assert row["attach_to_first_packet_ms"] == pytest.approx(70.2, abs=0.01)
    assert (row["mn"], row["from_mag"], row["to_mag"], row["family"]) == (
        "mn1", "mag1", "mag2", "ipv6")


def test_duplicates_counted_only_inside_the_window() -> None:
    arrivals = steady(0, 12000)
    arrivals += [Arrival(0, 11000, 11.0, 11.5), Arrival(0, 11001, 11.001, 11.5)]
    arrivals += [Arrival(0, 5, 0.005, 5.0)]  # duplicate before the detach: not this handover's
    row = measure_stream(handover(), STREAM, arrivals, window_end_at=20.0, report_times=None)
    assert row["duplicated"] == 2
    assert row["lost"] == 0


def test_nothing_after_the_attach_gives_nulls() -> None:
    row = measure_stream(handover(), STREAM, steady(0, 9999), window_end_at=20.0,
                         report_times=[])
    assert row["gap_ms"] is None
    assert row["lost"] is None
    assert row["attach_to_first_packet_ms"] is None
    assert row["attach_to_upstream_report_ms"] is None


def test_nothing_before_the_detach_gives_no_gap_but_first_packet_time() -> None:
    row = measure_stream(handover(), STREAM, steady(10100, 10200), window_end_at=20.0,
                         report_times=None)
    assert row["gap_ms"] is None
    assert row["attach_to_first_packet_ms"] == pytest.approx(50.2, abs=0.01)


def test_report_before_attach_is_not_the_new_mags_report() -> None:
    row = measure_stream(handover(), STREAM, steady(0, 12000), window_end_at=20.0,
                         report_times=[9.0, 10.049])
    assert row["attach_to_upstream_report_ms"] is None


def test_window_ends_at_the_same_mns_next_handover() -> None:
    first, second = handover(10.0, 10.05, index=0), handover(12.0, 12.05, index=1)
    arrivals = steady(0, 9999) + steady(12100, 13000)  # resumes only after the 2nd handover
    rows = measure([first, second], {0: STREAM}, {"mn1": [0]}, {"mn1": arrivals}, end_at=14.0)
    assert [r["handover"] for r in rows] == [0, 1]
    assert rows[0]["gap_ms"] is None
    # the second handover's gap reaches back to the last packet before it: seq 9999 at 10.0
    assert rows[1]["gap_ms"] == pytest.approx(2101.0, abs=0.01)
    assert rows[1]["lost"] == 2100
    assert rows[1]["attach_to_first_packet_ms"] == pytest.approx(50.2, abs=0.01)


def test_rows_only_for_subscribed_streams() -> None:
    other = StreamInfo(1, "v4", "ipv4", "239.1.1.1")
    rows = measure([handover()], {0: STREAM, 1: other}, {"mn1": [1]}, {"mn1": []}, end_at=20.0)
    assert [r["stream"] for r in rows] == ["v4"]
    assert rows[0]["duplicated"] == 0


def test_arrival_log_round_trip_skips_torn_lines() -> None:
    arrivals = steady(0, 3)
    text = "".join(format_arrival(a) for a in arrivals) + "0 4 0.0"
    parsed = list(parse_arrivals(text.splitlines(keepends=True)))
    assert [a.seq for a in parsed] == [0, 1, 2, 3]
    assert parsed[1].received_at == pytest.approx(arrivals[1].received_at, abs=1e-6)
