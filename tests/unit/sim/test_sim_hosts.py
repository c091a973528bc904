"""MLD, older-version and source-specific MNs, and the L2 outage models, on the hand-computed scenario of
sim_support (one MN, one group, two MAGs, a move at 30 s and back at 60 s)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from sim_support import OUTAGE_MS, scenario

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import SendReport
from mcproxy_pmip.wire.records import FilterMode
from mcproxy_pmip_sim.domain import Simulator
from mcproxy_pmip_sim.mobility import draw_outage
from mcproxy_pmip_sim.parts import SOURCES
from mcproxy_pmip_sim.scenario import MODES, default_scenario, load_scenario


def _run(tmp_path: Path, mode: str, **values) -> Simulator:
    return Simulator(dataclasses.replace(scenario(tmp_path), **values), mode, 7).run()


def test_an_mldv2_mn_has_the_gaps_of_an_igmpv3_mn_on_ipv6_groups(tmp_path: Path) -> None:
    for mode in MODES:
        v4 = _run(tmp_path, mode).rows
        v6 = _run(tmp_path, mode, mn_protocols={"MLDv2": 1.0}).rows
        assert [r["family"] for r in v6] == ["ipv6", "ipv6"] and v6[0]["group"] == "ff1e::1:0"
        assert [r["gap_ms"] for r in v6] == [r["gap_ms"] for r in v4], mode
        assert [r["lost"] for r in v6] == [r["lost"] for r in v4], mode
    context = _run(tmp_path, "context", mn_protocols={"MLDv2": 1.0}).rows
    assert context[0]["gap_ms"] == pytest.approx(OUTAGE_MS + 5 + 6)


def test_an_igmpv2_mn_reports_in_v2_and_its_context_keeps_the_new_mag_in_v2_mode(
        tmp_path: Path) -> None:
    sim = Simulator(dataclasses.replace(scenario(tmp_path), mn_protocols={"IGMPv2": 1.0},
                                        duration_interval=45.0), "context", 7)
    sent: list[int] = []
    deliver = sim.mn_actions

    def record_reports(mn, actions) -> None:
        sent.extend(a.version for a in actions if isinstance(a, SendReport))
        deliver(mn, actions)

    sim.mn_actions = record_reports  # type: ignore[method-assign]
    sim.run()
    assert sent and set(sent) == {2}
    router = sim.mags[1].facade.cores["tun0"].router("a0", Family.IPV4)
    assert router.link_version() == 2, "the imported context lost the MN's IGMPv2 mode"
    assert sim.rows[0]["gap_ms"] == pytest.approx(OUTAGE_MS + 5 + 6)


def test_protocol_shares_are_drawn_per_mn_and_checked() -> None:
    mixed = dataclasses.replace(default_scenario(), mns=400,
                                mn_protocols={"IGMPv3": 0.5, "MLDv2": 0.3, "IGMPv1": 0.2})
    sim = Simulator(mixed, "context", 1)
    families = [mn.host.family for mn in sim.mns]
    assert 0.2 < families.count(Family.IPV6) / 400 < 0.4
    assert {mn.host.version for mn in sim.mns} == {1, 2, 3}
    assert sim.families == (Family.IPV4, Family.IPV6)
    for text, match in (("mn_protocols: {IGMPv4: 1.0}", "mn_protocols must map"),
                        ("mn_protocols: {IGMPv3: 0.5}", "sum to 1"),
                        ("l2_outage_model: weibull", "l2_outage_model must be"),
                        ("l2_outage_model: samples", "needs l2_outage_samples")):
        with pytest.raises(ValueError, match=match):
            load_scenario(text)


def test_outage_models_draw_within_their_bounds_and_feed_the_gap(tmp_path: Path) -> None:
    exponential = load_scenario("l2_outage_model: exponential\nl2_outage_min_interval: 0.01\n"
                                "l2_outage_max_interval: 0.5\nl2_outage_mean_interval: 0.04\n")
    rng = random.Random(1)
    drawn = [draw_outage(exponential, rng) for _ in range(4000)]
    assert min(drawn) >= 0.01 and max(drawn) <= 0.5
    assert sum(drawn) / len(drawn) == pytest.approx(0.05, abs=0.005)
    samples = load_scenario("l2_outage_model: samples\nl2_outage_samples: [0.02, 0.08]\n")
    assert samples.l2_outage_samples == (0.02, 0.08)
    assert {draw_outage(samples, rng) for _ in range(100)} == {0.02, 0.08}
    rows = _run(tmp_path, "context", l2_outage_model="samples", l2_outage_samples=(0.2,)).rows
    assert [r["gap_ms"] for r in rows] == [pytest.approx(200 + 5 + 6)] * 2
    assert [r["l2_outage_ms"] for r in rows] == [200.0, 200.0]


def test_a_source_specific_mn_has_the_any_source_gaps_and_include_state(tmp_path: Path) -> None:
    for mode in MODES:
        any_source = _run(tmp_path, mode).rows
        channel = _run(tmp_path, mode, source_specific_share=1.0).rows
        assert [r["gap_ms"] for r in channel] == [r["gap_ms"] for r in any_source], mode
        assert [r["lost"] for r in channel] == [r["lost"] for r in any_source], mode
    sim = _run(tmp_path, "context", source_specific_share=1.0, duration_interval=45.0)
    assert sim.rows[0]["gap_ms"] == pytest.approx(OUTAGE_MS + 5 + 6)
    source = SOURCES[Family.IPV4]
    group = sim.streams[0]
    router = sim.mags[1].facade.cores["tun0"].router("a0", Family.IPV4)
    assert router.membership(group) == (FilterMode.INCLUDE, frozenset({source})), \
        "the context import lost the MN's source list"
    assert sim.lmas[0].core.membership(Family.IPV4, group) == (FilterMode.INCLUDE,
                                                              frozenset({source}))


def test_source_specific_share_is_drawn_among_v3_and_mldv2_mns_only() -> None:
    mixed = dataclasses.replace(default_scenario(), mns=400, source_specific_share=0.5,
                                mn_protocols={"IGMPv3": 0.5, "IGMPv2": 0.25, "MLDv2": 0.25})
    sim = Simulator(mixed, "context", 1)
    channels = [mn for mn in sim.mns if mn.source_specific]
    newest = [mn for mn in sim.mns if mn.host.version == mn.host.family.newest_version]
    assert all(mn.host.version == mn.host.family.newest_version for mn in channels)
    assert 0.35 < len(channels) / len(newest) < 0.65
    assert {mn.host.family for mn in channels} == {Family.IPV4, Family.IPV6}
    with pytest.raises(ValueError, match="source_specific_share must be in"):
        load_scenario("source_specific_share: 1.5\n")
