"""bench/sim_calibrate.py: the delays read from testbed rows, the replay, the comparison rule."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from mcproxy_pmip_testbed.results import HANDOVER_KEYS

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "sim_calibrate.py"


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("sim_calibrate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sim_calibrate"] = module
    spec.loader.exec_module(module)
    return module


cal = _load_script()


def row(**values: Any) -> dict[str, Any]:
    base = {key: None for key in HANDOVER_KEYS}
    base.update(handover=0, mn="mn1", from_mag="mag1", to_mag="mag2", mode="static",
                stream="v4", family="ipv4", group="239.1.1.1", detach_at=102.0,
                attach_at=102.05, l2_outage_ms=50.0, duplicated=0)
    base.update(values)
    return base


def test_allowed_difference_is_ten_percent_or_five_ms() -> None:
    assert cal.allowed_ms(20.0) == 5.0
    assert cal.allowed_ms(50.0) == 5.0
    assert cal.allowed_ms(3000.0) == pytest.approx(300.0)


def test_within_uses_the_allowed_difference_both_ways() -> None:
    def comparison(testbed: float, simulated: float) -> Any:
        return cal.Comparison("plugin", testbed, testbed - 1, testbed + 1, 10, simulated, 100)
    assert comparison(3000.0, 3299.0).within
    assert comparison(3000.0, 2701.0).within
    assert not comparison(3000.0, 3301.0).within
    assert comparison(40.0, 44.9).within
    assert not comparison(40.0, 45.1).within
    assert comparison(52.0, 52.5).inside_interval
    assert not comparison(52.0, 53.5).inside_interval


def test_median_interval_uses_binomial_order_statistics() -> None:
    # n = 10: P(2 <= B(10, 1/2) <= 8) = 0.979 >= 0.95, P(3 <= B <= 7) = 0.891 < 0.95
    assert cal.median_interval(list(range(10, 0, -1))) == (2, 9)
    # n = 20: k = 6 (P(6 <= B <= 14) = 0.959)
    assert cal.median_interval(list(range(1, 21))) == (6, 15)
    # too few values for 95 %: the whole range
    assert cal.median_interval([5.0, 1.0, 3.0]) == (1.0, 5.0)
    with pytest.raises(ValueError):
        cal.median_interval([])


def test_measured_takes_each_delay_from_the_rows_that_measure_it() -> None:
    rows = [
        # static returns: the new MAG already forwarded: attach -> first packet = access
        row(gap_ms=52.0, lost=51, l2_outage_ms=50.0, attach_to_first_packet_ms=1.0),
        row(gap_ms=54.0, lost=53, l2_outage_ms=52.0, attach_to_first_packet_ms=2.0),
        row(gap_ms=56.0, lost=55, l2_outage_ms=54.0, attach_to_first_packet_ms=3.0),
        # a first visit: report -> first packet = access + two tunnel crossings
        row(gap_ms=3055.0, lost=3054, attach_to_upstream_report_ms=3000.0,
            attach_to_first_packet_ms=3006.0),
        # context: attach -> report = signalling; report -> packet as above
        row(mode="context", gap_ms=64.0, lost=63, attach_to_upstream_report_ms=8.0,
            attach_to_first_packet_ms=14.0),
        row(mode="context", gap_ms=66.0, lost=65, attach_to_upstream_report_ms=10.0,
            attach_to_first_packet_ms=16.0),
        # a stream that never came back: ignored
        row(mode="context", gap_ms=None, lost=None, l2_outage_ms=500.0,
            attach_to_upstream_report_ms=100.0),
    ]
    m = cal.measured(rows)
    assert m.delays.access_interval == pytest.approx(0.002)
    assert m.delays.tunnel_interval == pytest.approx(0.002)  # (6 - 2) / 2 ms
    assert m.delays.lma_processing_interval == 0.0
    assert m.delays.signalling_interval == pytest.approx(0.009)
    assert m.l2_outage_interval == pytest.approx(0.050)  # median of the six rows with a gap
    assert m.stream_rate == pytest.approx(1000.0)


def test_measured_predictive_leads_come_from_the_handover_timeline() -> None:
    timeline = [{"handover": i, "events": {"prepare_sent": 9.80, "prepare_answered": 9.85,
                                           "detach_sent": 10.0 - lead, "radio_detach": 10.0}}
                for i, lead in enumerate((0.018, 0.020, 0.030))]
    # a context-mode handover (no prepare) says nothing about the detach lead
    timeline.append({"handover": 3, "events": {"detach_sent": 9.0, "radio_detach": 10.0}})
    # predictive rows: the buffer is flushed on the attach, so they do not measure the access
    rows = [row(mode="predictive", gap_ms=75.0, lost=0, attach_to_upstream_report_ms=300.0,
                attach_to_first_packet_ms=6.0),
            row(gap_ms=52.0, lost=51, attach_to_first_packet_ms=1.0)]
    m = cal.measured(rows, timeline)
    assert m.prepare_lead_interval == pytest.approx(0.15)
    assert m.detach_lead_interval == pytest.approx(0.020)
    assert m.delays.access_interval == pytest.approx(0.001)
    assert m.delays.tunnel_interval == cal.Delays().tunnel_interval  # no round trip measured


def test_measured_falls_back_to_defaults_without_such_rows() -> None:
    m = cal.measured([row(gap_ms=None, lost=None)])
    assert m.delays.access_interval == cal.DEFAULT_ACCESS_INTERVAL
    assert m.stream_rate == cal.DEFAULT_RATE
    assert m.delays.signalling_interval == cal.Delays().signalling_interval
    assert m.prepare_lead_interval == cal.Scenario().prepare_lead_interval
    assert m.detach_lead_interval == 0.0


def results(mode: str, gaps: list[float]) -> dict[str, Any]:
    rows = []
    for i, gap in enumerate(gaps):
        to = "mag2" if i % 2 == 0 else "mag1"
        at = 102.0 + 12 * i
        rows.append(row(handover=i, mode=mode, from_mag="mag1" if to == "mag2" else "mag2",
                        to_mag=to, detach_at=at, attach_at=at + 0.05, gap_ms=gap,
                        lost=round(gap) - 1, attach_to_first_packet_ms=1.0))
    return {"run_id": f"t{mode}", "mode": mode, "started_at": 100.0,
            "ended_at": 100.0 + 12 * len(gaps) + 12, "handovers": rows}


def test_trace_replays_the_runs_moves_relative_to_its_start() -> None:
    text = cal.trace_text(results("static", [52.0, 52.0, 52.0]))
    assert text.splitlines() == ["0 0 0", "17.000000 0 1", "29.000000 0 0", "41.000000 0 1"]


def test_static_replay_gives_outage_plus_access_on_returns(tmp_path: Path) -> None:
    run = results("static", [3000.0, 52.0, 52.0, 52.0])
    m = cal.Measured(cal.Delays(access_interval=0.001, tunnel_interval=0.002,
                                lma_processing_interval=0.0, signalling_interval=0.005),
                     0.05, 1000.0)
    gaps = cal.replay(run, m, 3, tmp_path)
    assert len(gaps) >= 9
    # 3 returns per seed to a MAG that still holds the membership: outage + access link
    assert sorted(gaps)[:9] == pytest.approx([51.0] * 9)
    comparison, = cal.compare({"static": [3000.0, 52.0, 52.0, 52.0]}, {"static": gaps})
    assert comparison.simulated_ms == pytest.approx(51.0)
    assert comparison.within


def test_context_replay_composes_outage_signalling_and_round_trip(tmp_path: Path) -> None:
    run = results("context", [61.0, 61.0])
    m = cal.Measured(cal.Delays(access_interval=0.001, tunnel_interval=0.002,
                                lma_processing_interval=0.0, signalling_interval=0.005),
                     0.05, 1000.0)
    # outage 50 + signalling 5 + tunnel 2 (report) + tunnel 2 + access 1 (data)
    assert cal.replay(run, m, 2, tmp_path) == pytest.approx([60.0] * 4)


def test_compare_orders_modes_and_skips_modes_missing_on_one_side() -> None:
    comparisons = cal.compare({"context": [60.0], "static": [52.0, 54.0], "plugin": []},
                              {"static": [53.0], "context": [75.0], "predictive": [51.0],
                               "plugin": [3000.0]})
    assert [c.mode for c in comparisons] == ["static", "context"]
    static, context = comparisons
    assert static.testbed_ms == 53.0 and static.within
    assert context.difference_ms == 15.0 and not context.within
    assert "NO" in cal.table(comparisons)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    testbed = {"static": [52.0, 53.0, 3000.0], "context": [60.0, 61.0]}
    simulated = {"static": [51.0, 51.0, 4000.0], "context": [60.0]}
    drawn = {"static": [51.0]}  # a series without a mode leaves its box out
    path = tmp_path / "cal.png"
    cal.plot(path, [("testbed", testbed), ("sim", simulated), ("drawn", drawn)],
             cal.compare(testbed, simulated), "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_answer_replay_gives_the_number_that_ends_the_delay_at_the_answer() -> None:
    now = [0.0]
    rng = cal.AnswerReplay("1", lambda: now[0], [(10.0, 13.0), (30.0, 45.0)], 10.0)
    now[0] = 10.5  # the daemon's host answers after 10 * (1 - random()) s
    assert 10.5 + 10.0 * (1.0 - rng.random()) == pytest.approx(13.0)
    now[0] = 30.1  # 14.9 s away: the latest answer, a later query may bring it forward
    assert rng.random() == 0.0
    now[0] = 36.0
    assert 36.0 + 10.0 * (1.0 - rng.random()) == pytest.approx(45.0)
    now[0] = 20.0  # outside every window: an ordinary draw
    assert rng.random() == random.Random("1").random()


def test_answer_windows_put_the_answer_one_access_link_before_the_report() -> None:
    m = cal.Measured(cal.Delays(access_interval=0.001), 0.05, 1000.0)
    rows = [row(detach_at=102.0, attach_to_upstream_report_ms=2001.0),
            row(detach_at=114.0, attach_to_upstream_report_ms=None),
            row(detach_at=126.0, attach_to_upstream_report_ms=-90.0)]
    windows = cal.answer_windows(rows, 100.0, m)
    assert windows == [pytest.approx((2.0, 2.0 + 0.05 + 2.001 - 0.001))]


def test_plugin_replay_with_measured_answers_reproduces_each_gap(tmp_path: Path) -> None:
    m = cal.Measured(cal.Delays(access_interval=0.001, tunnel_interval=0.002,
                                lma_processing_interval=0.0, signalling_interval=0.005),
                     0.05, 1000.0)
    # the MN answered 3 s, 7 s and 0.5 s after the attach (report one access link later)
    answers_ms = [3000.0, 7000.0, 500.0]
    run = results("plugin", [0.0] * 3)
    for r, answer in zip(run["handovers"], answers_ms):
        r["attach_to_upstream_report_ms"] = answer + 1.0
    gaps = cal.replay(run, m, 1, tmp_path, run["handovers"])
    # outage 50 + answer + access 1 (report) + tunnel 2 (report) + tunnel 2 + access 1 (data)
    assert gaps == pytest.approx([50.0 + a + 6.0 for a in answers_ms])


def test_predictive_replay_uses_the_measured_leads(tmp_path: Path) -> None:
    run = results("predictive", [71.0, 71.0])
    delays = cal.Delays(access_interval=0.001, tunnel_interval=0.002,
                        lma_processing_interval=0.0, signalling_interval=0.005)
    # joined upstream 300 ms before the link break: only the outage and the radio are left
    m = cal.Measured(delays, 0.05, 1000.0, prepare_lead_interval=0.3)
    assert cal.replay(run, m, 1, tmp_path) == pytest.approx([51.0, 51.0])
    # the old MAG stopped forwarding 20 ms before the link break
    m = cal.Measured(delays, 0.05, 1000.0, prepare_lead_interval=0.3, detach_lead_interval=0.02)
    assert cal.replay(run, m, 1, tmp_path) == pytest.approx([71.0, 71.0])


def test_scenario_refuses_a_detach_lead_beyond_the_prepare_lead() -> None:
    from mcproxy_pmip_sim.scenario import load_scenario
    assert load_scenario("detach_lead_interval: 0.02").detach_lead_interval == 0.02
    with pytest.raises(ValueError, match="detach_lead_interval"):
        load_scenario("prepare_lead_interval: 0.1\ndetach_lead_interval: 0.2")
